"""DICOM instances -> FHIR R4 ``ImagingStudy`` (+ ``Specimen``, ``Endpoint``).

Follows the DICOM mapping of the FHIR R4 ImagingStudy resource (``imagingstudy.html``,
"DICOM Tag Mapping" column) and the DICOM PS3.3 modules each attribute comes from; the whole
table, with the choices made where the standards leave room, is ``dicom_to_imagingstudy.md``.

Typical use (the SCP or importer per instance, the study projector per study)::

    summary = extract_instance_summary(ds)          # header only; raises DicomMappingError
    study = dicom_to_imagingstudy(
        summaries_of_that_study,
        study_id="...",
        patient_reference="Patient/...",
        endpoint_reference="Endpoint/...",
        accession_system="urn:oid:...",
    )

Pure: no I/O, no clock, no logging; the same instances in any order give the same resource.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import tzinfo
from typing import Any, Final, TypeVar

from pydicom.sr.codedict import codes
from pydicom.uid import UID

from mappings._dicom_fhir import (
    DCM_SYSTEM,
    DEFAULT_CODING_SYSTEMS,
    SNOMED_SYSTEM,
    codeable_concept,
    coding,
    dicom_date_to_fhir,
    dicom_datetime_to_fhir,
    display_name,
)
from mappings.dicom_bodysite import body_part_coding, laterality_coding
from mappings.dicom_instance import (
    CodedConcept,
    DicomMappingError,
    InstanceSummary,
    Issuer,
    OtherPatientId,
    PersonName,
    SpecimenStep,
    SpecimenSummary,
    extract_instance_summary,
)
from mappings.identifier_system import identifier_system

__all__ = [
    "DEFAULT_CODING_SYSTEMS",
    "R4_DCM_MODALITIES",
    "SNOMED_SYSTEM",
    "CodedConcept",
    "DicomMappingError",
    "InstanceSummary",
    "Issuer",
    "OtherPatientId",
    "PersonName",
    "SpecimenStep",
    "SpecimenSummary",
    "dicom_date_to_fhir",
    "dicom_datetime_to_fhir",
    "dicom_endpoint",
    "dicom_to_imagingstudy",
    "dicom_to_specimen",
    "extract_instance_summary",
    "issuer_system",
    "r4_modality",
]

V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
PARTICIPATION_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ENDPOINT_CONNECTION_TYPE: Final = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
_FHIR_ID_RE: Final = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_OID_RE: Final = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_MAX_UNSIGNED_INT: Final = 2_147_483_647

T = TypeVar("T")


# PS3.16 CID 33 "Modality", as pydicom ships it: the display of each DCM modality code.
_MODALITY_DISPLAY: Final = {code.value: code.meaning for code in codes.CID33.concepts.values()}

# The Modality (0008,0060) defined terms (PS3.16 CID 29/33, and retired ones) that the DCM
# CodeSystem bundled with FHIR R4 4.0.1 (version "01") defines. R4 validators reject any other
# DCM code as unknown (e.g. DOC, added to DICOM later), so such modalities are mapped to OT.
R4_DCM_MODALITIES: Final = frozenset(
    "AR AS AU BDUS BI BMD CD CF CP CR CS CT DD DF DG DM DS DX EC ECG EPS ES FA FS GM HC HD IO "
    "IVOCT IVUS KER KO LEN LP LS MA MG MR MS NM OAM OCT OP OPM OPR OPT OPV OSS OT PR PT PX REG "
    "RF RG RTDOSE RTIMAGE RTPLAN RTRECORD RTSTRUCT SEG SM SMR SR SRF ST TG US VA VF XA XC".split()
)


def issuer_system(issuer: Issuer | None, systems: Mapping[str, str], default: str) -> str | None:
    """The identifier system URI for an issuer (the HL7 v2 HD that DICOM carries), by the rule
    shared with HL7 v2 (``mappings/identifier_system.md``). ``default=""`` means no default
    namespace: an unknown issuer then gives None."""
    if issuer is None:
        return default or None
    return identifier_system(
        issuer.local, issuer.universal, issuer.universal_type, systems, default or None
    )


def _first(values: Iterable[T], present: Callable[[T], bool] = bool) -> T | None:
    for value in values:
        if present(value):
            return value
    return None


def _unique(values: Iterable[T]) -> list[T]:
    seen: list[T] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _number(value: int | None) -> int | None:
    # ImagingStudy.series.number and .instance.number are unsignedInt; DICOM IS may be negative.
    return value if value is not None and 0 <= value <= _MAX_UNSIGNED_INT else None


def _sort_key(number: int | None, uid: str) -> tuple[int, int, tuple[int, ...], str]:
    # "By number, then UID": unnumbered last, UIDs compared component by component.
    try:
        numeric_uid = tuple(int(part) for part in uid.split("."))
    except ValueError:
        numeric_uid = ()
    return (1 if number is None else 0, number or 0, numeric_uid, uid)


def _display_reference(name: PersonName) -> dict[str, str] | None:
    text = display_name(name)
    return {"display": text} if text else None


def _laterality(instances: Sequence[InstanceSummary]) -> str:
    """One series laterality from its instances: R, L, B (both seen, or B given) or ''."""
    seen = set()
    for instance in instances:
        value = instance.laterality or instance.image_laterality
        if value in ("R", "L", "B"):
            seen.add(value)
    if "B" in seen or {"R", "L"} <= seen:
        return "B"
    return seen.pop() if seen else ""


def _body_site(
    instances: Sequence[InstanceSummary], systems: Mapping[str, str]
) -> dict[str, str] | None:
    regions = [r for i in instances for r in i.anatomic_regions]
    for region in regions:  # a coded Anatomic Region in SNOMED CT is the most specific
        if region.scheme == "SCT":
            return coding(region, systems)
    for instance in instances:  # then Body Part Examined through PS3.16 Annex L
        if instance.body_part_examined:
            found = body_part_coding(instance.body_part_examined)
            if found is not None:
                return found
    for region in regions:  # then any other coded region whose scheme we know
        found = coding(region, systems)
        if found is not None:
            return found
    for instance in instances:  # whole-slide images: the specimens' primary anatomic structure
        for specimen in instance.specimens:
            for structure in specimen.anatomic_structures:
                found = coding(structure, systems)
                if found is not None:
                    return found
    return None


def _started(
    date_value: str, time_value: str, offset: str, default_timezone: tzinfo | None
) -> str | None:
    return dicom_datetime_to_fhir(date_value, time_value, offset, default_timezone=default_timezone)


def _performers(instances: Sequence[InstanceSummary]) -> list[dict[str, Any]]:
    performers: list[dict[str, Any]] = []
    for names, code, display in (
        ([n for i in instances for n in i.performing_physicians], "PRF", "performer"),
        ([n for i in instances for n in i.operators], "SPRF", "secondary performer"),
    ):
        for name in _unique(names):
            actor = _display_reference(name)
            if actor is None:
                continue
            performer = {
                "function": {
                    "coding": [{"system": PARTICIPATION_TYPE, "code": code, "display": display}]
                },
                "actor": actor,
            }
            if performer not in performers:
                performers.append(performer)
    return performers


def r4_modality(modality: str) -> str:
    """The DCM code R4 knows for a Modality (0008,0060) value (``R4_DCM_MODALITIES``)."""
    # Missing (some secondary captures omit the Type 1 attribute) or unknown to R4's DCM: OT.
    return modality if modality in R4_DCM_MODALITIES else "OT"


def _modality_coding(modality: str) -> dict[str, str]:
    result = {"system": DCM_SYSTEM, "code": modality}
    display = _MODALITY_DISPLAY.get(modality)
    if display:
        result["display"] = display
    return result


def _sop_class(uid: str) -> dict[str, str]:
    result = {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{uid}"}
    name = UID(uid).name
    if name and name != uid:
        result["display"] = name
    return result


def _instance(summary: InstanceSummary) -> dict[str, Any]:
    result: dict[str, Any] = {
        "uid": summary.sop_instance_uid,
        "sopClass": _sop_class(summary.sop_class_uid),
    }
    number = _number(summary.instance_number)
    if number is not None:
        result["number"] = number
    if summary.title:
        result["title"] = summary.title
    return result


def _series(
    uid: str,
    instances: Sequence[InstanceSummary],
    *,
    systems: Mapping[str, str],
    specimen_references: Mapping[str, str],
    default_timezone: tzinfo | None,
) -> dict[str, Any]:
    numbers = [i.series_number for i in instances if _number(i.series_number) is not None]
    series: dict[str, Any] = {"uid": uid}
    if numbers:
        series["number"] = min(n for n in numbers if n is not None)
    series["modality"] = _modality_coding(r4_modality(_first(i.modality for i in instances) or ""))
    description = _first(i.series_description for i in instances)
    if description:
        series["description"] = description
    series["numberOfInstances"] = len(instances)
    body_site = _body_site(instances, systems)
    if body_site is not None:
        series["bodySite"] = body_site
    laterality = laterality_coding(_laterality(instances))
    if laterality is not None:
        series["laterality"] = laterality
    specimen_ids = _unique(s.identifier for i in instances for s in i.specimens)
    specimens = [
        {"reference": specimen_references[s]} for s in specimen_ids if s in specimen_references
    ]
    if specimens:
        series["specimen"] = specimens
    dated = _first(instances, lambda i: bool(i.series_date))
    if dated is not None:
        started = _started(
            dated.series_date, dated.series_time, dated.timezone_offset, default_timezone
        )
        if started:
            series["started"] = started
    performers = _performers(instances)
    if performers:
        series["performer"] = performers
    series["instance"] = [_instance(i) for i in instances]
    return series


def _order(instances: Sequence[InstanceSummary]) -> list[InstanceSummary]:
    if not instances:
        raise ValueError("an ImagingStudy needs at least one instance")
    by_uid: dict[str, InstanceSummary] = {}
    study_uid = instances[0].study_instance_uid
    for instance in instances:
        if instance.study_instance_uid != study_uid:
            raise ValueError(
                f"instances of more than one study: {study_uid} and {instance.study_instance_uid}"
            )
        known = by_uid.get(instance.sop_instance_uid)
        if known is not None and known != instance:
            raise ValueError(
                f"two different summaries for SOP Instance UID {instance.sop_instance_uid}: "
                "the caller decides which one is current"
            )
        by_uid[instance.sop_instance_uid] = instance
    return sorted(
        by_uid.values(),
        key=lambda i: _sort_key(i.instance_number, i.sop_instance_uid),
    )


def dicom_to_imagingstudy(
    instances: Sequence[InstanceSummary],
    *,
    study_id: str,
    patient_reference: str,
    endpoint_reference: str | None,
    accession_system: str,
    encounter_reference: str | None = None,
    based_on: Sequence[str] = (),
    specimen_references: Mapping[str, str] | None = None,
    location_reference: str | None = None,
    default_timezone: tzinfo | None = None,
    coding_systems: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One R4 ImagingStudy for all the instances of one study (FHIR R4 ``imagingstudy.html``).

    ``instances`` must share one Study Instance UID; an instance given twice must be given
    identically (``ValueError`` otherwise). ``accession_system`` is the identifier system for the
    Accession Number (the caller resolves the Issuer of Accession Number (0008,0051), e.g. with
    :func:`issuer_system`). ``specimen_references`` maps a Specimen Identifier (0040,0551) to the
    reference of the Specimen made from it by :func:`dicom_to_specimen`. ``default_timezone`` is
    used for dates and times of instances without Timezone Offset From UTC (0008,0201).
    ``coding_systems`` adds to or overrides :data:`DEFAULT_CODING_SYSTEMS` (Coding Scheme
    Designator -> system URI). Series and instances are sorted by number, then UID.
    """
    if not _FHIR_ID_RE.match(study_id):
        raise ValueError(f"not a FHIR id: {study_id!r}")
    systems = {**DEFAULT_CODING_SYSTEMS, **(coding_systems or {})}
    ordered = _order(instances)
    by_series: dict[str, list[InstanceSummary]] = {}
    for instance in ordered:
        by_series.setdefault(instance.series_instance_uid, []).append(instance)
    series_uids = sorted(
        by_series,
        key=lambda uid: _sort_key(
            min(
                (n for n in (_number(i.series_number) for i in by_series[uid]) if n is not None),
                default=None,
            ),
            uid,
        ),
    )
    # Study-level attributes: the first instance that has them, series by series, in order.
    in_order = [i for uid in series_uids for i in by_series[uid]]
    study_uid = in_order[0].study_instance_uid

    study: dict[str, Any] = {"resourceType": "ImagingStudy", "id": study_id}
    identifiers: list[dict[str, Any]] = [
        {"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}"}
    ]
    with_accession = _first(in_order, lambda i: bool(i.accession_number))
    if with_accession is not None:
        accession: dict[str, Any] = {
            "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
            "system": accession_system,
            "value": with_accession.accession_number,
        }
        issuer = with_accession.accession_issuer
        if issuer is not None and issuer.local:
            accession["assigner"] = {"display": issuer.local}
        identifiers.append(accession)
    study["identifier"] = identifiers
    study["status"] = "available"
    # The union of the series' Modality (0008,0060), never Modalities in Study (0008,0061).
    modalities = {
        r4_modality(_first(i.modality for i in by_series[uid]) or "") for uid in series_uids
    }
    study["modality"] = [_modality_coding(m) for m in sorted(modalities)]
    study["subject"] = {"reference": patient_reference}
    if encounter_reference:
        study["encounter"] = {"reference": encounter_reference}
    dated = _first(in_order, lambda i: bool(i.study_date))
    if dated is not None:
        started = _started(
            dated.study_date, dated.study_time, dated.timezone_offset, default_timezone
        )
        if started:
            study["started"] = started
    if based_on:
        study["basedOn"] = [{"reference": r} for r in sorted(set(based_on))]
    referrer = _first(
        (_display_reference(i.referring_physician) for i in in_order if i.referring_physician),
    )
    if referrer is not None:
        study["referrer"] = referrer
    interpreters = _unique(
        ref for i in in_order for n in i.reading_physicians if (ref := _display_reference(n))
    )
    if interpreters:
        study["interpreter"] = interpreters
    if endpoint_reference:
        study["endpoint"] = [{"reference": endpoint_reference}]
    study["numberOfSeries"] = len(series_uids)
    study["numberOfInstances"] = len(in_order)
    procedures = _unique(c for i in in_order for c in i.procedure_codes)
    if procedures:
        study["procedureCode"] = [codeable_concept(c, systems) for c in procedures]
    if location_reference:
        study["location"] = {"reference": location_reference}
    reasons = _unique(
        [codeable_concept(c, systems) for i in in_order for c in i.reason_codes]
        + [{"text": r} for i in in_order for r in i.reasons]
    )
    if reasons:
        study["reasonCode"] = reasons
    description = _first(i.study_description for i in in_order)
    if description:
        study["description"] = description
    study["series"] = [
        _series(
            uid,
            by_series[uid],
            systems=systems,
            specimen_references=specimen_references or {},
            default_timezone=default_timezone,
        )
        for uid in series_uids
    ]
    return study


