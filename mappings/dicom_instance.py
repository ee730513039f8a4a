"""One DICOM instance's header, reduced to what the FHIR mappings need: :class:`InstanceSummary`.

:func:`extract_instance_summary` reads only header attributes, so a dataset read with
``stop_before_pixels=True`` or deferred reading is enough. Text values are decoded with the
dataset's Specific Character Set (0008,0005) -- PS3.5 6.1 and PS3.3 C.12.1.1.2; pydicom decodes raw
elements on access. Values are kept close to DICOM (dates, times and offsets as the DA/TM/SH
strings; person names as their three PN component groups, PS3.5 6.2.1) so that the summary is a
lossless, JSON-serialisable record that a projector can store per instance and aggregate later
(:meth:`InstanceSummary.to_json_dict` / :meth:`InstanceSummary.from_json_dict`).

Pure: no I/O, no clock, no logging. Only the four identifying UIDs are required; every other
attribute that is absent or cannot be decoded is left empty rather than failing the instance.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Final

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

__all__ = [
    "CodedConcept",
    "DicomMappingError",
    "InstanceSummary",
    "Issuer",
    "OtherPatientId",
    "PersonName",
    "SpecimenStep",
    "SpecimenSummary",
    "extract_instance_summary",
]

_LOOSE_UID_RE: Final = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class DicomMappingError(ValueError):
    """The dataset lacks (or has a malformed) attribute the mapping cannot do without.

    ``tag`` is the DICOM tag as ``"(gggg,eeee)"`` and ``keyword`` its PS3.6 keyword, so that a
    storage SCP can answer with a precise Error Comment (0000,0902) beside status 0xA900/0xC000.
    """

    def __init__(self, message: str, *, tag: str = "", keyword: str = "") -> None:
        super().__init__(message)
        self.tag = tag
        self.keyword = keyword


@dataclass(frozen=True, slots=True)
class CodedConcept:
    """A Code Sequence Macro item (PS3.3 Table 8.8-1): value, scheme designator, meaning."""

    code: str
    scheme: str
    meaning: str = ""
    scheme_version: str = ""

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> CodedConcept:
        return cls(
            code=str(data["code"]),
            scheme=str(data["scheme"]),
            meaning=str(data.get("meaning", "")),
            scheme_version=str(data.get("scheme_version", "")),
        )


@dataclass(frozen=True, slots=True)
class Issuer:
    """An issuer of an identifier: the HL7 v2 HD triple that DICOM uses (PS3.3 Table 10-17).

    ``local`` is the Local Namespace Entity ID (or Issuer of Patient ID (0010,0021)),
    ``universal`` the Universal Entity ID (0040,0032) and ``universal_type`` its type
    (0040,0033): ``ISO`` (an OID), ``UUID``, ``URI``, ``DNS``...
    """

    local: str = ""
    universal: str = ""
    universal_type: str = ""

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> Issuer:
        return cls(
            local=str(data.get("local", "")),
            universal=str(data.get("universal", "")),
            universal_type=str(data.get("universal_type", "")),
        )


@dataclass(frozen=True, slots=True)
class PersonName:
    """A PN value's three component groups, decoded (PS3.5 6.2.1.1).

    Each group holds up to five ``^``-separated components: family, given, middle, prefix,
    suffix. ``ideographic`` and ``phonetic`` are used by e.g. Japanese and Korean names.
    """

    alphabetic: str = ""
    ideographic: str = ""
    phonetic: str = ""

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> PersonName:
        return cls(
            alphabetic=str(data.get("alphabetic", "")),
            ideographic=str(data.get("ideographic", "")),
            phonetic=str(data.get("phonetic", "")),
        )


@dataclass(frozen=True, slots=True)
class OtherPatientId:
    """An item of the Other Patient IDs Sequence (0010,1002) (PS3.3 C.7.1.1)."""

    value: str
    issuer: Issuer | None = None
    type: str = ""  # Type of Patient ID (0010,0022): TEXT, RFID, BARCODE

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> OtherPatientId:
        issuer = data.get("issuer")
        return cls(
            value=str(data["value"]),
            issuer=Issuer.from_json_dict(issuer) if issuer else None,
            type=str(data.get("type", "")),
        )


@dataclass(frozen=True, slots=True)
class SpecimenStep:
    """One Specimen Preparation Sequence (0040,0610) item, from its TID 8001 content items.

    ``processing_type`` is the value of "Processing type" (DCM 111701), e.g. staining;
    ``method`` the collection procedure, sampling method or processing procedure;
    ``substances`` the stains ("Using substance"), fixatives and embedding media.
    """

    processing_type: CodedConcept | None = None
    description: str = ""
    method: CodedConcept | None = None
    substances: tuple[CodedConcept, ...] = ()

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> SpecimenStep:
        return cls(
            processing_type=_concept_or_none(data.get("processing_type")),
            description=str(data.get("description", "")),
            method=_concept_or_none(data.get("method")),
            substances=tuple(CodedConcept.from_json_dict(s) for s in data.get("substances", ())),
        )


@dataclass(frozen=True, slots=True)
class SpecimenSummary:
    """A Specimen Description Sequence (0040,0560) item (PS3.3 C.7.6.22 Specimen Module)."""

    identifier: str  # Specimen Identifier (0040,0551)
    uid: str = ""  # Specimen UID (0040,0554)
    issuer: Issuer | None = None  # Issuer of the Specimen Identifier Sequence (0040,0562)
    short_description: str = ""  # (0040,0600)
    detailed_description: str = ""  # (0040,0602)
    specimen_type: CodedConcept | None = None  # (0040,059A), else "Specimen type" content item
    anatomic_structures: tuple[CodedConcept, ...] = ()  # Primary Anatomic Structure (0008,2228)
    steps: tuple[SpecimenStep, ...] = ()
    container_identifier: str = ""  # Container Identifier (0040,0512), module level
    container_type: CodedConcept | None = None  # Container Type Code Sequence (0040,0518)

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> SpecimenSummary:
        issuer = data.get("issuer")
        return cls(
            identifier=str(data["identifier"]),
            uid=str(data.get("uid", "")),
            issuer=Issuer.from_json_dict(issuer) if issuer else None,
            short_description=str(data.get("short_description", "")),
            detailed_description=str(data.get("detailed_description", "")),
            specimen_type=_concept_or_none(data.get("specimen_type")),
            anatomic_structures=_concepts(data.get("anatomic_structures", ())),
            steps=tuple(SpecimenStep.from_json_dict(s) for s in data.get("steps", ())),
            container_identifier=str(data.get("container_identifier", "")),
            container_type=_concept_or_none(data.get("container_type")),
        )


@dataclass(frozen=True, slots=True)
class InstanceSummary:
    """Everything the FHIR mappings need from one DICOM instance, decoded from its header.

    Dates (DA), times (TM) and the Timezone Offset From UTC (0008,0201) are kept as DICOM
    strings; ``mappings.dicom_to_imagingstudy.dicom_datetime_to_fhir`` converts them. Missing
    values are ``""``, ``None`` or ``()``.
    """

    study_instance_uid: str  # (0020,000D)
    series_instance_uid: str  # (0020,000E)
    sop_instance_uid: str  # (0008,0018)
    sop_class_uid: str  # (0008,0016)
    transfer_syntax_uid: str = ""  # (0002,0010), or as received by the caller
    specific_character_set: tuple[str, ...] = ()  # (0008,0005)
    instance_number: int | None = None  # (0020,0013)
    number_of_frames: int | None = None  # (0028,0008)
    title: str = ""  # (0042,0010) | (0040,A043)>(0008,0104) | (0070,0080)
    # General Study (PS3.3 C.7.2.1)
    study_date: str = ""  # (0008,0020)
    study_time: str = ""  # (0008,0030)
    timezone_offset: str = ""  # (0008,0201)
    study_id: str = ""  # (0020,0010)
    study_description: str = ""  # (0008,1030)
    accession_number: str = ""  # (0008,0050)
    accession_issuer: Issuer | None = None  # (0008,0051)
    referring_physician: PersonName | None = None  # (0008,0090)
    reading_physicians: tuple[PersonName, ...] = ()  # (0008,1060)
    procedure_codes: tuple[CodedConcept, ...] = ()  # (0008,1032)
    reasons: tuple[str, ...] = ()  # (0040,1002), top level or in (0040,0275)
    reason_codes: tuple[CodedConcept, ...] = ()  # (0040,100A) | (0040,1012)
    # Patient (PS3.3 C.7.1.1)
    patient_id: str = ""  # (0010,0020)
    patient_id_issuer: Issuer | None = None  # (0010,0021) + (0010,0024)
    other_patient_ids: tuple[OtherPatientId, ...] = ()  # (0010,1002)
    patient_name: PersonName | None = None  # (0010,0010)
    patient_birth_date: str = ""  # (0010,0030)
    patient_sex: str = ""  # (0010,0040)
    # Patient Study / Visit (PS3.3 C.7.2.2, C.3.2)
    admission_id: str = ""  # (0038,0010)
    admission_id_issuer: Issuer | None = None  # (0038,0014)
    # General Series (PS3.3 C.7.3.1)
    modality: str = ""  # (0008,0060)
    series_number: int | None = None  # (0020,0011)
    series_description: str = ""  # (0008,103E)
    series_date: str = ""  # (0008,0021)
    series_time: str = ""  # (0008,0031)
    performing_physicians: tuple[PersonName, ...] = ()  # (0008,1050)
    operators: tuple[PersonName, ...] = ()  # (0008,1070)
    body_part_examined: str = ""  # (0018,0015)
    laterality: str = ""  # (0020,0060)
    # Image level: (0020,0062) Image Laterality, or Frame Laterality (0020,9072)
    image_laterality: str = ""
    # (0008,2218) at top level, or in the Frame Anatomy Sequence (0020,9071)
    anatomic_regions: tuple[CodedConcept, ...] = ()
    # General Equipment (PS3.3 C.7.5.1)
    institution_name: str = ""  # (0008,0080)
    institutional_department_name: str = ""  # (0008,1040)
    # Specimen (PS3.3 C.7.6.22)
    specimens: tuple[SpecimenSummary, ...] = field(default=())

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_json_dict` restores an equal summary."""
        result: dict[str, Any] = _jsonable(self)
        return result

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> InstanceSummary:
        """Rebuild a summary from :meth:`to_json_dict` output."""

        def text(key: str) -> str:
            return str(data.get(key) or "")

        def number(key: str) -> int | None:
            value = data.get(key)
            return int(value) if value is not None else None

        def issuer(key: str) -> Issuer | None:
            value = data.get(key)
            return Issuer.from_json_dict(value) if value else None

        def name(value: Mapping[str, Any] | None) -> PersonName | None:
            return PersonName.from_json_dict(value) if value else None

        def names(key: str) -> tuple[PersonName, ...]:
            return tuple(PersonName.from_json_dict(v) for v in data.get(key) or ())

        return cls(
            study_instance_uid=text("study_instance_uid"),
            series_instance_uid=text("series_instance_uid"),
            sop_instance_uid=text("sop_instance_uid"),
            sop_class_uid=text("sop_class_uid"),
            transfer_syntax_uid=text("transfer_syntax_uid"),
            specific_character_set=tuple(str(v) for v in data.get("specific_character_set") or ()),
            instance_number=number("instance_number"),
            number_of_frames=number("number_of_frames"),
            title=text("title"),
            study_date=text("study_date"),
            study_time=text("study_time"),
            timezone_offset=text("timezone_offset"),
            study_id=text("study_id"),
            study_description=text("study_description"),
            accession_number=text("accession_number"),
            accession_issuer=issuer("accession_issuer"),
            referring_physician=name(data.get("referring_physician")),
            reading_physicians=names("reading_physicians"),
            procedure_codes=_concepts(data.get("procedure_codes") or ()),
            reasons=tuple(str(v) for v in data.get("reasons") or ()),
            reason_codes=_concepts(data.get("reason_codes") or ()),
            patient_id=text("patient_id"),
            patient_id_issuer=issuer("patient_id_issuer"),
            other_patient_ids=tuple(
                OtherPatientId.from_json_dict(v) for v in data.get("other_patient_ids") or ()
            ),
            patient_name=name(data.get("patient_name")),
            patient_birth_date=text("patient_birth_date"),
            patient_sex=text("patient_sex"),
            admission_id=text("admission_id"),
            admission_id_issuer=issuer("admission_id_issuer"),
            modality=text("modality"),
            series_number=number("series_number"),
            series_description=text("series_description"),
            series_date=text("series_date"),
            series_time=text("series_time"),
            performing_physicians=names("performing_physicians"),
            operators=names("operators"),
            body_part_examined=text("body_part_examined"),
            laterality=text("laterality"),
            image_laterality=text("image_laterality"),
            anatomic_regions=_concepts(data.get("anatomic_regions") or ()),
            institution_name=text("institution_name"),
            institutional_department_name=text("institutional_department_name"),
            specimens=tuple(SpecimenSummary.from_json_dict(v) for v in data.get("specimens") or ()),
        )


