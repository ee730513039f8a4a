"""WADO-RS (DICOM PS3.18 10.4) against a real ``pixelhub serve``: data sent over C-STORE by
dcmtk, read back by the ``dicomweb-client`` package, by raw HTTP for the edges, and by Orthanc's
DICOMweb client. Stored bytes come back unchanged; frames, bulk data and rendered images in the
media types PS3.18 8.7 names; bad input gets its status with a reason and the hub keeps serving.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    generate_uid,
)

from tests.integration.dicom.conftest import Orthanc
from tests.integration.dicom.dicom_support import run_tool
from tests.integration.dicomweb.conftest import WebHub
from tests.integration.dicomweb.wado_support import (
    PDF,
    WadoData,
    decode_image,
    load,
    read_multipart,
    stored_files,
)

ANY_SYNTAX = 'multipart/related; type="application/dicom"; transfer-syntax=*'


@pytest.fixture(scope="module")
def data(web_hub: WebHub, tmp_path_factory: pytest.TempPathFactory) -> WadoData:
    return load(web_hub, tmp_path_factory.mktemp("wado-rs"))


@pytest.fixture(scope="module")
def http(web_hub: WebHub) -> Iterator[httpx.Client]:
    with web_hub.http() as client:
        yield client


def instance_url(data: WadoData, name: str) -> str:
    s = data[name]
    return f"/dicomweb/studies/{s.study}/series/{s.series}/instances/{s.sop}"


# ------------------------------------------------------------------ instances


def test_study_comes_back_as_stored(web_hub: WebHub, data: WadoData, http: httpx.Client) -> None:
    r = http.get(f"/dicomweb/studies/{data.study}", headers={"Accept": ANY_SYNTAX})
    assert r.status_code == 200, r.text
    parts = read_multipart(r)
    mine = [s for s in data.sent.values() if s.study == data.study]
    assert len(parts) == len(mine)
    by_sop = {pydicom.dcmread(io.BytesIO(body)).SOPInstanceUID: (h, body) for h, body in parts}
    stored = stored_files(web_hub)
    for sent in mine:
        headers, body = by_sop[sent.sop]
        assert headers["content-type"] == f"application/dicom; transfer-syntax={sent.syntax}"
        assert int(headers["content-length"]) == len(body)
        assert body == stored[sent.sop], f"{sent.name}: not the stored bytes"
    # instances in series order, by Instance Number within a series
    ct = [pydicom.dcmread(io.BytesIO(b)).InstanceNumber for h, b in parts[:3]]
    assert ct == [1, 2, 3] or len({s.series for s in mine}) > 1


def test_dicomweb_client_default_is_explicit_little_endian(web_hub: WebHub, data: WadoData) -> None:
    """No transfer-syntax asked: PS3.18's default, native re-encoded, compressed decoded."""
    client = web_hub.client()
    series = data["ct1"].series
    got = client.retrieve_series(data.study, series)
    assert sorted(ds.SOPInstanceUID for ds in got) == sorted(data[f"ct{n}"].sop for n in (1, 2, 3))
    assert {ds.file_meta.TransferSyntaxUID for ds in got} == {ExplicitVRLittleEndian}
    mr = {ds.SOPInstanceUID: ds for ds in client.retrieve_series(data.study, data["jpeg"].series)}
    for name in ("mr_implicit", "jpeg", "j2k", "jpeg_ll", "rle_mf", "native_mf"):
        sent = data[name]
        ds = mr[sent.sop]
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian, name
        assert np.array_equal(ds.pixel_array, sent.dataset.pixel_array), name


def test_dicomweb_client_named_and_any_syntax(web_hub: WebHub, data: WadoData) -> None:
    client = web_hub.client()
    jpeg = data["jpeg"]
    ds = client.retrieve_instance(
        jpeg.study, jpeg.series, jpeg.sop, media_types=(("application/dicom", JPEGBaseline8Bit),)
    )
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert ds.PixelData == jpeg.dataset.PixelData
    study = client.retrieve_study(data.study, media_types=(("application/dicom", "*"),))
    syntaxes = {ds.SOPInstanceUID: ds.file_meta.TransferSyntaxUID for ds in study}
    assert syntaxes[data["j2k"].sop] == data["j2k"].syntax
    assert syntaxes[data["mr_implicit"].sop] == ImplicitVRLittleEndian


