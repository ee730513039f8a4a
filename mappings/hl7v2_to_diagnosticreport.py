"""HL7 v2 ``ORU^R01`` -> FHIR R4 ``DiagnosticReport`` (v2.5.1 ch. 7 §7.3.1 ORU, §7.4.1 OBR,
§7.4.2 OBX; IHE RAD TF-2 RAD-28 "Structured Report Export"-style text reports; mapping table
beside this file).

One DiagnosticReport per ``OBR`` group. Report text (``OBX`` of type TX, FT, ST) becomes a
``text/plain`` ``presentedForm``; an encapsulated document (``OBX`` type ED, e.g. a PDF in Base64)
becomes a ``presentedForm`` of its MIME type; an ``IMP``/impression observation becomes
``conclusion``. The accession (``OBR-18``, or ``IPC-1`` when present) and the filler/placer numbers
are identifiers the adapter uses to link ``basedOn`` and ``imagingStudy``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from mappings.hl7v2_model import (
    NULL,
    PRACTITIONER_SYSTEM,
    ErrorLocation,
    Hl7Message,
    IdentifierSystems,
    Mapped,
    MappingError,
    OffsetOf,
    Repetition,
    Resource,
    Segment,
    comp,
    cwe_concept,
    diagnostic_section,
    dtm_to_fhir,
    ei_identifier,
    segments_after,
    type_code,
)

# HL7 table 0123 result status -> DiagnosticReport.status
_RESULT_STATUS = {
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "A": "partial",
    "P": "preliminary",
    "R": "preliminary",
    "N": "preliminary",
    "F": "final",
    "C": "corrected",
    "X": "cancelled",
    "D": "entered-in-error",
    "W": "entered-in-error",
}
# ED / RP data subtypes (HL7 table 0291) -> MIME types
_MIME = {
    "PDF": "application/pdf",
    "RTF": "application/rtf",
    "HTML": "text/html",
    "XML": "application/xml",
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "TIFF": "image/tiff",
    "OCTET-STREAM": "application/octet-stream",
    "TEXT": "text/plain",
}
_TEXT_TYPES = frozenset({"TX", "FT", "ST", "CE", "CWE"})


@dataclass
class ReportMapping:
    """One OBR group mapped, with the identifiers to find its order, study and itself."""

    mapped: Mapped
    keys: list[Resource]  # filler, accession, placer: to find an earlier version of the report
    accession: Resource | None
    placer: Resource | None
    filler: Resource | None


def hl7v2_to_diagnosticreport(
    msg: Hl7Message,
    patient_reference: str,
    order_systems: IdentifierSystems,
    accession_systems: IdentifierSystems,
    offset_of: OffsetOf | None = None,
) -> list[ReportMapping]:
    """Every OBR group of an ORU^R01 as a DiagnosticReport (without references to the order
    and study: the adapter adds them once it has looked the accession up)."""
    obrs = msg.all("OBR")
    if not obrs:
        raise MappingError(100, "Required segment OBR is missing", ErrorLocation("OBR"))
    out = []
    for obr in obrs:
        group = list(segments_after(msg, obr, ("OBR", "ORC")))
        orc = _orc_before(msg, obr)
        out.append(
            _report(obr, orc, group, patient_reference, order_systems, accession_systems, offset_of)
        )
    return out


def _orc_before(msg: Hl7Message, obr: Segment) -> Segment | None:
    found = None
    for seg in msg.segments:
        if seg is obr:
            return found
        if seg.name == "ORC":
            found = seg
        elif seg.name == "OBR":
            found = None
    return found


def _report(
    obr: Segment,
    orc: Segment | None,
    group: list[Segment],
    patient_reference: str,
    order_systems: IdentifierSystems,
    accession_systems: IdentifierSystems,
    offset_of: OffsetOf | None,
) -> ReportMapping:
    obxs = [s for s in group if s.name == "OBX"]
    placer = ei_identifier(obr, 2, order_systems, "PLAC") or (
        ei_identifier(orc, 2, order_systems, "PLAC") if orc else None
    )
    filler = ei_identifier(obr, 3, order_systems, "FILL") or (
        ei_identifier(orc, 3, order_systems, "FILL") if orc else None
    )
    ipc = next((s for s in group if s.name == "IPC"), None)
    accession = ei_identifier(ipc, 1, accession_systems, "ACSN") if ipc else None
    if accession is None and obr.value(18) and obr.value(18) != NULL:
        accession = {
            "type": type_code("ACSN"),
            "system": accession_systems.default_system,
            "value": obr.value(18),
        }
    identifiers = [i for i in (filler, accession, placer) if i]
    if not identifiers:
        raise MappingError(
            101, "A report needs a filler (OBR-3), placer (OBR-2) or accession (OBR-18)", obr.at(3)
        )
    code = next((c for r in obr.repetitions(4) if (c := cwe_concept(r))), None)
    if code is None:
        raise MappingError(101, "OBR-4 (universal service identifier) is required", obr.at(4))
    raw_status = obr.value(25).upper() or next((o.value(11).upper() for o in obxs), "")
    if not raw_status:
        raise MappingError(101, "OBR-25 (result status) is required", obr.at(25))
    if raw_status not in _RESULT_STATUS:
        raise MappingError(103, f"OBR-25 {raw_status!r} is not in HL7 table 0123", obr.at(25))
    out: Resource = {
        "resourceType": "DiagnosticReport",
        "identifier": identifiers,
        "status": _RESULT_STATUS[raw_status],
        "category": [diagnostic_section(obr.value(24))],
        "code": code,
        "subject": {"reference": patient_reference},
    }
    effective = obr.value(7)
    if effective and effective != NULL:
        out["effectiveDateTime"] = dtm_to_fhir(effective, obr.at(7, 1), offset_of)
    issued = obr.value(22)
    if issued and issued != NULL:
        when = dtm_to_fhir(issued, obr.at(22, 1), offset_of)
        if len(when) > 19:  # an instant needs seconds and a zone (datatypes.html#instant)
            out["issued"] = when
    interpreters = [r for r in (_ndl(rep, order_systems) for rep in obr.repetitions(32)) if r]
    if interpreters:
        out["resultsInterpreter"] = interpreters
    lines: list[str] = []
    conclusion: list[str] = []
    forms: list[Resource] = []
    for obx in obxs:
        value_type = obx.value(2).upper()
        if value_type == "ED":
            forms.extend(_encapsulated(obx))
        elif value_type == "RP":
            forms.extend(_pointer(obx))
        elif value_type in _TEXT_TYPES:
            text = _obx_text(obx, value_type)
            if not text:
                continue
            if _is_impression(obx):
                conclusion.append(text)
            lines.append(text)
    if conclusion:
        out["conclusion"] = "\n".join(conclusion)
    if lines:
        text = "\n".join(lines)
        forms.insert(
            0,
            {
                "contentType": "text/plain; charset=utf-8",
                "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
                "title": out["code"].get("text") or "Report",
            },
        )
    if forms:
        out["presentedForm"] = forms
    keys = [i for i in (filler, accession, placer) if i]
    return ReportMapping(Mapped(out), keys, accession, placer, filler)


def _obx_text(obx: Segment, value_type: str) -> str:
    if value_type in ("CE", "CWE"):
        return "\n".join(comp(r, 2) or comp(r, 1) for r in obx.repetitions(5))
    # TX/FT/ST: components are not used, each repetition is a line (v2.5.1 ch. 2A.79 TX)
    return "\n".join(_join_components(r) for r in obx.field(5) if r)


def _join_components(rep: Repetition) -> str:
    return "^".join("&".join(c) for c in rep)


def _is_impression(obx: Segment) -> bool:
    code = obx.value(3, 1).upper()
    text = obx.value(3, 2).upper()
    return code.endswith("IMP") or text.startswith("IMPRESSION") or code == "19005-8"


def _encapsulated(obx: Segment) -> list[Resource]:
    """OBX-5 ED (source^type of data^data subtype^encoding^data, ch. 2A.27) -> Attachment."""
    out = []
    for rep in obx.repetitions(5):
        subtype, encoding, data = comp(rep, 3).upper(), comp(rep, 4).upper(), comp(rep, 5)
        where = ErrorLocation(obx.name, obx.sequence, 5, 1, 5)
        try:
            if encoding in ("BASE64", "B64"):
                raw = base64.b64decode(data, validate=True)
            elif encoding == "HEX":
                raw = bytes.fromhex(data)
            elif encoding in ("A", ""):
                raw = data.encode("utf-8")
            else:
                raise MappingError(
                    103, f"OBX-5.4 {encoding!r} is not in HL7 table 0299", obx.at(5, 4)
                )
        except (binascii.Error, ValueError) as exc:
            raise MappingError(102, f"OBX-5 encapsulated data: {exc}", where) from None
        if not raw:
            continue
        mime = _MIME.get(subtype) or (
            subtype.lower() if "/" in subtype else "application/octet-stream"
        )
        out.append(
            {
                "contentType": mime,
                "data": base64.b64encode(raw).decode("ascii"),
                "title": obx.value(3, 2) or obx.value(3, 1) or "Report",
            }
        )
    return out


def _pointer(obx: Segment) -> list[Resource]:
    """OBX-5 RP (pointer^application^type^subtype, ch. 2A.65) -> Attachment.url when a URL."""
    out = []
    for rep in obx.repetitions(5):
        pointer = comp(rep, 1)
        if pointer.startswith(("http://", "https://")):
            mime = _MIME.get(comp(rep, 4).upper(), "application/octet-stream")
            out.append({"contentType": mime, "url": pointer})
    return out


def _ndl(rep: Repetition, systems: IdentifierSystems) -> Resource | None:
    """NDL.1 (CNN as subcomponents: id&family&given&middle&suffix&prefix, ch. 2A.50) ->
    a logical reference with a display name."""
    subs = rep[0] if rep else []
    padded = [*subs, "", "", "", "", "", ""]
    ident, family, given = padded[0], padded[1], padded[2]
    name = " ".join(p for p in (padded[5], given, padded[3], family, padded[4]) if p)
    if not ident and not name:
        return None
    ref: Resource = {}
    if ident:
        ref["identifier"] = {"system": PRACTITIONER_SYSTEM, "value": ident}
    if name:
        ref["display"] = name
    return ref
