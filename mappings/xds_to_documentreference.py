"""XDS metadata <-> FHIR R4 per IHE MHD 4.x (ITI TF-3 4.5 / the MHD DocumentEntry and SubmissionSet
mappings): ``DocumentEntry`` <-> ``DocumentReference`` and ``SubmissionSet`` <-> ``List``, with the
IHE RAD MADO rules for imaging manifests (formatCode = the KOS SOP Class, RAD TF-3 4.68.4.1.2.3.3).
See ``xds_to_documentreference.md`` for the tables and the readings chosen.

Pure: no I/O, no clock. Values the registry holds that FHIR has no place for (repositoryUniqueId,
homeCommunityId, the object version) are left out and given back by the caller on the way in.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote, unquote

from mappings.hl7v2_model import xpn_name
from mappings.identifier_system import ISSUER_NAMESPACE, identifier_system, is_oid, issuer_of
from mappings.xds_model import (
    APPROVED,
    DEPRECATED,
    KOS_FORMAT,
    Author,
    Code,
    DocumentEntry,
    SubmissionSet,
)

__all__ = [
    "ACCESSION_TYPE",
    "LIST_TYPES",
    "STUDY_UID_TYPE",
    "cx_to_identifier",
    "documententry_to_documentreference",
    "documentreference_to_documententry",
    "dtm_to_fhir",
    "fhir_to_dtm",
    "identifier_to_cx",
    "list_to_submissionset",
    "scheme_to_system",
    "submissionset_to_list",
    "system_to_scheme",
    "unique_id_identifier",
]

Resource = dict[str, Any]

RFC3986: Final = "urn:ietf:rfc:3986"
DICOM_UID: Final = "urn:dicom:uid"
V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
DCMUID_SYSTEM: Final = "http://dicom.nema.org/resources/ontology/DCMUID"
MHD_SD: Final = "https://profiles.ihe.net/ITI/MHD/StructureDefinition"
SOURCE_ID_URL: Final = f"{MHD_SD}/ihe-sourceId"
DESIGNATION_TYPE_URL: Final = f"{MHD_SD}/ihe-designationType"
INTENDED_RECIPIENT_URL: Final = f"{MHD_SD}/ihe-intendedRecipient"
LIST_TYPES: Final = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
# CXi.5 reference id types (ITI TF-3 Table 4.2.3.1.7-2; the study UID type from the XDS-I.b CP)
STUDY_UID_TYPE: Final = "urn:ihe:iti:xds:2016:studyInstanceUID"
ACCESSION_TYPE: Final = "urn:ihe:iti:xds:2013:accession"
# A coding scheme that is a name, not an OID or URI, and not in the table below.
NAMED_SCHEME_NAMESPACE: Final = "urn:pixelhub:xds:codingscheme:"

# coding scheme OID <-> FHIR system (FHIR R4 terminologies-systems.html; HL7 OID registry)
_SCHEMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "2.16.840.1.113883.6.1": "http://loinc.org",
        "2.16.840.1.113883.6.96": "http://snomed.info/sct",
        "1.2.840.10008.2.16.4": "http://dicom.nema.org/resources/ontology/DCM",
        "1.2.840.10008.2.6.1": DCMUID_SYSTEM,
        "2.16.840.1.113883.5.25": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
        "2.16.840.1.113883.5.4": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "2.16.840.1.113883.5.111": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
        "1.3.6.1.4.1.19376.1.2.3": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
        "2.16.840.1.113883.6.256": "http://www.radlex.org",
        "2.16.840.1.113883.6.8": "http://unitsofmeasure.org",
        "2.16.840.1.113883.6.3": "http://hl7.org/fhir/sid/icd-10",
        "2.16.840.1.113883.6.12": "http://www.ama-assn.org/go/cpt",
    }
)
# coding scheme names seen in XDS affinity domains (and DICOM designators) -> their OID
_SCHEME_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "LOINC": "2.16.840.1.113883.6.1",
        "LN": "2.16.840.1.113883.6.1",
        "SNOMED CT": "2.16.840.1.113883.6.96",
        "SNOMED-CT": "2.16.840.1.113883.6.96",
        "SCT": "2.16.840.1.113883.6.96",
        "DCM": "1.2.840.10008.2.16.4",
        "DCMUID": "1.2.840.10008.2.6.1",
        "RADLEX": "2.16.840.1.113883.6.256",
        "UCUM": "2.16.840.1.113883.6.8",
        "I10": "2.16.840.1.113883.6.3",
        "C4": "2.16.840.1.113883.6.12",
    }
)
_SYSTEMS: Final[Mapping[str, str]] = MappingProxyType({v: k for k, v in _SCHEMES.items()})

_STATUS = {APPROVED: "current", DEPRECATED: "superseded"}
_GENDER = {"M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other"}
_GENDER_BACK = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
_DTM = re.compile(r"[0-9]{4}([0-9]{2}){0,5}")
_FHIR_DATE = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?")
_FHIR_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})"
)
_HL7_DELIMITERS = re.compile(r"[|^~\\&]")


# --------------------------------------------------------------------------------------------
# Coding schemes, times and identifiers


def scheme_to_system(scheme: str) -> str:
    """FHIR system of an XDS ``codingScheme`` (ITI TF-3 4.2.3.1.2): a known OID or name -> its
    URI, another OID -> ``urn:oid:``, a URI as is, another name ->
    ``urn:pixelhub:xds:codingscheme:<name, percent-encoded>`` (``system_to_scheme`` inverts)."""
    if not scheme:
        raise ValueError("empty coding scheme")
    oid = _SCHEME_NAMES.get(scheme.upper(), scheme)
    if oid in _SCHEMES:
        return _SCHEMES[oid]
    if is_oid(oid):
        return f"urn:oid:{oid}"
    if ":" in scheme:
        return scheme
    return NAMED_SCHEME_NAMESPACE + quote(scheme, safe="")


def system_to_scheme(system: str) -> str:
    """The XDS ``codingScheme`` of a FHIR system: a known URI -> its OID, ``urn:oid:X`` -> X, a
    PixelHub named-scheme URN -> the name, any other URI as is (MHD: the system is the scheme)."""
    if not system:
        raise ValueError("empty system")
    if system in _SYSTEMS:
        return _SYSTEMS[system]
    if system.startswith("urn:oid:") and is_oid(system[8:]):
        return system[8:]
    if system.startswith(NAMED_SCHEME_NAMESPACE):
        return unquote(system[len(NAMED_SCHEME_NAMESPACE) :])
    return system


def dtm_to_fhir(dtm: str) -> str:
    """An XDS DTM (ITI TF-3 4.2.3.1.5: UTC, ``YYYY[MM[DD[hh[mm[ss]]]]]``) -> a FHIR ``dateTime``:
    a date of the same precision, or with a time ``YYYY-MM-DDThh:mm:ssZ`` (FHIR needs seconds
    once there is a time, so a DTM to the hour or minute gets zeros)."""
    if not _DTM.fullmatch(dtm):
        raise ValueError(f"not an XDS DTM: {dtm!r}")
    digits = dtm.ljust(14, "0") if len(dtm) > 8 else dtm.ljust(8, "1")
    try:
        moment = datetime.strptime(digits, "%Y%m%d%H%M%S" if len(dtm) > 8 else "%Y%m%d")
    except ValueError:
        raise ValueError(f"not an XDS DTM: {dtm!r}") from None
    if len(dtm) == 4:
        return dtm
    if len(dtm) == 6:
        return f"{dtm[:4]}-{dtm[4:6]}"
    if len(dtm) == 8:
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def fhir_to_dtm(value: str) -> str:
    """A FHIR ``date``/``dateTime``/``instant`` -> an XDS DTM in UTC: a date keeps its precision; a
    time is converted to UTC by its offset and written to the second (fractions dropped)."""
    date_only = _FHIR_DATE.fullmatch(value)
    if date_only:
        year, month, day = date_only.groups()
        datetime(int(year), int(month or 1), int(day or 1))  # range check
        return year + (month or "") + (day or "")
    timed = _FHIR_TIME.fullmatch(value)
    if not timed:
        raise ValueError(f"not a FHIR dateTime with a time zone: {value!r}")
    year, month, day, hour, minute, second, _fraction, zone = timed.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=_zone(zone)
        )
    except ValueError:
        raise ValueError(f"not a FHIR dateTime: {value!r}") from None
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def _zone(zone: str) -> timezone:
    if zone == "Z":
        return UTC
    sign = -1 if zone[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))


def _hd(authority: str) -> tuple[str, str, str]:
    """An HL7 v2 HD (``namespace&universal id&type``) as its three parts."""
    namespace, universal, kind = [*authority.split("&"), "", ""][:3]
    return namespace, universal, kind


def cx_to_identifier(cx: str) -> Resource:
    """An XDS patient id (ITI TF-3 4.2.3.2.16: HL7 v2 CX with CX.1 and an ISO assigning authority
    in CX.4, no other components) -> ``{"system": "urn:oid:<oid>", "value": <id>}``. A namespace
    in CX.4.1 is accepted and not kept. ``ValueError`` for anything else."""
    parts = cx.split("^")
    if len(parts) < 4 or not parts[0] or any(parts[1:3]) or any(parts[4:]):
        raise ValueError(f"not an XDS patient id (CX with CX.1 and CX.4 only): {cx!r}")
    _namespace, universal, kind = _hd(parts[3])
    if kind != "ISO" or not is_oid(universal) or parts[3].count("&") != 2:
        raise ValueError(f"CX.4 is not an ISO assigning authority (&<oid>&ISO): {cx!r}")
    return {"system": f"urn:oid:{universal}", "value": parts[0]}


def identifier_to_cx(identifier: Mapping[str, Any]) -> str:
    """A FHIR ``Identifier`` with a ``urn:oid:`` system -> the XDS CX ``<value>^^^&<oid>&ISO``;
    ``ValueError`` for other systems or a value with HL7 v2 delimiters."""
    system = str(identifier.get("system") or "")
    value = str(identifier.get("value") or "")
    oid = system.removeprefix("urn:oid:")
    if oid == system or not is_oid(oid):
        raise ValueError(f"identifier system is not urn:oid:<oid>: {system!r}")
    if not value or _HL7_DELIMITERS.search(value):
        raise ValueError(f"identifier value cannot be a CX.1: {value!r}")
    return f"{value}^^^&{oid}&ISO"


def _trim(*components: str, separator: str = "^") -> str:
    return separator.join(components).rstrip(separator)


def _cx_any_to_identifier(cx: str) -> Resource:
    """A CX from PID-3 (any assigning authority): ISO OIDs as ``urn:oid:``, other authorities as
    ``identifier_system`` writes them under PixelHub's issuer namespace."""
    try:
        return cx_to_identifier(cx)
    except ValueError:
        pass
    parts = [*cx.split("^"), "", "", ""][:4]
    identifier: Resource = {"value": parts[0]}
    system = identifier_system(*_hd(parts[3]), {}, ISSUER_NAMESPACE)
    if system and system != ISSUER_NAMESPACE:
        identifier["system"] = system
    return identifier