def dicom_to_specimen(summary: InstanceSummary, *, patient_reference: str) -> list[dict[str, Any]]:
    """One R4 Specimen per Specimen Description Sequence (0040,0560) item (PS3.3 C.7.6.22).

    The resources have no ``id``: the caller stores them and passes their references to
    :func:`dicom_to_imagingstudy` keyed by Specimen Identifier, which is always the first
    ``identifier`` (with the issuer's system when it is an OID); the Specimen UID follows as
    ``urn:dicom:uid``.
    """
    systems = dict(DEFAULT_CODING_SYSTEMS)
    resources = []
    for specimen in summary.specimens:
        identifier: dict[str, Any] = {"value": specimen.identifier}
        system = issuer_system(specimen.issuer, {}, "") if specimen.issuer else None
        if system:
            identifier = {"system": system, **identifier}
        if specimen.issuer is not None and specimen.issuer.local:
            identifier["assigner"] = {"display": specimen.issuer.local}
        identifiers = [identifier]
        if specimen.uid:
            identifiers.append({"system": "urn:dicom:uid", "value": f"urn:oid:{specimen.uid}"})
        resource: dict[str, Any] = {
            "resourceType": "Specimen",
            "identifier": identifiers,
            "status": "available",
        }
        if specimen.specimen_type is not None:
            resource["type"] = codeable_concept(specimen.specimen_type, systems)
        resource["subject"] = {"reference": patient_reference}
        collection: dict[str, Any] = {}
        collection_steps = [s for s in specimen.steps if _is_collection(s)]
        if collection_steps and collection_steps[0].method is not None:
            collection["method"] = codeable_concept(collection_steps[0].method, systems)
        if specimen.anatomic_structures:
            collection["bodySite"] = codeable_concept(specimen.anatomic_structures[0], systems)
        if collection:
            resource["collection"] = collection
        processing = [_processing(step, systems) for step in specimen.steps]
        processing = [p for p in processing if p]
        if processing:
            resource["processing"] = processing
        if specimen.container_identifier or specimen.container_type is not None:
            container: dict[str, Any] = {}
            if specimen.container_identifier:
                container["identifier"] = [{"value": specimen.container_identifier}]
            if specimen.container_type is not None:
                container["type"] = codeable_concept(specimen.container_type, systems)
            resource["container"] = [container]
        notes = [
            {"text": text}
            for text in (specimen.short_description, specimen.detailed_description)
            if text
        ]
        if notes:
            resource["note"] = notes
        resources.append(resource)
    return resources


