"""The IHE XDS.b metadata PixelHub reads and writes, as plain typed values (IHE ITI TF-3 4.2:
DocumentEntry 4.2.3.2, SubmissionSet 4.2.3.3, Association 4.2.2.2), independent of its ebRIM 3.0
XML form (``adapters/xds`` parses and writes that) and of FHIR (``xds_to_documentreference``).

Values stay as XDS writes them: codes with their coding scheme, patient ids as HL7 v2 CX strings
(``id^^^&1.2.3&ISO``), times as DTM (``YYYY[MM[DD[hh[mm[ss]]]]]``, UTC), authors as XCN/XON
strings. Pure data: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "APPROVED",
    "DEPRECATED",
    "KOS_FORMAT",
    "Association",
    "Author",
    "Code",
    "DocumentEntry",
    "SubmissionSet",
]

APPROVED: Final = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED: Final = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
# formatCode of an imaging manifest (IHE RAD TF-3 4.68.4.1.2.3.3; XDS-I.b, MADO): the KOS SOP Class
KOS_FORMAT: Final = "1.2.840.10008.5.1.4.1.1.88.59"

AssociationType = Literal["HasMember", "RPLC", "XFRM", "APND", "XFRM_RPLC", "signs"]


@dataclass(frozen=True, slots=True)
class Code:
    """A coded XDS attribute (ITI TF-3 4.2.3.1.2): code value, coding scheme (the
    ``codingScheme`` slot: an OID, or a name such as ``DCM``, ``LOINC``, ``SNOMED CT``) and display
    name."""

    code: str
    scheme: str
    display: str = ""


@dataclass(frozen=True, slots=True)
class Author:
    """One author classification (ITI TF-3 4.2.3.1.4): authorPerson (XCN),
    authorInstitution (XON), authorRole, authorSpecialty, authorTelecommunication (XTN)."""

    person: str = ""
    institutions: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    specialties: tuple[str, ...] = ()
    telecoms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DocumentEntry:
    """An XDSDocumentEntry (stable, ``objectType`` urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1).

    ``entry_uuid`` is the object's id (``urn:uuid:...``, or a symbolic id in a submission before
    the registry assigns one); ``unique_id`` the document's globally unique id (for a KOS: its SOP
    Instance UID); ``hash`` the SHA-1 of the document, lower-case hex; ``reference_ids`` the
    referenceIdList CXi values (Study Instance UID as
    ``uid^^^^urn:ihe:iti:xds:2016:studyInstanceUID``, accession as
    ``acc^^^&oid&ISO^urn:ihe:iti:xds:2013:accession``)."""

    entry_uuid: str
    unique_id: str
    patient_id: str
    mime_type: str
    class_code: Code
    type_code: Code
    format_code: Code
    healthcare_facility_type: Code
    practice_setting: Code
    confidentiality: tuple[Code, ...]
    creation_time: str
    language: str = "en-US"
    source_patient_id: str = ""
    source_patient_info: tuple[str, ...] = ()  # PID-n|value lines
    event_codes: tuple[Code, ...] = ()
    service_start: str = ""
    service_stop: str = ""
    title: str = ""
    comments: str = ""
    hash: str = ""
    size: int | None = None
    repository_unique_id: str = ""
    home_community_id: str = ""
    reference_ids: tuple[str, ...] = ()
    authors: tuple[Author, ...] = ()
    status: str = APPROVED
    version: str = "1"  # the registry object's VersionInfo


@dataclass(frozen=True, slots=True)
class SubmissionSet:
    """An XDSSubmissionSet: a RegistryPackage classified as
    urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd."""

    entry_uuid: str
    unique_id: str
    source_id: str
    patient_id: str
    submission_time: str
    content_type: Code
    authors: tuple[Author, ...] = ()
    title: str = ""
    comments: str = ""
    intended_recipients: tuple[str, ...] = ()
    home_community_id: str = ""
    status: str = APPROVED


@dataclass(frozen=True, slots=True)
class Association:
    """An ebRIM Association between two registry objects (ITI TF-3 4.2.2): ``HasMember`` from a
    submission set to its entries, ``RPLC`` from a new entry to the one it replaces..."""

    entry_uuid: str
    type: AssociationType
    source: str
    target: str
    submission_set_status: str = ""  # the SubmissionSetStatus slot of a HasMember: Original...
    extra: tuple[tuple[str, str], ...] = field(default=())
