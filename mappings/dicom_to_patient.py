"""DICOM Patient Module (PS3.3 C.7.1.1) -> FHIR R4 ``Patient``; and identity conflict checks.

The table, with the standards behind each row, is ``dicom_to_patient.md``. Identifiers follow
the issue-4 rule: PatientID (0010,0020) + IssuerOfPatientID (0010,0021) (and the Issuer of
Patient ID Qualifiers Sequence (0010,0024)) give ``Patient.identifier``, the system taken from a
configured issuer -> system map, ``urn:oid:`` for OID issuers, the configured default when there
is no issuer. The hub matches patients by identifier and never merges: when an existing Patient
and the incoming demographics disagree, :func:`patient_identity_conflicts` says where, and the
caller flags it.

Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

from mappings._dicom_fhir import dicom_date_to_fhir, human_names
from mappings.dicom_instance import InstanceSummary, Issuer
from mappings.dicom_to_imagingstudy import issuer_system

__all__ = ["dicom_to_patient", "patient_identifiers", "patient_identity_conflicts"]

V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
_OID_RE: Final = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")

# Patient's Sex (0010,0040) enumerated values (PS3.3 C.7.1.1) -> AdministrativeGender.
_GENDER: Final = {"M": "male", "F": "female", "O": "other"}


def _identifier(
    value: str,
    issuer: Issuer | None,
    issuer_systems: Mapping[str, str],
    default_system: str,
    *,
    medical_record: bool,
) -> dict[str, Any]:
    identifier: dict[str, Any] = {}
    if medical_record:
        identifier["type"] = {"coding": [{"system": V2_0203, "code": "MR"}]}
    system = issuer_system(issuer, issuer_systems, default_system)
    if system:
        identifier["system"] = system
    identifier["value"] = value
    if (
        issuer is not None
        and issuer.local
        and issuer.local not in issuer_systems
        and not _OID_RE.match(issuer.local)
    ):
        # A named issuer that the map does not know is kept, as the assigner's display.
        identifier["assigner"] = {"display": issuer.local}
    return identifier


def patient_identifiers(
    summary: InstanceSummary, *, issuer_systems: Mapping[str, str], default_system: str
) -> list[dict[str, Any]]:
    """The Patient.identifier list: PatientID first, then the Other Patient IDs Sequence.

    An issuer that is present but neither in ``issuer_systems`` nor an OID gives an identifier
    without ``system`` and with ``assigner.display`` = the issuer, rather than one in the default
    namespace, where it could collide with another issuer's patient.
    """
    identifiers: list[dict[str, Any]] = []
    if summary.patient_id:
        identifiers.append(
            _identifier(
                summary.patient_id,
                summary.patient_id_issuer,
                issuer_systems,
                default_system,
                medical_record=True,
            )
        )
    seen = {(i.get("system"), i["value"]) for i in identifiers}
    for other in summary.other_patient_ids:
        identifier = _identifier(
            other.value, other.issuer, issuer_systems, default_system, medical_record=False
        )
        key = (identifier.get("system"), identifier["value"])
        if key not in seen:  # the same system and value: the same identifier
            seen.add(key)
            identifiers.append(identifier)
    return identifiers


def dicom_to_patient(
    summary: InstanceSummary, *, issuer_systems: Mapping[str, str], default_system: str
) -> dict[str, Any]:
    """An R4 Patient from one instance's Patient Module attributes (no ``id``: the caller's).

    ``issuer_systems`` maps an Issuer of Patient ID (local id, or universal id) to an identifier
    system URI; ``default_system`` is used when the instance names no issuer. Name: one
    HumanName per PN component group; birthDate from (0010,0030) when a valid date; gender from
    (0010,0040) ``M``/``F``/``O`` (other non-empty values -> ``unknown``).
    """
    patient: dict[str, Any] = {"resourceType": "Patient"}
    identifiers = patient_identifiers(
        summary, issuer_systems=issuer_systems, default_system=default_system
    )
    if identifiers:
        patient["identifier"] = identifiers
    if summary.patient_name is not None:
        names = human_names(summary.patient_name)
        if names:
            patient["name"] = names
    if summary.patient_sex:
        patient["gender"] = _GENDER.get(summary.patient_sex, "unknown")
    birth_date = dicom_date_to_fhir(summary.patient_birth_date)
    if birth_date:
        patient["birthDate"] = birth_date
    return patient


def _fold(text: str) -> str:
    # Case, accents and spacing carry no identity: "José  Müller" == "JOSE MULLER".
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def _main_name(patient: Mapping[str, Any]) -> tuple[str, str] | None:
    for name in patient.get("name") or ():
        if not isinstance(name, Mapping) or name.get("extension"):
            continue  # ideographic/phonetic groups are compared through the alphabetic one
        family = _fold(str(name.get("family") or ""))
        given = name.get("given") or []
        first_given = _fold(str(given[0])) if given else ""
        if family or first_given:
            return family, first_given
    return None


def patient_identity_conflicts(
    existing_patient: Mapping[str, Any], new_patient: Mapping[str, Any]
) -> list[str]:
    """Where two Patients with the same identifier disagree: family or given name, birth date,
    gender. Empty when they agree or one side is silent.

    Names are compared ignoring case, accents and spacing. The messages name the element, not
    its values, so that they can go where PHI must not (a health problems list, a log); the
    caller reads the values from the resources themselves.
    """
    conflicts: list[str] = []
    old_name, new_name = _main_name(existing_patient), _main_name(new_patient)
    if old_name is not None and new_name is not None:
        if old_name[0] and new_name[0] and old_name[0] != new_name[0]:
            conflicts.append("Patient.name.family differs from the existing Patient's")
        if old_name[1] and new_name[1] and old_name[1] != new_name[1]:
            conflicts.append("Patient.name.given differs from the existing Patient's")
    old_birth, new_birth = existing_patient.get("birthDate"), new_patient.get("birthDate")
    if old_birth and new_birth and old_birth != new_birth:
        conflicts.append("Patient.birthDate differs from the existing Patient's")
    known = {"male", "female", "other"}
    old_gender, new_gender = existing_patient.get("gender"), new_patient.get("gender")
    if old_gender in known and new_gender in known and old_gender != new_gender:
        conflicts.append("Patient.gender differs from the existing Patient's")
    return conflicts
