"""A study's instances -> the imaging manifest an Imaging Document Source publishes: a DICOM Key
Object Selection Document (PS3.3 A.35.4, SOP Class 1.2.840.10008.5.1.4.1.1.88.59) whose content
follows TID 2010 with the document title (113030, DCM, "Manifest") and which references every
instance of the study (IHE RAD TF-3 4.68.4.1.2.2, XDS-I.b; IHE RAD MADO). And back:
``kos_references`` lists what a manifest references, as RAD-69 needs it.

Modules written (A.35.4.1): Patient (C.7.1.1), General Study (C.7.2.1), Key Object Document Series
(C.17.6.1), General Equipment (C.7.5.1), Key Object Document (C.17.6.2), SR Document Content
(C.17.3), SOP Common (C.12.1). See ``study_to_kos.md`` for the table.

IMAGE or COMPOSITE (PS3.3 C.17.3.2.1): a referenced instance is an IMAGE item when its SOP Class
is an image storage class (its IOD has the Image Pixel module), a WAVEFORM item for the waveform
storage classes, otherwise COMPOSITE (SR, encapsulated documents, presentation states, KOS, RT
plans, unknown and private classes). Image classes are recognised by the explicit set
``_IMAGE_CLASSES`` plus the families in ``_IMAGE_PREFIXES`` whose every member is an image IOD,
less ``_NOT_IMAGE``.

Pure: no I/O, no clock (the caller supplies the content date/time and every UID).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

__all__ = [
    "KOS_SOP_CLASS",
    "KosReference",
    "ManifestInput",
    "ManifestInstance",
    "ManifestPatient",
    "content_value_type",
    "kos_references",
    "study_to_kos",
]

KOS_SOP_CLASS: Final = "1.2.840.10008.5.1.4.1.1.88.59"
# PS3.16 CID 7010 "Key Object Selection Document Title": the XDS-I.b / MADO manifest title.
MANIFEST_TITLE: Final = ("113030", "DCM", "Manifest")
# PS3.16 Annex A: TID 2010 "Key Object Selection", in the DICOM Content Mapping Resource.
_DCMR_UID: Final = "1.2.840.10008.8.1.1"

_UID_RE: Final = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
_DA_RE: Final = re.compile(r"^\d{8}$")
_TM_RE: Final = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_AE_RE: Final = re.compile(r"^[ -\[\]-~]{1,16}$")  # PS3.5 6.2: no backslash, no control chars

_STORAGE: Final = "1.2.840.10008.5.1.4.1.1."
# Image storage SOP Classes (PS3.4 B.5) named one by one: those whose family also holds
# classes without pixel data, or that stand alone.
_IMAGE_CLASSES: Final = frozenset(
    _STORAGE + suffix
    for suffix in (
        "1",  # Computed Radiography
        "2",  # CT
        "3.1",  # Ultrasound Multi-frame
        "4",  # MR
        "4.1",  # Enhanced MR
        "4.3",  # Enhanced MR Color
        "4.4",  # Legacy Converted Enhanced MR
        "7",  # Secondary Capture
        "20",  # Nuclear Medicine
        "30",  # Parametric Map
        "66.4",  # Segmentation
        "81.1",  # Ophthalmic Thickness Map
        "82.1",  # Corneal Topography Map
        "128",  # PET
        "128.1",  # Legacy Converted Enhanced PET
        "130",  # Enhanced PET
        "481.1",  # RT Image
    )
)
# Families in which every class is an image IOD.
_IMAGE_PREFIXES: Final = tuple(
    _STORAGE + family
    for family in (
        "1.",  # Digital X-Ray, Mammography, Intra-oral (for presentation / processing)
        "2.",  # Enhanced CT, Legacy Converted Enhanced CT
        "6.",  # Ultrasound, Enhanced US Volume, Photoacoustic
        "7.",  # Multi-frame Secondary Capture
        "12.",  # X-Ray Angiographic / Radiofluoroscopic, their Enhanced forms
        "13.1.",  # X-Ray 3D Angiographic / Craniofacial, Breast Tomosynthesis / Projection
        "14.",  # Intravascular OCT
        "77.1.",  # VL Endoscopic/Microscopic/Photographic, ophthalmic, whole slide, dermoscopic
    )
)
_NOT_IMAGE: Final = frozenset({_STORAGE + "77.1.5.3"})  # Stereometric Relationship: no pixels
_WAVEFORM_PREFIX: Final = _STORAGE + "9."  # ECG, audio, haemodynamic, ... waveforms


@dataclass(frozen=True)
class ManifestPatient:
    """Patient Module values (PS3.3 C.7.1.1), as DICOM writes them (PN, DA, CS)."""

    patient_id: str
    issuer: str = ""  # Issuer of Patient ID (0010,0021)
    name: str = ""
    birth_date: str = ""
    sex: str = ""


@dataclass(frozen=True)
class ManifestInstance:
    """One instance of the study the manifest references. ``modality`` has no place in the KOS
    (the Hierarchical SOP Instance Reference Macro carries UIDs only); it is for the XDS
    eventCodeList the caller builds beside the manifest."""

    series_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    modality: str = ""


@dataclass(frozen=True, kw_only=True)
class ManifestInput:
    """The study, its instances, where they are retrieved from, and the manifest's own identity.

    ``retrieve_location_uid`` is the Imaging Document Source's repository uniqueId that RAD-69 is
    addressed to (XDS-I.b requires it); ``retrieve_url`` the WADO-RS URL of the study
    (``…/studies/<study_uid>``, MADO); ``content_datetime`` must carry a time zone."""

    patient: ManifestPatient
    study_uid: str
    manifest_series_uid: str
    manifest_sop_uid: str
    content_datetime: datetime
    study_date: str = ""
    study_time: str = ""
    accession: str = ""
    accession_issuer: str = ""  # Issuer of Accession Number Sequence > Local Namespace Entity ID
    study_description: str = ""
    study_id: str = ""
    referring_physician: str = ""
    instances: tuple[ManifestInstance, ...] = ()
    retrieve_location_uid: str = ""
    retrieve_ae_title: str = ""
    retrieve_url: str = ""
    institution: str = ""
    manufacturer: str = "PixelHub"
    series_number: int = 1
    instance_number: int = 1


@dataclass(frozen=True)
class KosReference:
    """One instance a manifest references, with what RAD-69 needs to ask for it."""

    study_uid: str
    series_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    retrieve_location_uid: str = ""
    retrieve_ae_title: str = ""


def content_value_type(sop_class_uid: str) -> str:
    """The TID 2010 content item value type for a referenced instance of ``sop_class_uid``:
    ``IMAGE``, ``WAVEFORM`` or ``COMPOSITE`` (PS3.3 C.17.3.2.1; rule in the module docstring)."""
    if sop_class_uid in _NOT_IMAGE:
        return "COMPOSITE"
    if sop_class_uid in _IMAGE_CLASSES or sop_class_uid.startswith(_IMAGE_PREFIXES):
        return "IMAGE"
    if sop_class_uid.startswith(_WAVEFORM_PREFIX):
        return "WAVEFORM"
    return "COMPOSITE"


def study_to_kos(manifest: ManifestInput) -> Dataset:
    """The KOS manifest of ``manifest`` (the data set, without File Meta Information).

    Raises ``ValueError`` for an empty instance list, a malformed UID (PS3.5 9.1), a referenced
    instance listed twice or equal to the manifest itself, a value too long for its VR, a
    malformed date, time or AE title, a naive ``content_datetime``, or a ``retrieve_url`` that is
    not the WADO-RS URL of this study."""
    _check(manifest)
    ds = Dataset()
    texts = [
        manifest.patient.patient_id,
        manifest.patient.issuer,
        manifest.patient.name,
        manifest.accession,
        manifest.accession_issuer,
        manifest.study_description,
        manifest.study_id,
        manifest.referring_physician,
        manifest.institution,
        manifest.manufacturer,
    ]
    if not all(text.isascii() for text in texts):
        ds.SpecificCharacterSet = "ISO_IR 192"  # PS3.3 C.12.1.1.2: UTF-8

    # Patient (C.7.1.1)
    patient = manifest.patient
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    if patient.issuer:
        ds.IssuerOfPatientID = patient.issuer
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex if patient.sex in ("M", "F", "O") else ""

    # General Study (C.7.2.1)
    ds.StudyInstanceUID = manifest.study_uid
    ds.StudyDate = manifest.study_date
    ds.StudyTime = manifest.study_time
    ds.ReferringPhysicianName = manifest.referring_physician
    ds.StudyID = manifest.study_id
    ds.AccessionNumber = manifest.accession
    if manifest.accession_issuer:
        ds.IssuerOfAccessionNumberSequence = Sequence([_issuer(manifest.accession_issuer)])
    if manifest.study_description:
        ds.StudyDescription = manifest.study_description

    # Key Object Document Series (C.17.6.1)
    ds.Modality = "KO"
    ds.SeriesInstanceUID = manifest.manifest_series_uid
    ds.SeriesNumber = manifest.series_number
    ds.ReferencedPerformedProcedureStepSequence = Sequence()  # type 2: none known

    # General Equipment (C.7.5.1)
    ds.Manufacturer = manifest.manufacturer
    if manifest.institution:
        ds.InstitutionName = manifest.institution

    # Key Object Document (C.17.6.2)
    stamp = manifest.content_datetime
    date, time = stamp.strftime("%Y%m%d"), stamp.strftime("%H%M%S")
    ds.InstanceNumber = manifest.instance_number
    ds.ContentDate = date
    ds.ContentTime = time
    if manifest.accession:
        ds.ReferencedRequestSequence = Sequence([_request(manifest)])
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([_evidence(manifest)])

    # SR Document Content (C.17.3): the TID 2010 root and its rows
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code(*MANIFEST_TITLE)])
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource = "DCMR"
    template.MappingResourceUID = _DCMR_UID
    template.TemplateIdentifier = "2010"
    ds.ContentTemplateSequence = Sequence([template])
    ds.ContentSequence = Sequence([_content_item(i) for i in manifest.instances])

    # SOP Common (C.12.1)
    ds.SOPClassUID = KOS_SOP_CLASS
    ds.SOPInstanceUID = manifest.manifest_sop_uid
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = time
    ds.TimezoneOffsetFromUTC = stamp.strftime("%z")
    return ds


def kos_references(kos: Dataset) -> list[KosReference]:
    """Every instance listed in the Current Requested Procedure Evidence Sequence of a KOS
    (PS3.3 C.17.6.2, Hierarchical SOP Instance Reference Macro), in order, with the Retrieve
    Location UID / Retrieve AE Title of its series (or of the instance item, which wins).
    Raises ``ValueError`` if ``kos`` is not a Key Object Selection Document or a reference lacks
    a UID."""
    if str(kos.get("SOPClassUID", "")) != KOS_SOP_CLASS:
        raise ValueError(f"not a Key Object Selection Document (SOP Class UID {KOS_SOP_CLASS})")
    if "CurrentRequestedProcedureEvidenceSequence" not in kos:
        raise ValueError("KOS has no Current Requested Procedure Evidence Sequence (0040,A375)")
    references: list[KosReference] = []
    for study in kos.CurrentRequestedProcedureEvidenceSequence:
        study_uid = _required_uid(study, "StudyInstanceUID")
        for series in study.get("ReferencedSeriesSequence", []):
            series_uid = _required_uid(series, "SeriesInstanceUID")
            for sop in series.get("ReferencedSOPSequence", []):
                references.append(
                    KosReference(
                        study_uid=study_uid,
                        series_uid=series_uid,
                        sop_class_uid=_required_uid(sop, "ReferencedSOPClassUID"),
                        sop_instance_uid=_required_uid(sop, "ReferencedSOPInstanceUID"),
                        retrieve_location_uid=_first(sop, series, "RetrieveLocationUID"),
                        retrieve_ae_title=_first(sop, series, "RetrieveAETitle"),
                    )
                )
    return references


# --- building blocks ---------------------------------------------------------------------------


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _issuer(local_id: str) -> Dataset:
    """An HL7v2 Hierarchic Designator Macro item (PS3.3 Table 10-17) with a local namespace."""
    item = Dataset()
    item.LocalNamespaceEntityID = local_id
    return item


def _request(manifest: ManifestInput) -> Dataset:
    """A Referenced Request Sequence item (C.17.6.2): the Requested Procedure the study answered,
    known here by its accession number; the type 2 attributes PixelHub does not know are empty."""
    item = Dataset()
    item.AccessionNumber = manifest.accession
    if manifest.accession_issuer:
        item.IssuerOfAccessionNumberSequence = Sequence([_issuer(manifest.accession_issuer)])
    item.ReferencedStudySequence = Sequence()
    item.StudyInstanceUID = manifest.study_uid
    item.RequestedProcedureDescription = ""
    item.RequestedProcedureCodeSequence = Sequence()
    item.RequestedProcedureID = ""
    item.PlacerOrderNumberImagingServiceRequest = ""
    item.FillerOrderNumberImagingServiceRequest = ""
    return item


def _evidence(manifest: ManifestInput) -> Dataset:
    """The study item of the Current Requested Procedure Evidence Sequence: one Referenced Series
    Sequence item per series (input order) carrying where its instances are retrieved from, as
    XDS-I.b asks (Retrieve Location UID; Retrieve AE Title; MADO's Retrieve URL)."""
    by_series: dict[str, list[ManifestInstance]] = {}
    for instance in manifest.instances:
        by_series.setdefault(instance.series_uid, []).append(instance)
    series_items = []
    for series_uid, instances in by_series.items():
        series = Dataset()
        if manifest.retrieve_ae_title:
            series.RetrieveAETitle = manifest.retrieve_ae_title
        if manifest.retrieve_url:
            series.RetrieveURL = f"{manifest.retrieve_url}/series/{series_uid}"
        series.ReferencedSOPSequence = Sequence([_sop_reference(i) for i in instances])
        series.SeriesInstanceUID = series_uid
        if manifest.retrieve_location_uid:
            series.RetrieveLocationUID = manifest.retrieve_location_uid
        series_items.append(series)
    study = Dataset()
    study.ReferencedSeriesSequence = Sequence(series_items)
    study.StudyInstanceUID = manifest.study_uid
    return study


def _sop_reference(instance: ManifestInstance) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = instance.sop_class_uid
    item.ReferencedSOPInstanceUID = instance.sop_instance_uid
    return item


def _content_item(instance: ManifestInstance) -> Dataset:
    """A TID 2010 row: CONTAINS IMAGE / WAVEFORM / COMPOSITE, no concept name."""
    item = Dataset()
    item.ReferencedSOPSequence = Sequence([_sop_reference(instance)])
    item.RelationshipType = "CONTAINS"
    item.ValueType = content_value_type(instance.sop_class_uid)
    return item


# --- validation --------------------------------------------------------------------------------


def _check(manifest: ManifestInput) -> None:
    if not manifest.instances:
        raise ValueError("a manifest must reference at least one instance")
    _uid("study_uid", manifest.study_uid)
    _uid("manifest_series_uid", manifest.manifest_series_uid)
    _uid("manifest_sop_uid", manifest.manifest_sop_uid)
    if manifest.retrieve_location_uid:
        _uid("retrieve_location_uid", manifest.retrieve_location_uid)
    seen: set[str] = set()
    for n, instance in enumerate(manifest.instances):
        _uid(f"instances[{n}].series_uid", instance.series_uid)
        _uid(f"instances[{n}].sop_class_uid", instance.sop_class_uid)
        _uid(f"instances[{n}].sop_instance_uid", instance.sop_instance_uid)
        if instance.sop_instance_uid in seen:
            raise ValueError(f"instances[{n}]: SOP Instance UID listed twice")
        if instance.sop_instance_uid == manifest.manifest_sop_uid:
            raise ValueError(f"instances[{n}]: a manifest cannot reference itself")
        seen.add(instance.sop_instance_uid)
    if manifest.content_datetime.utcoffset() is None:
        raise ValueError("content_datetime must carry a time zone")
    patient = manifest.patient
    for name, value, limit in (
        ("patient.patient_id", patient.patient_id, 64),  # LO
        ("patient.issuer", patient.issuer, 64),  # LO
        ("patient.name", patient.name, 64 * 3 + 2),  # PN: 64 per component group
        ("accession", manifest.accession, 16),  # SH
        ("accession_issuer", manifest.accession_issuer, 64),  # UT, kept to LO length
        ("study_description", manifest.study_description, 64),  # LO
        ("study_id", manifest.study_id, 16),  # SH
        ("referring_physician", manifest.referring_physician, 64 * 3 + 2),  # PN
        ("institution", manifest.institution, 64),  # LO
        ("manufacturer", manifest.manufacturer, 64),  # LO
    ):
        if len(value) > limit or "\\" in value or any(c in value for c in "\r\n\f\x00"):
            raise ValueError(f"{name}: too long or contains a backslash or control character")
    for name, value, pattern in (
        ("patient.birth_date", patient.birth_date, _DA_RE),
        ("study_date", manifest.study_date, _DA_RE),
        ("study_time", manifest.study_time, _TM_RE),
    ):
        if value and not pattern.match(value):
            raise ValueError(f"{name}: {value!r} is not a valid DICOM date or time")
    if manifest.retrieve_ae_title and not _AE_RE.match(manifest.retrieve_ae_title):
        raise ValueError("retrieve_ae_title: not a DICOM AE title (1-16 characters, no backslash)")
    if manifest.retrieve_url and not manifest.retrieve_url.endswith(
        f"/studies/{manifest.study_uid}"
    ):
        raise ValueError("retrieve_url: must be the WADO-RS URL of the study (…/studies/<uid>)")
    for name, number in (
        ("series_number", manifest.series_number),
        ("instance_number", manifest.instance_number),
    ):
        if not 0 <= number < 2**31:
            raise ValueError(f"{name}: {number} is outside the IS range")


def _uid(name: str, value: str) -> None:
    """PS3.5 9.1: digits and dots, no leading zero in a component, at most 64 characters."""
    if len(value) > 64 or not _UID_RE.match(value):
        raise ValueError(f"{name}: {value!r} is not a valid DICOM UID")


def _required_uid(item: Dataset, keyword: str) -> str:
    value = str(item.get(keyword, "") or "")
    if not value:
        raise ValueError(f"KOS reference without {keyword}")
    return value


def _first(inner: Dataset, outer: Dataset, keyword: str) -> str:
    """The (first) value of ``keyword`` in ``inner``, else in ``outer``, else ``""``."""
    for item in (inner, outer):
        value = item.get(keyword)
        if isinstance(value, MultiValue):
            value = value[0] if len(value) else ""
        if value:
            return str(value)
    return ""