def _identifier_to_cx_any(identifier: Mapping[str, Any]) -> str:
    try:
        return identifier_to_cx(identifier)
    except ValueError:
        pass
    system = str(identifier.get("system") or "")
    namespace, universal, kind = issuer_of(system, {}, ISSUER_NAMESPACE) if system else ("", "", "")
    authority = _trim(namespace, universal, kind, separator="&")
    return _trim(str(identifier.get("value") or ""), "", "", authority)


# --------------------------------------------------------------------------------------------
# Codes


def _coding(code: Code) -> Resource:
    coding: Resource = {"system": scheme_to_system(code.scheme), "code": code.code}
    if code.display:
        coding["display"] = code.display
    return coding


def _concept(code: Code) -> Resource:
    return {"coding": [_coding(code)]}


def _code_of_coding(coding: Mapping[str, Any], text: str = "") -> Code:
    return Code(
        str(coding["code"]),
        system_to_scheme(str(coding["system"])),
        str(coding.get("display") or text),
    )


def _code_of(concept: Mapping[str, Any] | None) -> Code | None:
    """The first Coding with a system and a code (XDS codes are single-coded)."""
    for coding in (concept or {}).get("coding", []):
        if coding.get("system") and coding.get("code"):
            return _code_of_coding(coding, str((concept or {}).get("text") or ""))
    return None


