"""One real ``pixelhub serve`` per session with the ``media`` upload service beside DICOM and
DICOMweb (the wrapped captures become DICOM studies), and the FHIR records the uploads refer to."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.integration.dicomweb.conftest import TOKEN, WebHub, start_web_hub, stop_process

MAX_UPLOAD = 256 * 1024 * 1024  # media_max_upload_bytes of the served hub (413 tests)
MAX_PIXELS = 50_000_000


@pytest.fixture(scope="session")
def media_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebHub]:
    hub = start_web_hub(
        tmp_path_factory.mktemp("media") / "data",
        channels="dicom,dicomweb,media",
        extra_env={
            "PIXELHUB_MEDIA_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
            "PIXELHUB_MEDIA_MAX_PIXELS": str(MAX_PIXELS),
            "PIXELHUB_MEDIA_DICOM_WRAPPING": "ophthalmology",
        },
    )
    yield hub
    stop_process(hub.process)
    hub.log.close()


@dataclass
class Record:
    """A patient with an encounter and the nurse who takes the photos."""

    patient: str  # "Patient/<id>"
    mrn: str
    encounter: str
    operator: str


def create(client: httpx.Client, resource: dict[str, Any]) -> str:
    r = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return f"{resource['resourceType']}/{r.json()['id']}"


def new_record(hub: WebHub) -> Record:
    mrn = f"MRN-{uuid.uuid4().hex[:10]}"
    with hub.http() as c:
        patient = create(
            c,
            {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:1.2.3.999", "value": mrn}],
                "name": [{"family": "Ortega", "given": ["Lucía"]}],
                "gender": "female",
                "birthDate": "1961-04-02",
            },
        )
        encounter = create(
            c,
            {
                "resourceType": "Encounter",
                "status": "in-progress",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                },
                "subject": {"reference": patient},
            },
        )
        operator = create(c, {"resourceType": "Practitioner", "name": [{"family": "Nurse"}]})
    return Record(patient, mrn, encounter, operator)


@pytest.fixture
def record(media_hub: WebHub) -> Record:
    return new_record(media_hub)


__all__ = ["MAX_UPLOAD", "TOKEN", "Record", "media_hub", "new_record", "record"]