def test_implicit_converted_to_explicit_and_back(data: WadoData, http: httpx.Client) -> None:
    url = instance_url(data, "ct1")
    accept = (
        f'multipart/related; type="application/dicom"; transfer-syntax={ImplicitVRLittleEndian}'
    )
    ((headers, body),) = read_multipart(http.get(url, headers={"Accept": accept}))
    assert headers["content-type"].endswith(ImplicitVRLittleEndian)
    ds = pydicom.dcmread(io.BytesIO(body))
    assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert ds.PixelData == data["ct1"].dataset.PixelData
    # a single application/dicom body when asked for one instance
    single = http.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert single.headers["content-type"].startswith("application/dicom")
    assert single.content.endswith(data["ct1"].body)


def test_not_acceptable_says_why(data: WadoData, http: httpx.Client, web_hub: WebHub) -> None:
    j2k = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90'
    r = http.get(instance_url(data, "ct1"), headers={"Accept": j2k})
    assert r.status_code == 406
    reason = r.json()["issue"][0]["diagnostics"]
    assert "does not compress" in reason and ExplicitVRLittleEndian in reason
    r = http.get(f"/dicomweb/studies/{data.study}", headers={"Accept": "text/html"})
    assert r.status_code == 406 and "application/dicom" in r.text
    r = http.get(f"/dicomweb/studies/{data.study}", headers={"Accept": "application/dicom"})
    assert r.status_code == 406 and "multipart/related" in r.text  # many instances, one body
    r = http.get(f"/dicomweb/studies/{data.study}/metadata", headers={"Accept": "image/png"})
    assert r.status_code == 406
    web_hub.assert_serving()


# ------------------------------------------------------------------ metadata and bulk data


def test_metadata_with_bulk_data_uris(web_hub: WebHub, data: WadoData) -> None:
    client = web_hub.client()
    ct = data["ct1"]
    meta = client.retrieve_instance_metadata(ct.study, ct.series, ct.sop)
    assert meta["00100020"] == {"vr": "LO", "Value": ["WADO-A"]}
    assert meta["00083002"]["Value"] == [ExplicitVRLittleEndian]
    uri = meta["7FE00010"]["BulkDataURI"]
    assert meta["7FE00010"]["vr"] == "OW" and uri.startswith(web_hub.dicomweb)
    assert client.retrieve_bulkdata(uri) == [ct.dataset.PixelData]
    study = client.retrieve_study_metadata(data.study)
    assert len(study) == len([s for s in data.sent.values() if s.study == data.study])
    pdf = data["pdf"]
    doc = client.retrieve_instance_metadata(pdf.study, pdf.series, pdf.sop)
    assert "BulkDataURI" in doc["00420011"] and "7FE00010" not in doc
    (value,) = client.retrieve_bulkdata(doc["00420011"]["BulkDataURI"])
    assert value.rstrip(b"\0") == PDF
    # pydicom reads DICOM JSON with the bulk data fetched through the URIs
    ds = pydicom.Dataset.from_json(meta, lambda uri: bytes(client.retrieve_bulkdata(uri)[0]))
    assert ds.PixelData == ct.dataset.PixelData


def test_encapsulated_pixel_data_bulk_is_its_frames(data: WadoData, http: httpx.Client) -> None:
    r = http.get(instance_url(data, "rle_mf") + "/bulkdata/7FE00010")
    parts = read_multipart(r)
    frames = list(generate_frames(data["rle_mf"].dataset.PixelData, number_of_frames=10))
    assert [body for _, body in parts] == frames
    assert parts[0][0]["content-type"] == "image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.5"


# ------------------------------------------------------------------ frames