# --------------------------------------------------------------------------------------------
# Authors (ITI TF-3 4.2.3.1.4; MHD: contained Practitioner / PractitionerRole / Organization)


def _assigned(value: str, authority: str) -> Resource:
    """An identifier of an XCN/XON with its assigning authority (an HD: ``&oid&ISO``)."""
    identifier: Resource = {"value": value}
    _ns, universal, kind = _hd(authority)
    if universal and kind == "ISO":
        identifier["system"] = f"urn:oid:{universal}"
    return identifier


def _authority(identifier: Mapping[str, Any]) -> str:
    """The HD (``&oid&ISO``) of an identifier with an ``urn:oid:`` system, else empty."""
    system = str(identifier.get("system") or "")
    return f"&{system[8:]}&ISO" if system.startswith("urn:oid:") else ""


def _xcn_to_practitioner(xcn: str, rid: str) -> Resource:
    """An XCN (``id^family^given^middle^suffix^prefix^^^&oid&ISO``) -> a Practitioner."""
    parts = (xcn.split("^") + [""] * 9)[:9]
    practitioner: Resource = {"resourceType": "Practitioner", "id": rid}
    if parts[0]:
        practitioner["identifier"] = [_assigned(parts[0], parts[8])]
    name = xpn_name(*parts[1:7])
    if name:
        practitioner["name"] = [name]
    return practitioner


def _practitioner_to_xcn(practitioner: Mapping[str, Any]) -> str:
    identifier = (practitioner.get("identifier") or [{}])[0]
    name = (practitioner.get("name") or [{}])[0]
    given = [*name.get("given", []), "", ""]
    return _trim(
        str(identifier.get("value") or ""),
        str(name.get("family") or ""),
        given[0],
        given[1],
        (name.get("suffix") or [""])[0],
        (name.get("prefix") or [""])[0],
        "",
        "",
        _authority(identifier),
    )


