"""WADO-URI (DICOM PS3.18 9) against a real ``pixelhub serve``: the legacy
``/dicomweb/wado?requestType=WADO&...`` single-instance retrieve, as a DICOM object or a rendered
JPEG/PNG, with its parameters, errors, authorisation and audit."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import pydicom
import pytest
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian

from tests.integration.dicomweb.conftest import WebHub
from tests.integration.dicomweb.wado_support import (
    PDF,
    WadoData,
    decode_image,
    load,
    stored_files,
)


@pytest.fixture(scope="module")
def data(web_hub: WebHub, tmp_path_factory: pytest.TempPathFactory) -> WadoData:
    return load(web_hub, tmp_path_factory.mktemp("wado-uri"))


@pytest.fixture(scope="module")
def http(web_hub: WebHub) -> Iterator[httpx.Client]:
    with web_hub.http() as client:
        yield client


def wado(data: WadoData, name: str, **params: Any) -> dict[str, Any]:
    s = data[name]
    query = {"requestType": "WADO", "studyUID": s.study, "seriesUID": s.series, "objectUID": s.sop}
    return {k: v for k, v in {**query, **params}.items() if v is not None}


def test_image_defaults_to_jpeg(data: WadoData, http: httpx.Client) -> None:
    r = http.get("/dicomweb/wado", params=wado(data, "ct1"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    image = decode_image(r.content)
    assert image.shape == (64, 64)
    assert image[:8].max() < 10 and image[-8:].min() > 245  # the file's window 40/400


def test_rendering_parameters(data: WadoData, http: httpx.Client) -> None:
    params = wado(data, "ct1", contentType="image/png", rows="32", windowCenter="1024",
                  windowWidth="4096", imageQuality="50")  # fmt: skip
    r = http.get("/dicomweb/wado", params=params)
    assert r.headers["content-type"] == "image/png"
    image = decode_image(r.content)
    assert image.shape == (32, 32) and 100 < int(image[16, 16]) < 160
    r = http.get("/dicomweb/wado", params=wado(data, "j2k", columns="64"))
    assert Image.open(io.BytesIO(r.content)).size == (64, 256)  # 1024x256 scaled, aspect kept
    r = http.get("/dicomweb/wado", params=wado(data, "rle_mf", frameNumber="5"))
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).format == "JPEG"


def test_dicom_object_as_stored_or_explicit(
    web_hub: WebHub, data: WadoData, http: httpx.Client
) -> None:
    ct = data["ct1"]
    r = http.get("/dicomweb/wado", params=wado(data, "ct1", contentType="application/dicom"))
    assert r.headers["content-type"] == "application/dicom"
    assert r.content == stored_files(web_hub)[ct.sop]
    jpeg = data["jpeg"]
    r = http.get("/dicomweb/wado", params=wado(data, "jpeg", contentType="application/dicom"))
    assert (
        pydicom.dcmread(io.BytesIO(r.content)).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    )
    r = http.get("/dicomweb/wado", params=wado(data, "jpeg", contentType="application/dicom",
                                               transferSyntax=jpeg.syntax))  # fmt: skip
    assert r.content == stored_files(web_hub)[jpeg.sop]
    r = http.get("/dicomweb/wado", params=wado(data, "pdf", contentType="application/pdf"))
    assert r.headers["content-type"] == "application/pdf" and r.content == PDF
    # objects without pixel data default to application/dicom
    r = http.get("/dicomweb/wado", params=wado(data, "sr"))
    assert r.headers["content-type"] == "application/dicom"
    assert pydicom.dcmread(io.BytesIO(r.content)).SOPInstanceUID == data["sr"].sop


def test_bad_requests(data: WadoData, http: httpx.Client, web_hub: WebHub) -> None:
    ct = data["ct1"]
    cases: list[tuple[dict[str, Any], int]] = [
        (wado(data, "ct1", requestType=None), 400),
        (wado(data, "ct1", requestType="WADO-RS"), 400),
        (wado(data, "ct1", objectUID=None), 400),
        (wado(data, "ct1", studyUID="../../etc/passwd"), 400),
        (wado(data, "ct1", objectUID="1.2.3.4.5"), 404),
        (wado(data, "ct1", seriesUID=data["jpeg"].series), 404),
        (wado(data, "ct1", studyUID=data.other_study), 404),
        (wado(data, "ct1", windowCenter="40"), 400),
        (wado(data, "ct1", rows="0"), 400),
        (wado(data, "ct1", imageQuality="101"), 400),
        (wado(data, "ct1", frameNumber="0"), 400),
        (wado(data, "native_mf", frameNumber="11"), 404),
        (wado(data, "ct1", anonymize="yes"), 400),
        (wado(data, "ct1", contentType="image/gif"), 406),
        (wado(data, "sr", contentType="image/jpeg"), 406),
        (wado(data, "pdf", contentType="image/png"), 406),
        (wado(data, "ct1", contentType="application/pdf"), 406),
        (wado(data, "ct1", contentType="application/dicom", transferSyntax="1.2.840.10008.1.2.4.90"), 406),
        (wado(data, "ct1", contentType="application/dicom", transferSyntax="../x"), 400),
    ]  # fmt: skip
    for params, status in cases:
        r = http.get("/dicomweb/wado", params=params)
        assert r.status_code == status, (params, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    assert ct.sop  # the object is still there and served
    assert http.get("/dicomweb/wado", params=wado(data, "ct1")).status_code == 200
    web_hub.assert_serving()


def test_authorised_and_audited(web_hub: WebHub, data: WadoData) -> None:
    url = f"{web_hub.url}/dicomweb/wado"
    assert httpx.get(url, params=wado(data, "ct1")).status_code == 401
    other = web_hub.study(data.other_study)["subject"]["reference"].split("/")[1]
    theirs = {"Authorization": f"Bearer {web_hub.token('patient/ImagingStudy.rs', other)}"}
    assert httpx.get(url, params=wado(data, "ct1"), headers=theirs).status_code == 404
    assert httpx.get(url, params=wado(data, "other_ct"), headers=theirs).status_code == 200
    events = web_hub.audit(
        "110104", lambda e: data.other_study in str(e) and e["action"] == "R", count=1
    )
    assert any(e["outcome"] == "0" for e in events), events