def test_frames_native_and_compressed(web_hub: WebHub, data: WadoData) -> None:
    client = web_hub.client()
    mf = data["native_mf"]
    frames = client.retrieve_instance_frames(mf.study, mf.series, mf.sop, [1, 10])
    size = 64 * 64 * 2
    assert frames == [mf.dataset.PixelData[:size], mf.dataset.PixelData[9 * size :]]
    rle = data["rle_mf"]
    got = client.retrieve_instance_frames(
        rle.study, rle.series, rle.sop, [3],
        media_types=(("image/dicom-rle", "1.2.840.10008.1.2.5"),),
    )  # fmt: skip
    assert got == [list(generate_frames(rle.dataset.PixelData, number_of_frames=10))[2]]
    jpeg = data["jpeg"]
    (frame,) = client.retrieve_instance_frames(
        jpeg.study, jpeg.series, jpeg.sop, [1], media_types=("image/jpeg",)
    )
    assert Image.open(io.BytesIO(frame)).size == (100, 100)
    j2k = data["j2k"]
    (frame,) = client.retrieve_instance_frames(
        j2k.study, j2k.series, j2k.sop, [1], media_types=("image/jp2",)
    )
    assert Image.open(io.BytesIO(frame)).size == (256, 1024)


def test_compressed_frames_decoded_on_request(data: WadoData, http: httpx.Client) -> None:
    ll = data["jpeg_ll"]
    accept = 'multipart/related; type="application/octet-stream"'
    ((headers, body),) = read_multipart(
        http.get(instance_url(data, "jpeg_ll") + "/frames/1", headers={"Accept": accept})
    )
    assert (
        headers["content-type"]
        == f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
    )
    assert body == ll.dataset.pixel_array.tobytes()
    # transfer-syntax=* keeps the stored fragments, labelled with their syntax
    r = http.get(
        instance_url(data, "jpeg_ll") + "/frames/1",
        headers={"Accept": accept + "; transfer-syntax=*"},
    )
    ((headers, body),) = read_multipart(r)
    assert headers["content-type"].endswith(ll.syntax) and body.startswith(b"\xff\xd8")


def test_frame_numbers_checked(data: WadoData, http: httpx.Client, web_hub: WebHub) -> None:
    url = instance_url(data, "native_mf")
    for bad in ("0", "1,0", "x", "-1", "1,,2"):
        assert http.get(f"{url}/frames/{bad}").status_code == 400, bad
    r = http.get(f"{url}/frames/11")
    assert r.status_code == 404 and "10 frame(s)" in r.text
    assert http.get(instance_url(data, "sr") + "/frames/1").status_code == 404
    native_as_jpeg = {"Accept": 'multipart/related; type="image/jpeg"'}
    assert http.get(f"{url}/frames/1", headers=native_as_jpeg).status_code == 406
    web_hub.assert_serving()


# ------------------------------------------------------------------ rendered and thumbnails


def test_rendered_window_and_viewport(web_hub: WebHub, data: WadoData) -> None:
    client = web_hub.client()
    ct = data["ct1"]
    default = decode_image(client.retrieve_instance_rendered(ct.study, ct.series, ct.sop))
    assert default.shape == (64, 64)
    # the file's window 40/400 shows -160..240 HU: the first rows (< -160 HU) black, the last
    # rows (> 240 HU) white
    assert default[:8].max() < 10 and default[-8:].min() > 245
    wide = decode_image(
        client.retrieve_instance_rendered(
            ct.study, ct.series, ct.sop, params={"window": "1024,4096,linear", "viewport": "32,16"},
            media_types=("image/png",),
        )
    )  # fmt: skip
    assert wide.shape == (16, 16)  # aspect ratio kept within the 32x16 viewport
    assert 100 < int(wide[8, 8]) < 160  # mid-ramp: mid-grey in the full window
    jpeg = data["jpeg"]
    colour = decode_image(client.retrieve_instance_rendered(jpeg.study, jpeg.series, jpeg.sop))
    assert colour.shape == (100, 100, 3)
    mf = data["rle_mf"]
    frame = client.retrieve_instance_frames_rendered(mf.study, mf.series, mf.sop, [5])
    assert Image.open(io.BytesIO(frame)).format == "JPEG"