def _xon_to_organization(xon: str, rid: str) -> Resource:
    """An XON (``name^^^^^&oid&ISO^^^^id``) -> an Organization."""
    parts = (xon.split("^") + [""] * 10)[:10]
    organization: Resource = {"resourceType": "Organization", "id": rid}
    if parts[9]:
        organization["identifier"] = [_assigned(parts[9], parts[5])]
    if parts[0]:
        organization["name"] = parts[0]
    return organization


def _organization_to_xon(organization: Mapping[str, Any]) -> str:
    identifier = (organization.get("identifier") or [{}])[0]
    value = str(identifier.get("value") or "")
    name = str(organization.get("name") or "")
    if not value:
        return name
    return _trim(name, "", "", "", "", _authority(identifier), "", "", "", value)


def _xtn_to_contactpoint(xtn: str) -> Resource:
    """An XTN: ``^^Internet^<email>`` -> email, else a phone from XTN.12 (or XTN.1)."""
    parts = (xtn.split("^") + [""] * 12)[:12]
    if parts[2] == "Internet":
        return {"system": "email", "value": parts[3]}
    return {"system": "phone", "value": parts[11] or parts[0]}


def _contactpoint_to_xtn(point: Mapping[str, Any]) -> str:
    value = str(point.get("value") or "")
    if point.get("system") == "email":
        return f"^^Internet^{value}"
    return "^^PH" + "^" * 9 + value


def _author_resources(author: Author, rid: str, *, role: bool = False) -> list[Resource]:
    """The contained resources of one author, the one the author reference points to first: a
    Practitioner for a person alone (unless ``role``), else a PractitionerRole with its
    Practitioner and Organization (the first authorInstitution: PractitionerRole.organization is
    0..1)."""
    telecom = [_xtn_to_contactpoint(t) for t in author.telecoms]
    only_person = not (author.institutions or author.roles or author.specialties)
    if author.person and only_person and not role:
        practitioner = _xcn_to_practitioner(author.person, rid)
        if telecom:
            practitioner["telecom"] = telecom
        return [practitioner]
    practitioner_role: Resource = {"resourceType": "PractitionerRole", "id": rid}
    contained: list[Resource] = [practitioner_role]
    if author.person:
        contained.append(_xcn_to_practitioner(author.person, f"{rid}-person"))
        practitioner_role["practitioner"] = {"reference": f"#{rid}-person"}
    if author.institutions:
        contained.append(_xon_to_organization(author.institutions[0], f"{rid}-org"))
        practitioner_role["organization"] = {"reference": f"#{rid}-org"}
    if author.roles:
        practitioner_role["code"] = [{"text": r} for r in author.roles]
    if author.specialties:
        practitioner_role["specialty"] = [{"text": s} for s in author.specialties]
    if telecom:
        practitioner_role["telecom"] = telecom
    return contained


def _contained_by_id(resource: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(r.get("id")): r for r in resource.get("contained", [])}


def _author_of(reference: Mapping[str, Any], contained: Mapping[str, Mapping[str, Any]]) -> Author:
    """The XDS author of a FHIR author reference (contained, or only a display)."""
    ref = str(reference.get("reference") or "")
    target = contained.get(ref[1:]) if ref.startswith("#") else None
    if target is None:
        display = str(reference.get("display") or "")
        return Author(person=f"^{display}" if display else "")
    telecoms = tuple(_contactpoint_to_xtn(t) for t in target.get("telecom", []))
    kind = target.get("resourceType")
    if kind == "Practitioner":
        return Author(person=_practitioner_to_xcn(target), telecoms=telecoms)
    if kind == "Organization":
        return Author(institutions=(_organization_to_xon(target),), telecoms=telecoms)
    if kind != "PractitionerRole":
        raise ValueError(f"author: a contained {kind} cannot be an XDS author")
    person = contained.get(str(target.get("practitioner", {}).get("reference", ""))[1:])
    org = contained.get(str(target.get("organization", {}).get("reference", ""))[1:])
    return Author(
        person=_practitioner_to_xcn(person) if person else "",
        institutions=(_organization_to_xon(org),) if org else (),
        roles=tuple(str(c.get("text") or "") for c in target.get("code", [])),
        specialties=tuple(str(c.get("text") or "") for c in target.get("specialty", [])),
        telecoms=telecoms,
    )


def _authors_of(
    references: Iterable[Mapping[str, Any]], contained: Mapping[str, Mapping[str, Any]]
) -> tuple[Author, ...]:
    authors = (_author_of(r, contained) for r in references)
    return tuple(a for a in authors if a != Author())


# --------------------------------------------------------------------------------------------
# Source patient (ITI TF-3 4.2.3.2.23/24; MHD: context.sourcePatientInfo -> contained Patient)


