"""Real DICOMweb peers of a real ``pixelhub serve`` (issue 9 items 4 and 5): Orthanc's DICOMweb
client (plugin ``/dicom-web/servers/{name}/...``) storing into PixelHub with STOW-RS and reading
its QIDO-RS and WADO-RS; and a FHIR client following ``ImagingStudy.endpoint`` to the
``Endpoint`` (``dicom-wado-rs``) whose address is PixelHub's DICOMweb service, queried there
with ``dicomweb-client``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.integration.dicom.conftest import Orthanc
from tests.integration.dicom.dicom_support import encode, make_ct
from tests.integration.dicomweb.conftest import TOKEN, WebHub
from tests.integration.dicomweb.test_dicomweb_qido_stow import value


@pytest.fixture
def remote(orthanc: Orthanc, web_hub: WebHub) -> Iterator[httpx.Client]:
    """Orthanc with PixelHub registered as its DICOMweb server ``pixelhub``."""
    with orthanc.client() as c:
        r = c.put(
            "/dicom-web/servers/pixelhub",
            json={
                "Url": f"{web_hub.dicomweb}/",
                "HttpHeaders": {"Authorization": f"Bearer {TOKEN}"},
            },
        )
        r.raise_for_status()
        yield c
        c.delete("/dicom-web/servers/pixelhub")
    orthanc.clear()


def _upload(orthanc: Orthanc, patient: str, study: str, count: int) -> list[str]:
    series = generate_uid()
    return [
        orthanc.upload(
            encode(make_ct(sop=generate_uid(), study=study, series=series, patient_id=patient))
        )
        for _ in range(count)
    ]


def test_orthanc_stores_with_stow_and_searches_with_qido(
    orthanc: Orthanc, remote: httpx.Client, web_hub: WebHub
) -> None:
    patient, study = f"ORTH-{uuid.uuid4().hex[:8]}", generate_uid()
    ids = _upload(orthanc, patient, study, 3)
    stowed = remote.post(
        "/dicom-web/servers/pixelhub/stow", json={"Resources": ids, "Synchronous": True}
    )
    assert stowed.status_code == 200, stowed.text
    assert int(stowed.json()["InstancesCount"]) == 3
    # Orthanc's QIDO-RS client, parsing our DICOM JSON
    studies = remote.post(
        "/dicom-web/servers/pixelhub/qido",
        json={"Uri": "/studies", "Arguments": {"PatientID": patient}},
    )
    assert studies.status_code == 200, studies.text
    (found,) = studies.json()
    assert found["0020000D"]["Value"] == study
    assert found["00100020"]["Value"] == patient
    assert found["00100010"]["Value"] == "Doe^Jane"
    series = remote.post(
        "/dicom-web/servers/pixelhub/qido",
        json={"Uri": f"/studies/{study}/series", "Arguments": {"Modality": "CT"}},
    )
    assert series.status_code == 200 and len(series.json()) == 1
    instances = remote.post(
        "/dicom-web/servers/pixelhub/get",
        json={"Uri": f"/studies/{study}/instances", "Arguments": {"limit": "2"}},
    )
    assert instances.status_code == 200 and len(instances.json()) == 2
    # no match: our 204 (PS3.18 8.3.4.4.1) comes back through Orthanc as an empty answer
    empty = remote.post(
        "/dicom-web/servers/pixelhub/get",
        json={"Uri": "/studies", "Arguments": {"PatientID": "nobody-at-all"}},
    )
    assert empty.status_code == 200 and empty.content == b""


def test_orthanc_retrieves_what_it_found_with_wado(
    orthanc: Orthanc, remote: httpx.Client, web_hub: WebHub
) -> None:
    patient, study = f"ORTH-{uuid.uuid4().hex[:8]}", generate_uid()
    parts = [encode(make_ct(sop=generate_uid(), study=study, patient_id=patient)) for _ in range(2)]
    boundary = "b0und4ry"
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
            for p in parts
        )
        + f"--{boundary}--".encode()
    )
    with web_hub.http() as c:
        r = c.post(
            "/dicomweb/studies",
            content=body,
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'
            },
        )
    assert r.status_code == 200, r.text
    retrieved = remote.post(
        "/dicom-web/servers/pixelhub/retrieve",
        json={"Resources": [{"Study": study}], "Synchronous": True},
    )
    assert retrieved.status_code == 200, retrieved.text
    assert int(retrieved.json()["ReceivedInstancesCount"]) == 2
    found = remote.post("/tools/find", json={"Level": "Instance", "Query": {"PatientID": patient}})
    assert len(found.json()) == 2


def test_imagingstudy_endpoint_resolves_to_the_dicomweb_service(web_hub: WebHub) -> None:
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    ds = make_ct(sop=sop, study=study, series=series, patient_id=f"EP-{uuid.uuid4().hex[:8]}")
    web_hub.client().store_instances([ds])
    resource = web_hub.study(study)
    (reference,) = resource["endpoint"]
    with web_hub.http() as c:
        endpoint: dict[str, Any] = c.get(f"/fhir/{reference['reference']}").json()
    assert endpoint["resourceType"] == "Endpoint" and endpoint["status"] == "active"
    assert endpoint["connectionType"]["code"] == "dicom-wado-rs"
    address = endpoint["address"]
    assert address == web_hub.dicomweb
    client = web_hub.client(url=address)
    (found,) = client.search_for_series(study)
    assert value(found, "0020000E") == series
    (instance,) = client.search_for_instances(study, series)
    assert (
        value(instance, "00081190") == f"{address}/studies/{study}/series/{series}/instances/{sop}"
    )
    (metadata,) = client.retrieve_study_metadata(study)  # WADO-RS at the same address
    assert value(metadata, "00080018") == sop
    retrieved = client.retrieve_instance(study, series, sop)
    assert retrieved.SOPInstanceUID == sop and retrieved.PatientID == ds.PatientID