def test_study_and_series_rendered_as_multipart(
    data: WadoData, http: httpx.Client, web_hub: WebHub
) -> None:
    """A rendered study or series (PS3.18 10.4): one image part per instance with pixel data
    that can be decoded, in the asked type and viewport; reports and documents, and the
    instance with damaged pixel data, have none."""
    ct = data["ct1"]
    png = 'multipart/related; type="image/png"'
    r = http.get(
        f"/dicomweb/studies/{ct.study}/series/{ct.series}/rendered",
        params={"viewport": "32,32"}, headers={"Accept": png},
    )  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"].startswith(png)
    parts = read_multipart(r)
    assert [headers["content-type"] for headers, _ in parts] == ["image/png"] * 3
    images = [decode_image(body) for _, body in parts]
    assert all(image.shape == (32, 32) for image in images)
    assert all((image == images[0]).all() for image in images)  # the same ramp three times
    whole = read_multipart(http.get(f"/dicomweb/studies/{ct.study}/rendered"))  # Accept */*
    imaged = {"ct1", "ct2", "ct3", "mr_implicit", "jpeg", "j2k", "jpeg_ll", "rle_mf", "native_mf"}
    assert len(whole) == len(imaged)  # not: sr, pdf (no pixel data), broken (cut short)
    assert {headers["content-type"] for headers, _ in whole} == {"image/jpeg"}
    r = http.get(f"/dicomweb/studies/{ct.study}/rendered", headers={"Accept": "image/jpeg"})
    assert r.status_code == 406 and "multipart/related" in r.text
    sr = data["sr"]
    r = http.get(f"/dicomweb/studies/{sr.study}/series/{sr.series}/rendered")
    assert r.status_code == 404 and "pixel data" in r.text
    web_hub.assert_serving()