def _source_patient(entry: DocumentEntry) -> Resource | None:
    """The contained Patient: sourcePatientId first, the other PID-3 values after it; PID-5 name,
    PID-7 birth date, PID-8 sex, PID-11 address. Other PID fields are not carried."""
    if not entry.source_patient_id and not entry.source_patient_info:
        return None
    patient: Resource = {"resourceType": "Patient", "id": "source-patient"}
    ids = [entry.source_patient_id] if entry.source_patient_id else []
    for line in entry.source_patient_info:
        field_name, _, value = line.partition("|")
        field_name = field_name.strip().upper()
        if field_name == "PID-3" and value not in ids:
            ids.append(value)
        elif field_name == "PID-5":
            name = xpn_name(*(value.split("^") + [""] * 6)[:6])
            if name is not None:
                patient.setdefault("name", []).append(name)
        elif field_name == "PID-7" and value:
            patient["birthDate"] = dtm_to_fhir(value[:8])
        elif field_name == "PID-8" and value:
            patient["gender"] = _GENDER.get(value.upper(), "unknown")
        elif field_name == "PID-11":
            parts = (value.split("^") + [""] * 6)[:6]
            address: Resource = {}
            lines = [p for p in parts[:2] if p]
            if lines:
                address["line"] = lines
            for key, part in zip(
                ("city", "state", "postalCode", "country"), parts[2:], strict=True
            ):
                if part:
                    address[key] = part
            patient.setdefault("address", []).append(address)
    if ids:
        patient["identifier"] = [_cx_any_to_identifier(i) for i in ids]
    return patient