def _jsonable(value: Any) -> Any:
    """Dataclasses as dicts, tuples as lists, the rest as is (``asdict`` without its deep
    copies: a third of the time, once per received instance)."""
    if isinstance(value, str | int | None):
        return value
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    names = _FIELD_NAMES.get(type(value))
    if names is None:
        if not is_dataclass(value):
            return value
        names = _FIELD_NAMES[type(value)] = tuple(f.name for f in fields(value))
    return {name: _jsonable(getattr(value, name)) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _concept_or_none(data: Mapping[str, Any] | None) -> CodedConcept | None:
    return CodedConcept.from_json_dict(data) if data else None


def _concepts(data: Iterable[Mapping[str, Any]]) -> tuple[CodedConcept, ...]:
    return tuple(CodedConcept.from_json_dict(d) for d in data)


# ---------------------------------------------------------------------------------------------
# Reading attributes defensively: a value that pydicom cannot convert counts as absent.


def _value(ds: Dataset, keyword: str) -> Any:
    try:
        if keyword not in ds:
            return None
        return ds[keyword].value
    except Exception:  # a raw element pydicom cannot convert: treat as absent
        return None


def _clean(value: Any) -> str:
    return str(value).replace("\x00", "").strip()


def _text(ds: Dataset, keyword: str) -> str:
    value = _value(ds, keyword)
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(_clean(v) for v in value).strip("\\ ")
    return _clean(value)


def _charsets(ds: Dataset) -> tuple[str, ...]:
    # Kept value by value: an empty first value means the default repertoire (PS3.3 C.12.1.1.2).
    value = _value(ds, "SpecificCharacterSet")
    if value is None:
        return ()
    values = value if isinstance(value, MultiValue | list | tuple) else [value]
    return tuple(_clean(v) for v in values)


def _integer(ds: Dataset, keyword: str) -> int | None:
    value = _value(ds, keyword)
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if value else None
    if value is None:
        return None
    try:
        text = _clean(value)
        return int(float(text)) if text else None
    except (TypeError, ValueError, OverflowError):
        return None


def _items(ds: Dataset, keyword: str) -> list[Dataset]:
    value = _value(ds, keyword)
    if value is None:
        return []
    try:
        return [item for item in value if isinstance(item, Dataset)]
    except TypeError:
        return []


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    items = _items(ds, keyword)
    return items[0] if items else None


def _person_names(ds: Dataset, keyword: str) -> tuple[PersonName, ...]:
    value = _value(ds, keyword)
    if value is None:
        return ()
    values = value if isinstance(value, MultiValue | list | tuple) else [value]
    names = []
    for pn in values:
        name = _person_name(pn)
        if name is not None:
            names.append(name)
    return tuple(names)


def _person_name(value: Any) -> PersonName | None:
    try:
        groups = tuple(value.components) if hasattr(value, "components") else (str(value),)
    except Exception:  # undecodable PN bytes: treat as absent
        return None
    groups = tuple(_clean(g) for g in groups)
    name = PersonName(
        alphabetic=groups[0] if len(groups) > 0 else "",
        ideographic=groups[1] if len(groups) > 1 else "",
        phonetic=groups[2] if len(groups) > 2 else "",
    )
    if not any(
        g.replace("^", "").strip() for g in (name.alphabetic, name.ideographic, name.phonetic)
    ):
        return None
    return name


def _concept(item: Dataset) -> CodedConcept | None:
    code = _text(item, "CodeValue") or _text(item, "LongCodeValue") or _text(item, "URNCodeValue")
    if not code:
        return None
    return CodedConcept(
        code=code,
        scheme=_text(item, "CodingSchemeDesignator"),
        meaning=_text(item, "CodeMeaning"),
        scheme_version=_text(item, "CodingSchemeVersion"),
    )


def _code_sequence(ds: Dataset, keyword: str) -> tuple[CodedConcept, ...]:
    concepts = (_concept(item) for item in _items(ds, keyword))
    return tuple(c for c in concepts if c is not None)


def _issuer_from_macro(item: Dataset | None, local_keyword: str) -> Issuer | None:
    if item is None:
        return None
    issuer = Issuer(
        local=_text(item, local_keyword),
        universal=_text(item, "UniversalEntityID"),
        universal_type=_text(item, "UniversalEntityIDType"),
    )
    return issuer if issuer.local or issuer.universal else None


def _patient_issuer(ds: Dataset) -> Issuer | None:
    qualifiers = _first_item(ds, "IssuerOfPatientIDQualifiersSequence")
    issuer = Issuer(
        local=_text(ds, "IssuerOfPatientID"),
        universal=_text(qualifiers, "UniversalEntityID") if qualifiers is not None else "",
        universal_type=_text(qualifiers, "UniversalEntityIDType") if qualifiers is not None else "",
    )
    return issuer if issuer.local or issuer.universal else None


def _required_uid(ds: Dataset, keyword: str, tag: str) -> str:
    value = _text(ds, keyword)
    if not value:
        raise DicomMappingError(
            f"missing {keyword} {tag}: required to index the instance", tag=tag, keyword=keyword
        )
    if len(value) > 64 or not _LOOSE_UID_RE.match(value):
        raise DicomMappingError(
            f"{keyword} {tag} is not a valid UID (digits and dots, at most 64 characters): "
            f"{value[:80]!r}",
            tag=tag,
            keyword=keyword,
        )
    return value


# Concept name codes of the specimen preparation content items (PS3.16 TID 8001-8004), by code
# value; SRT codes are the legacy equivalents some writers still use.
_SPECIMEN_TYPE_NAMES: Final = frozenset({"371439000", "R-00254"})
_PROCESSING_TYPE_NAMES: Final = frozenset({"111701"})
_DESCRIPTION_NAMES: Final = frozenset({"111703"})
_METHOD_NAMES: Final = frozenset({"17636008", "111704", "P3-00003"})
_SUBSTANCE_NAMES: Final = frozenset({"424361007", "430864009", "430863003", "R-00258"})


def _specimen_steps(item: Dataset) -> tuple[tuple[SpecimenStep, ...], CodedConcept | None]:
    steps: list[SpecimenStep] = []
    specimen_type: CodedConcept | None = None
    for prep in _items(item, "SpecimenPreparationSequence"):
        processing_type: CodedConcept | None = None
        method: CodedConcept | None = None
        description = ""
        substances: list[CodedConcept] = []
        for content in _items(prep, "SpecimenPreparationStepContentItemSequence"):
            name = _first_item(content, "ConceptNameCodeSequence")
            name_code = _text(name, "CodeValue") if name is not None else ""
            value_item = _first_item(content, "ConceptCodeSequence")
            value = _concept(value_item) if value_item is not None else None
            if name_code in _SPECIMEN_TYPE_NAMES and value is not None:
                specimen_type = value  # steps are in order: the last type is the current one
            elif name_code in _PROCESSING_TYPE_NAMES and value is not None:
                processing_type = value
            elif name_code in _METHOD_NAMES and value is not None:
                method = value
            elif name_code in _SUBSTANCE_NAMES and value is not None:
                substances.append(value)
            elif name_code in _DESCRIPTION_NAMES:
                description = _text(content, "TextValue") or (value.meaning if value else "")
        steps.append(
            SpecimenStep(
                processing_type=processing_type,
                description=description,
                method=method,
                substances=tuple(substances),
            )
        )
    return tuple(steps), specimen_type


def _specimens(ds: Dataset) -> tuple[SpecimenSummary, ...]:
    container_identifier = _text(ds, "ContainerIdentifier")
    container_types = _code_sequence(ds, "ContainerTypeCodeSequence")
    specimens = []
    for item in _items(ds, "SpecimenDescriptionSequence"):
        identifier = _text(item, "SpecimenIdentifier")
        if not identifier:
            continue
        steps, step_type = _specimen_steps(item)
        # Specimen Type Code Sequence (0040,059A), else the last preparation step's type.
        types = _code_sequence(item, "SpecimenTypeCodeSequence")
        specimen_type = types[0] if types else step_type
        specimens.append(
            SpecimenSummary(
                identifier=identifier,
                uid=_text(item, "SpecimenUID"),
                issuer=_issuer_from_macro(
                    _first_item(item, "IssuerOfTheSpecimenIdentifierSequence"),
                    "LocalNamespaceEntityID",
                ),
                short_description=_text(item, "SpecimenShortDescription"),
                detailed_description=_text(item, "SpecimenDetailedDescription"),
                specimen_type=specimen_type,
                anatomic_structures=_code_sequence(item, "PrimaryAnatomicStructureSequence"),
                steps=steps,
                container_identifier=container_identifier,
                container_type=container_types[0] if container_types else None,
            )
        )
    return tuple(specimens)


def _frame_anatomy(ds: Dataset) -> Dataset | None:
    # Enhanced multi-frame IODs carry anatomy in the Frame Anatomy functional group
    # (PS3.3 C.7.6.16.2.8): shared, or else (taking the first frame) per-frame.
    for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        group = _first_item(ds, keyword)
        if group is not None:
            anatomy = _first_item(group, "FrameAnatomySequence")
            if anatomy is not None:
                return anatomy
    return None


def _reasons(ds: Dataset) -> tuple[tuple[str, ...], tuple[CodedConcept, ...]]:
    sources = [ds, *_items(ds, "RequestAttributesSequence")]
    texts: list[str] = []
    codes: list[CodedConcept] = []
    for source in sources:
        text = _text(source, "ReasonForTheRequestedProcedure")
        if text and text not in texts:
            texts.append(text)
        for keyword in (
            "ReasonForRequestedProcedureCodeSequence",
            "ReasonForPerformedProcedureCodeSequence",
        ):
            for concept in _code_sequence(source, keyword):
                if concept not in codes:
                    codes.append(concept)
    return tuple(texts), tuple(codes)


def _title(ds: Dataset) -> str:
    document_title = _text(ds, "DocumentTitle")
    if document_title:
        return document_title
    concept_name = _first_item(ds, "ConceptNameCodeSequence")
    if concept_name is not None:
        meaning = _text(concept_name, "CodeMeaning")
        if meaning:
            return meaning
    return _text(ds, "ContentLabel")


def _transfer_syntax(ds: Dataset, fallback: str) -> str:
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        value = _text(meta, "TransferSyntaxUID")
        if value:
            return value
    return fallback


def extract_instance_summary(ds: Dataset, *, transfer_syntax_uid: str = "") -> InstanceSummary:
    """Summarise one instance's header for the FHIR mappings (see the mapping table).

    ``transfer_syntax_uid`` is used when ``ds`` has no file meta (e.g. a dataset received over
    DIMSE, where the transfer syntax is the presentation context's). Raises
    :class:`DicomMappingError` if Study, Series or SOP Instance UID or SOP Class UID is missing or
    malformed (PS3.3 C.7.2.1, C.7.3.1, C.12.1 make them Type 1).
    """
    study_uid = _required_uid(ds, "StudyInstanceUID", "(0020,000D)")
    series_uid = _required_uid(ds, "SeriesInstanceUID", "(0020,000E)")
    sop_uid = _required_uid(ds, "SOPInstanceUID", "(0008,0018)")
    sop_class = _required_uid(ds, "SOPClassUID", "(0008,0016)")

    anatomy = _frame_anatomy(ds)
    anatomic_regions = _code_sequence(ds, "AnatomicRegionSequence")
    if not anatomic_regions and anatomy is not None:
        anatomic_regions = _code_sequence(anatomy, "AnatomicRegionSequence")
    image_laterality = _text(ds, "ImageLaterality")
    if not image_laterality and anatomy is not None:
        image_laterality = _text(anatomy, "FrameLaterality")

    reasons, reason_codes = _reasons(ds)
    referring = _person_names(ds, "ReferringPhysicianName")

    return InstanceSummary(
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        sop_instance_uid=sop_uid,
        sop_class_uid=sop_class,
        transfer_syntax_uid=_transfer_syntax(ds, transfer_syntax_uid),
        specific_character_set=_charsets(ds),
        instance_number=_integer(ds, "InstanceNumber"),
        number_of_frames=_integer(ds, "NumberOfFrames"),
        title=_title(ds),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        timezone_offset=_text(ds, "TimezoneOffsetFromUTC"),
        study_id=_text(ds, "StudyID"),
        study_description=_text(ds, "StudyDescription"),
        accession_number=_text(ds, "AccessionNumber"),
        accession_issuer=_issuer_from_macro(
            _first_item(ds, "IssuerOfAccessionNumberSequence"), "LocalNamespaceEntityID"
        ),
        referring_physician=referring[0] if referring else None,
        reading_physicians=_person_names(ds, "NameOfPhysiciansReadingStudy"),
        procedure_codes=_code_sequence(ds, "ProcedureCodeSequence"),
        reasons=reasons,
        reason_codes=reason_codes,
        **_patient_fields(ds),
        admission_id=_text(ds, "AdmissionID"),
        admission_id_issuer=_issuer_from_macro(
            _first_item(ds, "IssuerOfAdmissionIDSequence"), "LocalNamespaceEntityID"
        ),
        modality=_text(ds, "Modality").upper(),
        series_number=_integer(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        series_date=_text(ds, "SeriesDate"),
        series_time=_text(ds, "SeriesTime"),
        performing_physicians=_person_names(ds, "PerformingPhysicianName"),
        operators=_person_names(ds, "OperatorsName"),
        body_part_examined=_text(ds, "BodyPartExamined"),
        laterality=_text(ds, "Laterality").upper(),
        image_laterality=image_laterality.upper(),
        anatomic_regions=anatomic_regions,
        institution_name=_text(ds, "InstitutionName"),
        institutional_department_name=_text(ds, "InstitutionalDepartmentName"),
        specimens=_specimens(ds),
    )


def _patient_fields(ds: Dataset) -> dict[str, Any]:
    """The Patient Identification and Demographic attributes (PS3.3 C.7.1.1, C.2.2) of a
    summary: Patient ID and its issuer, Other Patient IDs, name, birth date and sex."""
    other_ids = []
    for item in _items(ds, "OtherPatientIDsSequence"):
        value = _text(item, "PatientID")
        if value:
            other_ids.append(
                OtherPatientId(
                    value=value, issuer=_patient_issuer(item), type=_text(item, "TypeOfPatientID")
                )
            )
    names = _person_names(ds, "PatientName")
    return {
        "patient_id": _text(ds, "PatientID"),
        "patient_id_issuer": _patient_issuer(ds),
        "other_patient_ids": tuple(other_ids),
        "patient_name": names[0] if names else None,
        "patient_birth_date": _text(ds, "PatientBirthDate"),
        "patient_sex": _text(ds, "PatientSex").upper(),
    }


def extract_step_summary(ds: Dataset, *, study_instance_uid: str) -> InstanceSummary:
    """A summary of a Modality Performed Procedure Step (PS3.3 C.4.13-C.4.14) for a study not
    stored yet: its patient, Procedure Code Sequence and ``study_instance_uid``; no series or
    instance."""
    return InstanceSummary(
        study_instance_uid=study_instance_uid,
        series_instance_uid="",
        sop_instance_uid="",
        sop_class_uid="",
        specific_character_set=_charsets(ds),
        procedure_codes=_code_sequence(ds, "ProcedureCodeSequence"),
        **_patient_fields(ds),
    )
