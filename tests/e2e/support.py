"""Helpers shared by the end-to-end tests (imported by them and by conftest.py)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from hub.composition import Hub, build_hub
from hub.config import Settings

TOKEN = "test-token-0123456789"
BASE = "http://testserver/fhir"


_collector: list[Any] = []  # filled by conftest for the duration of each test


def assert_valid_r4(resource: dict[str, Any]) -> None:
    """Everything PixelHub emits must be valid R4: the fhir.resources R4B models now, the HAPI
    validator at the end of the run."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    if _collector:
        test = os.environ.get("PYTEST_CURRENT_TEST", "outside").split(" ")[0]
        _collector[0](f"e2e/{test}/{next(_sequence)}", resource)


_sequence = itertools.count()


def make_hub(data_dir: Path, **overrides: Any) -> Hub:
    """A hub in this process. Its DICOM channel receives in this process only, so tests can
    look at its associations (``tests/e2e/test_dicom_processes.py`` runs several)."""
    settings = Settings(
        data_dir=data_dir, auth_tokens=[TOKEN], **{"dicom_processes": 1, **overrides}
    )
    return build_hub(settings, base_url=BASE)


def patient(family: str = "Garcia", mrn: str = "M1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": mrn}],
        "name": [{"family": family, "given": ["Maria"]}],
        "gender": "female",
        "birthDate": "1968-04-12",
        **extra,
    }


def study(
    patient_ref: str,
    modality: str = "CT",
    started: str = "2024-03-05T10:00:00Z",
    uid: str = "1.2.3",
) -> dict[str, Any]:
    return {
        "resourceType": "ImagingStudy",
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
        "status": "available",
        "subject": {"reference": patient_ref},
        "started": started,
        "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": modality}],
        "series": [
            {
                "uid": f"{uid}.1",
                "modality": {
                    "system": "http://dicom.nema.org/resources/ontology/DCM",
                    "code": modality,
                },
            }
        ],
    }