def _source_patient_of(patient: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """sourcePatientId (the first identifier) and the sourcePatientInfo lines (every identifier
    as a PID-3, then PID-5, PID-7, PID-8, PID-11)."""
    ids = [_identifier_to_cx_any(i) for i in patient.get("identifier", [])]
    lines = [f"PID-3|{i}" for i in ids]
    for name in patient.get("name", []):
        given = [*name.get("given", []), "", ""]
        lines.append(
            "PID-5|"
            + _trim(
                str(name.get("family") or ""),
                given[0],
                given[1],
                (name.get("suffix") or [""])[0],
                (name.get("prefix") or [""])[0],
            )
        )
    if patient.get("birthDate"):
        lines.append(f"PID-7|{fhir_to_dtm(str(patient['birthDate']))}")
    if patient.get("gender"):
        lines.append(f"PID-8|{_GENDER_BACK.get(str(patient['gender']), 'U')}")
    for address in patient.get("address", []):
        street = [*address.get("line", []), "", ""]
        lines.append(
            "PID-11|"
            + _trim(
                street[0],
                street[1],
                *(str(address.get(k) or "") for k in ("city", "state", "postalCode", "country")),
            )
        )
    return (ids[0] if ids else ""), tuple(lines)


# --------------------------------------------------------------------------------------------
# referenceIdList (ITI TF-3 4.2.3.2.28, CXi) <-> context.related (MHD; RAD MADO)


def _related(cxi: str) -> Resource:
    """One referenceIdList value -> a ``context.related`` Reference with an identifier: the Study
    Instance UID as ``urn:dicom:uid`` / ``urn:oid:<uid>``, an accession with type v2-0203
    ``ACSN`` and its ISO assigning authority as ``urn:oid:`` system, any other with its CXi.5 as
    type text."""
    parts = (cxi.split("^") + [""] * 5)[:5]
    value, authority, id_type = parts[0], parts[3], parts[4]
    if not value:
        raise ValueError(f"referenceIdList value without CXi.1: {cxi!r}")
    if id_type == STUDY_UID_TYPE:
        return {"identifier": {"system": DICOM_UID, "value": f"urn:oid:{value}"}}
    identifier: Resource = {"value": value}
    if id_type == ACCESSION_TYPE:
        identifier["type"] = {"coding": [{"system": V2_0203, "code": "ACSN"}]}
    elif id_type:
        identifier["type"] = {"text": id_type}
    _ns, universal, kind = _hd(authority)
    if universal and kind == "ISO":
        identifier["system"] = f"urn:oid:{universal}"
    elif authority:
        identifier["assigner"] = {"display": authority}
    return {"identifier": identifier}


def _reference_id(related: Mapping[str, Any]) -> str | None:
    identifier = related.get("identifier")
    if not identifier:
        return None  # a plain Reference (the ImagingStudy): not an XDS reference id
    value = str(identifier.get("value") or "")
    system = str(identifier.get("system") or "")
    if system == DICOM_UID:
        return f"{value.removeprefix('urn:oid:')}^^^^{STUDY_UID_TYPE}"
    id_type = identifier.get("type") or {}
    codes = {(c.get("system"), c.get("code")) for c in id_type.get("coding", [])}
    kind = ACCESSION_TYPE if (V2_0203, "ACSN") in codes else str(id_type.get("text") or "")
    if system.startswith("urn:oid:"):
        authority = f"&{system[8:]}&ISO"
    else:
        authority = str((identifier.get("assigner") or {}).get("display") or "")
    return _trim(value, "", "", authority, kind)


# --------------------------------------------------------------------------------------------
# uniqueId <-> masterIdentifier (MHD UniqueIdIdentifier; ITI TF-2 Appendix Z.9.1)


def unique_id_identifier(unique_id: str) -> Resource:
    """An OID as ``urn:oid:<oid>``, a URN as is (both system ``urn:ietf:rfc:3986``); an
    ``<oid>^<extension>`` as system ``urn:oid:<oid>`` with the extension as value."""
    root, _, extension = unique_id.partition("^")
    if extension and is_oid(root):
        return {"use": "usual", "system": f"urn:oid:{root}", "value": extension}
    if is_oid(unique_id):
        return {"use": "usual", "system": RFC3986, "value": f"urn:oid:{unique_id}"}
    if unique_id.startswith("urn:"):
        return {"use": "usual", "system": RFC3986, "value": unique_id}
    raise ValueError(f"uniqueId is neither an OID, an OID^extension nor a URN: {unique_id!r}")


def _unique_id_of(identifier: Mapping[str, Any]) -> str:
    system = str(identifier.get("system") or "")
    value = str(identifier.get("value") or "")
    if system == RFC3986:
        return value.removeprefix("urn:oid:")
    if system.startswith("urn:oid:"):
        return f"{system[8:]}^{value}"
    raise ValueError(f"masterIdentifier system is neither {RFC3986} nor urn:oid:: {system!r}")


# --------------------------------------------------------------------------------------------
# DocumentEntry <-> DocumentReference


def _hash_to_fhir(sha1_hex: str) -> str:
    try:
        raw = bytes.fromhex(sha1_hex)
    except ValueError:
        raise ValueError(f"hash is not hex: {sha1_hex!r}") from None
    if len(raw) != 20:
        raise ValueError(f"hash is not a SHA-1 (20 bytes): {sha1_hex!r}")
    return base64.b64encode(raw).decode("ascii")


def _hash_to_xds(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError(f"content.attachment.hash is not base64: {value!r}") from None
    if len(raw) != 20:
        raise ValueError("content.attachment.hash is not a SHA-1 (20 bytes)")
    return raw.hex()


def documententry_to_documentreference(
    entry: DocumentEntry, *, patient: str, content_url: str, study: str | None = None
) -> Resource:
    """An XDS DocumentEntry -> an MHD Comprehensive ``DocumentReference`` (contained authors and
    source patient). ``patient``: the ``Patient/<id>`` the registry resolved ``patientId`` to;
    ``content_url``: where the document is retrieved; ``study``: ``ImagingStudy/<id>`` for a
    manifest (MADO, RAD TF-3 4.68.4.1.2.3.3), added to ``context.related``."""
    if entry.status not in _STATUS:
        raise ValueError(f"availabilityStatus has no DocumentReference.status: {entry.status!r}")
    if entry.format_code.code == KOS_FORMAT and entry.mime_type != "application/dicom":
        raise ValueError(f"a KOS manifest is application/dicom, not {entry.mime_type!r}")
    contained: list[Resource] = []
    author_refs: list[Resource] = []
    for number, author in enumerate(entry.authors, start=1):
        resources = _author_resources(author, f"author{number}")
        contained.extend(resources)
        author_refs.append({"reference": f"#{resources[0]['id']}"})
    source = _source_patient(entry)
    if source is not None:
        contained.append(source)

    doc: Resource = {"resourceType": "DocumentReference"}
    if contained:
        doc["contained"] = contained
    doc["masterIdentifier"] = unique_id_identifier(entry.unique_id)
    if entry.entry_uuid.startswith("urn:uuid:"):
        doc["identifier"] = [{"use": "official", "system": RFC3986, "value": entry.entry_uuid}]
    doc["status"] = _STATUS[entry.status]
    doc["type"] = _concept(entry.type_code)
    doc["category"] = [_concept(entry.class_code)]
    doc["subject"] = {"reference": patient}
    if author_refs:
        doc["author"] = author_refs
    if entry.comments:
        doc["description"] = entry.comments
    doc["securityLabel"] = [_concept(c) for c in entry.confidentiality]

    attachment: Resource = {"contentType": entry.mime_type}
    if entry.language:
        attachment["language"] = entry.language
    attachment["url"] = content_url
    if entry.size is not None:
        attachment["size"] = entry.size
    if entry.hash:
        attachment["hash"] = _hash_to_fhir(entry.hash)
    if entry.title:
        attachment["title"] = entry.title
    attachment["creation"] = dtm_to_fhir(entry.creation_time)
    doc["content"] = [{"attachment": attachment, "format": _coding(entry.format_code)}]

    context: Resource = {}
    if entry.event_codes:
        context["event"] = [_concept(c) for c in entry.event_codes]
    period: Resource = {}
    if entry.service_start:
        period["start"] = dtm_to_fhir(entry.service_start)
    if entry.service_stop:
        period["end"] = dtm_to_fhir(entry.service_stop)
    if period:
        context["period"] = period
    context["facilityType"] = _concept(entry.healthcare_facility_type)
    context["practiceSetting"] = _concept(entry.practice_setting)
    if source is not None:
        context["sourcePatientInfo"] = {"reference": "#source-patient"}
    related = [_related(r) for r in entry.reference_ids]
    if study:
        related.append({"reference": study})
    if related:
        context["related"] = related
    doc["context"] = context
    return doc


def _required_code(concept: Mapping[str, Any] | None, element: str, missing: list[str]) -> Code:
    code = _code_of(concept)
    if code is None:
        missing.append(element)
        return Code("", "")
    return code


def documentreference_to_documententry(
    doc: Mapping[str, Any], *, patient_id: str, repository_unique_id: str, entry_uuid: str
) -> DocumentEntry:
    """An MHD ``DocumentReference`` (ITI-65) -> an XDS DocumentEntry. ``patient_id``: the XDS CX
    of the subject; ``repository_unique_id`` and ``entry_uuid`` are the registry's. Raises
    ``ValueError`` naming every element XDS requires that the resource lacks."""
    missing: list[str] = []
    content = (doc.get("content") or [{}])[0]
    attachment = content.get("attachment") or {}
    context = doc.get("context") or {}
    class_code = _required_code((doc.get("category") or [None])[0], "classCode=category", missing)
    type_code = _required_code(doc.get("type"), "typeCode=type", missing)
    format_coding = content.get("format") or {}
    if format_coding.get("system") and format_coding.get("code"):
        format_code = _code_of_coding(format_coding)
    else:
        missing.append("formatCode=content.format")
        format_code = Code("", "")
    facility = _required_code(
        context.get("facilityType"), "healthcareFacilityType=context.facilityType", missing
    )
    setting = _required_code(
        context.get("practiceSetting"), "practiceSetting=context.practiceSetting", missing
    )
    labels = tuple(c for c in map(_code_of, doc.get("securityLabel", [])) if c is not None)
    if not labels:
        missing.append("confidentiality=securityLabel")
    if not attachment.get("creation"):
        missing.append("creationTime=content.attachment.creation")
    if not attachment.get("contentType"):
        missing.append("mimeType=content.attachment.contentType")
    if not (doc.get("masterIdentifier") or {}).get("value"):
        missing.append("masterIdentifier=uniqueId")
    if missing:
        raise ValueError("DocumentReference lacks what XDS requires: " + ", ".join(missing))

    status = str(doc.get("status") or "current")
    statuses = {v: k for k, v in _STATUS.items()}
    if status not in statuses:
        raise ValueError(f"DocumentReference.status {status!r} has no availabilityStatus")
    contained = _contained_by_id(doc)
    source_ref = str((context.get("sourcePatientInfo") or {}).get("reference") or "")
    source = contained.get(source_ref[1:]) if source_ref.startswith("#") else None
    source_id, source_info = _source_patient_of(source) if source else ("", ())
    period = context.get("period") or {}
    reference_ids = (_reference_id(r) for r in context.get("related", []))
    return DocumentEntry(
        entry_uuid=entry_uuid,
        unique_id=_unique_id_of(doc["masterIdentifier"]),
        patient_id=patient_id,
        mime_type=str(attachment["contentType"]),
        class_code=class_code,
        type_code=type_code,
        format_code=format_code,
        healthcare_facility_type=facility,
        practice_setting=setting,
        confidentiality=labels,
        creation_time=fhir_to_dtm(str(attachment["creation"])),
        language=str(attachment.get("language") or "en-US"),
        source_patient_id=source_id,
        source_patient_info=source_info,
        event_codes=tuple(c for c in map(_code_of, context.get("event", [])) if c is not None),
        service_start=fhir_to_dtm(str(period["start"])) if period.get("start") else "",
        service_stop=fhir_to_dtm(str(period["end"])) if period.get("end") else "",
        title=str(attachment.get("title") or ""),
        comments=str(doc.get("description") or ""),
        hash=_hash_to_xds(str(attachment["hash"])) if attachment.get("hash") else "",
        size=int(attachment["size"]) if attachment.get("size") is not None else None,
        repository_unique_id=repository_unique_id,
        reference_ids=tuple(r for r in reference_ids if r is not None),
        authors=_authors_of(doc.get("author", []), contained),
        status=statuses[status],
    )


# --------------------------------------------------------------------------------------------
# SubmissionSet <-> List (MHD SubmissionSet profile on List)


def submissionset_to_list(ss: SubmissionSet, *, patient: str, entries: Sequence[str]) -> Resource:
    """An XDS SubmissionSet -> an MHD SubmissionSet ``List``: code ``MHDlistTypes#submissionset``,
    mode ``working``, identifiers uniqueId (``usual``) and entryUUID (``official``), the
    ihe-sourceId and ihe-designationType extensions, ``source`` the first author (List.source is
    0..1). ``entries``: the ``DocumentReference/<id>`` (or ``List/<id>``) references."""
    extensions: list[Resource] = [
        {
            "url": DESIGNATION_TYPE_URL,
            "valueCodeableConcept": _concept(ss.content_type),
        },
        {
            "url": SOURCE_ID_URL,
            "valueIdentifier": {"system": RFC3986, "value": f"urn:oid:{ss.source_id}"},
        },
    ]
    extensions.extend(
        {"url": INTENDED_RECIPIENT_URL, "valueReference": {"display": r}}
        for r in ss.intended_recipients
    )
    identifiers: list[Resource] = [
        {"use": "usual", "system": RFC3986, "value": f"urn:oid:{ss.unique_id}"}
    ]
    if ss.entry_uuid.startswith("urn:uuid:"):
        identifiers.append({"use": "official", "system": RFC3986, "value": ss.entry_uuid})
    result: Resource = {"resourceType": "List"}
    source_ref: Resource | None = None
    if ss.authors:
        # List.source is Practitioner | PractitionerRole | Patient | Device: always a role
        result["contained"] = _author_resources(ss.authors[0], "author1", role=True)
        source_ref = {"reference": "#author1"}
    result["extension"] = extensions
    result["identifier"] = identifiers
    result["status"] = "current" if ss.status == APPROVED else "retired"
    result["mode"] = "working"
    if ss.title:
        result["title"] = ss.title
    result["code"] = {"coding": [{"system": LIST_TYPES, "code": "submissionset"}]}
    result["subject"] = {"reference": patient}
    result["date"] = dtm_to_fhir(ss.submission_time)
    if source_ref is not None:
        result["source"] = source_ref
    if ss.comments:
        result["note"] = [{"text": ss.comments}]
    if entries:
        result["entry"] = [{"item": {"reference": e}} for e in entries]
    return result


def list_to_submissionset(
    lst: Mapping[str, Any], *, patient_id: str, entry_uuid: str
) -> SubmissionSet:
    """An MHD SubmissionSet ``List`` -> an XDS SubmissionSet; ``ValueError`` naming what XDS
    requires and the List lacks (uniqueId, sourceId, contentTypeCode, submissionTime) or when it
    is not a SubmissionSet."""
    codes = {(c.get("system"), c.get("code")) for c in (lst.get("code") or {}).get("coding", [])}
    if (LIST_TYPES, "submissionset") not in codes:
        raise ValueError("List.code is not MHDlistTypes#submissionset")
    extensions = lst.get("extension", [])

    def extension(url: str) -> list[Mapping[str, Any]]:
        return [e for e in extensions if e.get("url") == url]

    missing: list[str] = []
    unique = [
        i
        for i in lst.get("identifier", [])
        if i.get("use") == "usual" or str(i.get("value", "")).startswith("urn:oid:")
    ]
    if not unique:
        missing.append("uniqueId=identifier(use usual)")
    source = [e["valueIdentifier"] for e in extension(SOURCE_ID_URL) if e.get("valueIdentifier")]
    if not source:
        missing.append(f"sourceId=extension({SOURCE_ID_URL})")
    designation = extension(DESIGNATION_TYPE_URL)
    content_type = _code_of(designation[0].get("valueCodeableConcept")) if designation else None
    if content_type is None:
        missing.append(f"contentTypeCode=extension({DESIGNATION_TYPE_URL})")
    if not lst.get("date"):
        missing.append("submissionTime=date")
    if missing:
        raise ValueError("List lacks what XDS requires: " + ", ".join(missing))
    assert content_type is not None
    contained = _contained_by_id(lst)
    authors = _authors_of([lst["source"]] if lst.get("source") else [], contained)
    recipients = tuple(
        str(e.get("valueReference", {}).get("display") or "")
        for e in extension(INTENDED_RECIPIENT_URL)
    )
    notes = [str(n.get("text") or "") for n in lst.get("note", [])]
    return SubmissionSet(
        entry_uuid=entry_uuid,
        unique_id=str(unique[0]["value"]).removeprefix("urn:oid:"),
        source_id=str(source[0].get("value") or "").removeprefix("urn:oid:"),
        patient_id=patient_id,
        submission_time=fhir_to_dtm(str(lst["date"])),
        content_type=content_type,
        authors=authors,
        title=str(lst.get("title") or ""),
        comments="\n".join(notes),
        intended_recipients=tuple(r for r in recipients if r),
        status=APPROVED if lst.get("status", "current") == "current" else DEPRECATED,
    )