def test_12_bit_jpeg_and_htj2k_rendered_like_the_original(
    web_hub: WebHub, data: WadoData, http: httpx.Client, tmp_path: Path
) -> None:
    """The 12-bit CT ramp in two encodings pydicom's stock plugins leave undecoded: lossy 12-bit
    JPEG Extended made by dcmtk's ``dcmcjpeg +ee``, and lossless HTJ2K made by OpenJPH's
    ``ojph_compress``. Stored with STOW-RS, each renders like the uncompressed original (HTJ2K
    exactly, the lossy JPEG within 2 grey levels), and the HTJ2K frame decodes to the samples."""
    workdir = tmp_path
    original = data["ct1"].dataset
    native = workdir / "native.dcm"
    original.save_as(native, enforce_file_format=True)
    jpeg12 = workdir / "jpeg12.dcm"
    made = run_tool("/usr/bin/dcmcjpeg", "+ee", str(native), str(jpeg12))
    assert made.returncode == 0, made.stderr
    samples = original.pixel_array
    pgm = workdir / "ramp.pgm"
    pgm.write_bytes(b"P5\n64 64\n4095\n" + samples.astype(">u2").tobytes())
    j2c = workdir / "ramp.j2c"
    made = subprocess.run(
        ["/usr/bin/ojph_compress", "-i", str(pgm), "-o", str(j2c), "-reversible", "true"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    htj2k = pydicom.dcmread(native)
    htj2k.PixelData = encapsulate([j2c.read_bytes()])
    htj2k["PixelData"].VR = "OB"
    htj2k.file_meta.TransferSyntaxUID = HTJ2KLossless
    encoded = {"jpeg12": pydicom.dcmread(jpeg12), "htj2k": htj2k}
    assert encoded["jpeg12"].file_meta.TransferSyntaxUID == JPEGExtended12Bit
    study, series = generate_uid(), generate_uid()  # a study of their own
    for ds in encoded.values():
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    web_hub.client().store_instances(list(encoded.values()))
    ct = data["ct1"]

    def rendered(study: str, series: str, sop: str) -> np.ndarray:
        r = http.get(
            f"/dicomweb/studies/{study}/series/{series}/instances/{sop}/rendered",
            params={"window": "1024,4096,linear"}, headers={"Accept": "image/png"},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        return decode_image(r.content).astype(int)

    reference = rendered(ct.study, ct.series, ct.sop)
    assert reference.max() - reference.min() > 200  # the full window shows the whole ramp
    assert (rendered(study, series, encoded["htj2k"].SOPInstanceUID) == reference).all()
    lossy = rendered(study, series, encoded["jpeg12"].SOPInstanceUID)
    assert np.abs(lossy - reference).max() <= 2
    ((_headers, body),) = read_multipart(
        http.get(
            f"/dicomweb/studies/{study}/series/{series}/instances/"
            f"{encoded['htj2k'].SOPInstanceUID}/frames/1",
            headers={"Accept": 'multipart/related; type="application/octet-stream"'},
        )
    )
    assert body == samples.tobytes()


def test_encapsulated_pdf_rendered_as_itself(data: WadoData, http: httpx.Client) -> None:
    r = http.get(instance_url(data, "pdf") + "/rendered")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content == PDF


def test_thumbnails(data: WadoData, http: httpx.Client) -> None:
    r = http.get(f"/dicomweb/studies/{data.study}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(r.content)).size) <= 128
    r = http.get(instance_url(data, "j2k") + "/thumbnail", params={"viewport": "64,64"},
                 headers={"Accept": "image/png"})  # fmt: skip
    assert r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (16, 64)
    # the accept query parameter overrides the header
    r = http.get(instance_url(data, "ct1") + "/thumbnail", params={"accept": "image/png"},
                 headers={"Accept": "image/jpeg"})  # fmt: skip
    assert r.headers["content-type"] == "image/png"


def test_rendered_bad_input(data: WadoData, http: httpx.Client, web_hub: WebHub) -> None:
    url = instance_url(data, "ct1") + "/rendered"
    for params in ({"quality": "0"}, {"viewport": "0,0"}, {"viewport": "99999,10"},
                   {"window": "abc,1"}, {"window": "40,400,cubic"}, {"window": "40"}):  # fmt: skip
        r = http.get(url, params=params)
        assert r.status_code == 400, (params, r.text)
    assert http.get(url, headers={"Accept": "image/gif"}).status_code == 406
    for name, accept in (("sr", "*/*"), ("pdf", "image/jpeg"), ("pdf", "image/*")):
        r = http.get(instance_url(data, name) + "/rendered", headers={"Accept": accept})
        assert r.status_code == 406 and "no pixel data" in r.text, name
    assert http.get(instance_url(data, "native_mf") + "/frames/11/rendered").status_code == 404
    r = http.get(instance_url(data, "broken") + "/rendered")  # pixel data cut short
    assert r.status_code == 422 and "cannot be decoded" in r.text
    assert http.get(instance_url(data, "broken") + "/frames/1").status_code == 422
    web_hub.assert_serving()


# ------------------------------------------------------------------ access, audit, paths


def test_unknown_and_malformed_uids(data: WadoData, http: httpx.Client, web_hub: WebHub) -> None:
    ct = data["ct1"]
    assert http.get("/dicomweb/studies/1.2.3.4.5.6.7").status_code == 404
    assert http.get(f"/dicomweb/studies/{ct.study}/series/1.2.3").status_code == 404
    wrong_series = f"/dicomweb/studies/{ct.study}/series/{data['jpeg'].series}/instances/{ct.sop}"
    assert http.get(wrong_series).status_code == 404
    other = data["other_ct"]  # an instance of another study, named under this one
    assert (
        http.get(
            f"/dicomweb/studies/{ct.study}/series/{other.series}/instances/{other.sop}"
        ).status_code
        == 404
    )
    for path in (
        "/dicomweb/studies/..%2F..%2Fetc%2Fpasswd",
        "/dicomweb/studies/%2e%2e/metadata",
        f"/dicomweb/studies/{ct.study}/series/{ct.series}/instances/..%2f..%2fblobs",
        f"/dicomweb/studies/{ct.study}/series/{ct.series}/instances/1.2.{'3' * 80}",
        f"/dicomweb/studies/{ct.study}/series/{ct.series}/instances/{ct.sop}/bulkdata/..%2f..%2f..%2fpixelhub.db",
        f"/dicomweb/studies/{ct.study}/series/{ct.series}/instances/{ct.sop}/bulkdata/7FE00010/1",
        f"/dicomweb/studies/{ct.study}/series/{ct.series}/instances/{ct.sop}/bulkdata/zzzz0010",
    ):
        r = http.get(path)
        assert r.status_code in (400, 404), (path, r.status_code)
        assert b"root:" not in r.content and b"SQLite" not in r.content
    assert (
        http.get(
            f"/dicomweb/studies/{ct.study}/series/{ct.series}/instances/{ct.sop}/bulkdata/00100010"
        ).status_code
        == 404
    )
    web_hub.assert_serving()


def test_authorisation_like_fhir_reads(web_hub: WebHub, data: WadoData) -> None:
    url = f"{web_hub.dicomweb}/studies/{data.study}"
    assert httpx.get(url + "/metadata").status_code == 401
    subject = web_hub.study(data.study)["subject"]["reference"].split("/")[1]
    other = web_hub.study(data.other_study)["subject"]["reference"].split("/")[1]
    mine = {"Authorization": f"Bearer {web_hub.token('patient/ImagingStudy.rs', subject)}"}
    theirs = {"Authorization": f"Bearer {web_hub.token('patient/ImagingStudy.rs', other)}"}
    assert httpx.get(url + "/metadata", headers=mine).status_code == 200
    r = httpx.get(url, headers={**theirs, "Accept": ANY_SYNTAX})
    assert r.status_code == 404 and "not found" in r.text
    ct = data["ct1"]
    rendered = f"{url}/series/{ct.series}/instances/{ct.sop}/rendered"
    assert httpx.get(rendered, headers=theirs).status_code == 404
    assert httpx.get(rendered, headers=mine).status_code == 200


def test_retrievals_are_audited(web_hub: WebHub, data: WadoData, http: httpx.Client) -> None:
    other = data["other_ct"]
    http.get(f"/dicomweb/studies/{other.study}", headers={"Accept": ANY_SYNTAX})
    http.get(f"/dicomweb/studies/{other.study}/series/{other.series}/instances/1.2.3/metadata")
    httpx.get(f"{web_hub.dicomweb}/studies/{other.study}/metadata")  # no token: 401
    events = web_hub.audit("110104", lambda e: other.study in str(e), count=3)
    reads = [e for e in events if e["action"] == "R"]
    assert any(e["outcome"] == "0" and "1 instance(s) read" in str(e) for e in reads), reads
    assert any(e["outcome"] == "4" and "not found" in str(e) for e in reads), reads
    assert any(e["outcome"] == "4" and "token" in str(e).lower() for e in reads), reads


# ------------------------------------------------------------------ Orthanc as a DICOMweb client


def test_orthanc_retrieves_a_study_from_us(
    web_hub: WebHub, data: WadoData, orthanc: Orthanc
) -> None:
    with orthanc.client() as c:
        r = c.put(
            "/dicom-web/servers/pixelhub",
            json={"Url": web_hub.dicomweb + "/", "HttpHeaders": web_hub.headers()},
        )
        r.raise_for_status()
        r = c.post(
            "/dicom-web/servers/pixelhub/retrieve",
            json={"Resources": [{"Study": data.other_study}, {"Study": data.study}]},
        )
        assert r.status_code == 200, r.text
        found = c.post(
            "/tools/find", json={"Level": "Instance", "Query": {"StudyInstanceUID": data.study}}
        ).json()
        assert len(found) == len([s for s in data.sent.values() if s.study == data.study])
        ct = data["ct1"]
        (orthanc_id,) = c.post("/tools/lookup", content=ct.sop).json()
        stored = c.get(f"/instances/{orthanc_id['ID']}/file").content
        assert stored.endswith(ct.body)