def _is_collection(step: SpecimenStep) -> bool:
    # Processing type "Specimen collection" (SCT 17636008; legacy SRT P3-00003).
    return step.processing_type is not None and step.processing_type.code in (
        "17636008",
        "P3-00003",
    )


def _processing(step: SpecimenStep, systems: Mapping[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    description = step.description or (step.processing_type.meaning if step.processing_type else "")
    if description:
        result["description"] = description
    procedure = step.method or step.processing_type
    if procedure is not None:
        result["procedure"] = codeable_concept(procedure, systems)
    additives = [{"display": s.meaning or s.code} for s in step.substances]
    if additives:
        result["additive"] = additives
    return result


def dicom_endpoint(base_url: str) -> dict[str, Any]:
    """PixelHub's DICOMweb WADO-RS ``Endpoint`` (R4 ``endpoint.html``) at ``<base>/dicomweb``.

    ``base_url`` is the hub's public HTTP base (``https://host:port``). The resource has no
    ``id``; the caller stores it once and passes its reference as ``endpoint_reference``.
    """
    if not re.match(r"^https?://[^\s/]+", base_url):
        raise ValueError(f"not an absolute http(s) URL: {base_url!r}")
    return {
        "resourceType": "Endpoint",
        "status": "active",
        "connectionType": {
            "system": ENDPOINT_CONNECTION_TYPE,
            "code": "dicom-wado-rs",
            "display": "DICOM WADO-RS",
        },
        "name": "PixelHub DICOMweb (WADO-RS)",
        "payloadType": [{"text": "DICOM"}],
        "payloadMimeType": ["application/dicom"],
        "address": base_url.rstrip("/") + "/dicomweb",
    }
