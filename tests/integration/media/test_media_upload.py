"""``POST /media`` and the renditions (issue 10 items 1-3): a real ``pixelhub serve``, real
bytes (a phone JPEG with EXIF and GPS, PNG, MP4, PDF, WAV), the records read back over FHIR."""

from __future__ import annotations

import io
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import httpx
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import generate_fragments

from tests.e2e.support import assert_valid_r4
from tests.integration.dicomweb.conftest import WebHub
from tests.integration.media import samples
from tests.integration.media.conftest import MAX_UPLOAD, TOKEN, Record, new_record

SCT = "http://snomed.info/sct"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
H264 = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC/H.264 High Profile / Level 4.1 (PS3.5 8.2.7)
VIDEO_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4.1"
VIDEO_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1.1"


def upload(
    hub: WebHub, data: bytes, filename: str = "capture.jpg", content_type: str | None = "image/jpeg",
    token: str | None = TOKEN, **fields: str,
) -> httpx.Response:  # fmt: skip
    part: Any = (filename, data, content_type) if content_type else (filename, data)
    with hub.http(token) as c:
        return c.post("/media", data=fields, files={"file": part})


def documents(hub: WebHub, **params: str) -> list[dict[str, Any]]:
    with hub.http() as c:
        r = c.get("/fhir/DocumentReference", params=params)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def codes(concepts: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for concept in concepts for c in concept.get("coding", [])}


def rendition(doc: dict[str, Any], role: str) -> dict[str, Any]:
    for content in doc["content"]:
        if content["attachment"]["url"].endswith(f"/media/{doc['id']}/{role}"):
            return dict(content["attachment"])
    raise AssertionError(f"no {role} in {doc['content']}")


def get(hub: WebHub, url: str, token: str | None = TOKEN) -> httpx.Response:
    with hub.http(token) as c:
        return c.get(url)


def spool_is_empty(hub: WebHub) -> bool:
    spool = hub.data_dir / "media-spool"
    return not spool.exists() or not any(spool.iterdir())


# --------------------------------------------------------------------------- a phone photo


def test_a_wound_photo_lands_in_the_patients_record(media_hub: WebHub, record: Record) -> None:
    photo = samples.phone_jpeg()
    r = upload(
        media_hub, photo, "wound.jpg", patient=record.patient, encounter=record.encounter,
        ology="wound-care", bodySite="FOOT", laterality="left", modality="XC", view="plantar",
        operator=record.operator, description="Pressure ulcer, left heel",
    )  # fmt: skip
    assert r.status_code == 201, r.text
    doc = r.json()
    assert_valid_r4(doc)
    assert r.headers["location"].startswith(f"{media_hub.url}/fhir/DocumentReference/{doc['id']}")
    assert doc["subject"] == {"reference": record.patient}
    assert doc["context"]["encounter"] == [{"reference": record.encounter}]
    assert doc["context"]["period"]["start"] == "2026-11-27T16:50:00+01:00"  # from EXIF
    assert doc["context"]["period"]["end"] == "2026-11-27T16:50:00+01:00"
    assert {"reference": record.operator} in doc["author"]
    assert {"display": "Apple iPhone 15"} in doc["author"]  # the camera, from EXIF
    assert (SCT, "7771000") in codes(doc["context"]["event"])  # left
    assert (DCM, "XC") in codes(doc["context"]["event"])
    original = rendition(doc, "original")
    assert original["contentType"] == "image/jpeg"
    assert original["size"] == len(photo)
    assert original["title"] == "wound.jpg"
    # the record is there for FHIR readers, by patient, encounter, ology and body site
    found = documents(media_hub, patient=record.patient, category="urn:pixelhub:ology|wound-care")
    assert [d["id"] for d in found] == [doc["id"]]
    assert [d["id"] for d in documents(media_hub, encounter=record.encounter)] == [doc["id"]]


def test_viewers_get_renditions_without_exif_and_gps(media_hub: WebHub, record: Record) -> None:
    r = upload(media_hub, samples.phone_jpeg(1200, 900), patient=record.patient)
    doc = r.json()
    for role, longest in (("preview", 1200), ("thumbnail", 256)):
        served = get(media_hub, rendition(doc, role)["url"])
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/jpeg"
        assert served.headers["x-content-type-options"] == "nosniff"
        image = Image.open(io.BytesIO(served.content))
        assert max(image.size) == longest
        assert not image.getexif()
        assert b"Exif" not in served.content and b"iPhone" not in served.content


def test_the_original_is_kept_unchanged_and_needs_a_binary_scope(
    media_hub: WebHub, record: Record
) -> None:
    photo = samples.phone_jpeg()
    doc = upload(media_hub, photo, patient=record.patient).json()
    url = rendition(doc, "original")["url"]
    assert get(media_hub, url).content == photo  # full access: byte for byte
    clinician = media_hub.token("user/*.rs")
    assert get(media_hub, rendition(doc, "preview")["url"], clinician).status_code == 200
    assert get(media_hub, url, clinician).status_code == 403
    explicit = media_hub.token("user/*.rs user/Binary.rs")
    assert get(media_hub, url, explicit).content == photo


def test_a_patient_app_sees_only_its_patients_captures(media_hub: WebHub, record: Record) -> None:
    doc = upload(media_hub, samples.png(), "a.png", "image/png", patient=record.patient).json()
    preview = rendition(doc, "preview")["url"]
    own = media_hub.token("patient/*.rs", patient=record.patient.split("/")[1])
    other = media_hub.token("patient/*.rs", patient="someone-else")
    assert get(media_hub, preview, own).status_code == 200
    assert get(media_hub, preview, other).status_code == 404


def test_the_same_upload_again_answers_the_same_record(media_hub: WebHub, record: Record) -> None:
    photo = samples.phone_jpeg(300, 200)
    first = upload(media_hub, photo, patient=record.patient)
    again = upload(media_hub, photo, patient=record.patient)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert len(documents(media_hub, patient=record.patient)) == 1


def test_a_patient_can_be_named_by_identifier(media_hub: WebHub, record: Record) -> None:
    r = upload(media_hub, samples.png(), "p.png", "image/png",
               patient=f"urn:oid:1.2.3.999|{record.mrn}")  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["subject"] == {"reference": record.patient}


def test_an_upload_is_audited_with_its_patient(media_hub: WebHub, record: Record) -> None:
    doc = upload(media_hub, samples.png(), "p.png", "image/png", patient=record.patient).json()

    def about_it(event: dict[str, Any]) -> bool:
        refs = {e.get("what", {}).get("reference") for e in event.get("entity", [])}
        return f"DocumentReference/{doc['id']}" in refs and record.patient in refs

    events = media_hub.audit("rest", about_it)
    assert events and events[0]["action"] == "C" and events[0]["outcome"] == "0"


# --------------------------------------------------------------------------- other formats


@pytest.mark.parametrize(
    ("sample", "filename", "mime"),
    [
        (samples.mp4, "scope.mp4", "video/mp4"),
        (samples.mov, "IMG_0002.MOV", "video/quicktime"),
        (samples.webm, "pocus.webm", "video/webm"),
    ],
)
def test_a_video_gets_a_poster_frame(
    media_hub: WebHub, record: Record, sample: Any, filename: str, mime: str
) -> None:
    clip = sample()
    r = upload(media_hub, clip, filename, None, patient=record.patient,
               ology="endoscopy", modality="ES")  # fmt: skip
    assert r.status_code == 201, r.text
    doc = r.json()
    assert rendition(doc, "original")["contentType"] == mime
    assert doc["type"]["coding"][0]["code"] == "video"
    thumb = get(media_hub, rendition(doc, "thumbnail")["url"])
    assert Image.open(io.BytesIO(thumb.content)).size == (256, 192)
    assert get(media_hub, rendition(doc, "original")["url"]).content == clip


@pytest.mark.parametrize(
    ("sample", "filename", "mime"),
    [(samples.tiff, "scan.tif", "image/tiff"), (samples.heic, "IMG_0001.HEIC", "image/heic")],
)
def test_tiff_and_heic_photos_get_jpeg_renditions(
    media_hub: WebHub, record: Record, sample: Any, filename: str, mime: str
) -> None:
    data = sample()
    r = upload(media_hub, data, filename, None, patient=record.patient, wrap="dicom")
    assert r.status_code == 201, r.text
    doc = r.json()
    assert rendition(doc, "original")["contentType"] == mime
    preview = get(media_hub, rendition(doc, "preview")["url"])
    assert Image.open(io.BytesIO(preview.content)).size == (400, 300)
    assert get(media_hub, rendition(doc, "original")["url"]).content == data


def test_a_scanned_document_gets_a_page_preview(media_hub: WebHub, record: Record) -> None:
    r = upload(media_hub, samples.pdf(), "consent.pdf", "application/pdf", patient=record.patient)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["type"] == {"text": "Scanned document"}
    thumb = get(media_hub, rendition(doc, "thumbnail")["url"])
    assert Image.open(io.BytesIO(thumb.content)).format == "JPEG"


def test_audio_is_stored_without_renditions(media_hub: WebHub, record: Record) -> None:
    sound = samples.wav()
    r = upload(media_hub, sound, "heart.wav", None, patient=record.patient, ology="cardiology")
    assert r.status_code == 201, r.text
    doc = r.json()
    assert [c["attachment"]["contentType"] for c in doc["content"]] == ["audio/wav"]
    assert get(media_hub, rendition(doc, "original")["url"]).content == sound
    assert get(media_hub, f"/media/{doc['id']}/preview").status_code == 404


# --------------------------------------------------------------------------- bad input


def assert_refused(
    media_hub: WebHub, record: Record, r: httpx.Response, status: int, words: str
) -> None:
    assert r.status_code == status, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert words in outcome["issue"][0]["diagnostics"]
    assert documents(media_hub, patient=record.patient) == []
    assert spool_is_empty(media_hub)


def test_a_declared_type_the_bytes_deny_is_refused(media_hub: WebHub, record: Record) -> None:
    r = upload(media_hub, samples.png(), "x.jpg", "image/jpeg", patient=record.patient)
    assert_refused(media_hub, record, r, 422, "image/png")


def test_bytes_of_no_supported_type_are_refused(media_hub: WebHub, record: Record) -> None:
    r = upload(media_hub, b"MZ\x90\x00" + bytes(4000), "setup.exe", None, patient=record.patient)
    assert_refused(media_hub, record, r, 415, "")


def test_a_corrupt_image_is_refused(media_hub: WebHub, record: Record) -> None:
    photo = samples.phone_jpeg()
    r = upload(media_hub, photo[: len(photo) // 2], patient=record.patient)
    assert_refused(media_hub, record, r, 422, "")


def test_a_decompression_bomb_is_refused(media_hub: WebHub, record: Record) -> None:
    r = upload(media_hub, samples.png_bomb(), "bomb.png", "image/png", patient=record.patient)
    assert_refused(media_hub, record, r, 422, "bomb")


def test_a_polyglot_is_refused(media_hub: WebHub, record: Record) -> None:
    r = upload(media_hub, samples.zip_appended(samples.phone_jpeg()), patient=record.patient)
    assert_refused(media_hub, record, r, 422, "polyglot")


def test_an_oversize_upload_is_413(media_hub: WebHub, record: Record) -> None:
    def body() -> Any:  # chunked: no Content-Length to refuse it early
        boundary = b"b0undary"
        yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="patient"\r\n\r\n'
        yield record.patient.encode() + b"\r\n--" + boundary + b"\r\n"
        yield b'Content-Disposition: form-data; name="file"; filename="big.jpg"\r\n\r\n'
        yield samples.phone_jpeg()
        zeros = bytes(1 << 20)
        for _ in range(MAX_UPLOAD >> 20):
            yield zeros
        yield b"\r\n--" + boundary + b"--\r\n"

    with media_hub.http() as c:
        r = c.post(
            "/media", content=body(),
            headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
        )  # fmt: skip
    assert_refused(media_hub, record, r, 413, str(MAX_UPLOAD))


def test_an_unknown_patient_or_encounter_is_422(media_hub: WebHub, record: Record) -> None:
    r = upload(media_hub, samples.png(), "p.png", "image/png", patient="Patient/nobody")
    assert_refused(media_hub, record, r, 422, "Patient/nobody")
    r = upload(media_hub, samples.png(), "p.png", "image/png", patient=record.patient,
               encounter="Encounter/nowhere")  # fmt: skip
    assert_refused(media_hub, record, r, 422, "Encounter/nowhere")
    r = upload(media_hub, samples.png(), "p.png", "image/png", patient="urn:x|unknown")
    assert r.status_code == 422


def test_an_encounter_of_another_patient_is_422(media_hub: WebHub, record: Record) -> None:
    from tests.integration.media.conftest import new_record

    other = new_record(media_hub)
    r = upload(media_hub, samples.png(), "p.png", "image/png", patient=record.patient,
               encounter=other.encounter)  # fmt: skip
    assert_refused(media_hub, record, r, 422, other.encounter)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"colour": "red"}, "Unknown field"),
        ({"laterality": "upper"}, "laterality"),
        ({"ology": "astrology"}, "ology"),
        ({"captured": "yesterday"}, "captured"),
        ({"bodySite": "ELBOWISH"}, "bodySite"),
        ({"wrap": "zip"}, "wrap"),
    ],
)
def test_a_bad_field_is_400(
    media_hub: WebHub, record: Record, fields: dict[str, str], words: str
) -> None:
    r = upload(media_hub, samples.png(), "p.png", "image/png", patient=record.patient, **fields)
    assert_refused(media_hub, record, r, 400, words)


def test_a_body_that_is_not_form_data_is_415(media_hub: WebHub) -> None:
    with media_hub.http() as c:
        r = c.post("/media", content=samples.png(), headers={"Content-Type": "image/png"})
    assert r.status_code == 415


def test_a_truncated_form_is_400_and_leaves_nothing(media_hub: WebHub, record: Record) -> None:
    body = (
        b'--zz\r\nContent-Disposition: form-data; name="patient"\r\n\r\n'
        + record.patient.encode()
        + b'\r\n--zz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        + samples.png()
    )
    with media_hub.http() as c:
        r = c.post("/media", content=body,
                   headers={"Content-Type": "multipart/form-data; boundary=zz"})  # fmt: skip
    assert_refused(media_hub, record, r, 400, "closing delimiter")


def test_an_interrupted_upload_stores_nothing(media_hub: WebHub, record: Record) -> None:
    host, port = media_hub.url.removeprefix("http://").split(":")
    head = (
        b'--zz\r\nContent-Disposition: form-data; name="patient"\r\n\r\n'
        + record.patient.encode()
        + b'\r\n--zz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    )
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /media HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
            + b"\r\nContent-Type: multipart/form-data; boundary=zz\r\nContent-Length: 5000000"
            + b"\r\n\r\n" + head + samples.phone_jpeg()[:4000]
        )  # fmt: skip
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while not spool_is_empty(media_hub) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert spool_is_empty(media_hub)
    assert documents(media_hub, patient=record.patient) == []
    assert upload(media_hub, samples.png(), "p.png", "image/png",
                  patient=record.patient).status_code == 201  # fmt: skip


def test_without_a_token_nothing_is_read_or_stored(media_hub: WebHub, record: Record) -> None:
    r = upload(media_hub, samples.png(), "p.png", "image/png", token=None, patient=record.patient)
    assert r.status_code == 401
    reader = media_hub.token("user/*.rs")
    r = upload(media_hub, samples.png(), "p.png", "image/png", token=reader, patient=record.patient)
    assert r.status_code == 403
    assert documents(media_hub, patient=record.patient) == []


def test_a_big_video_upload_takes_constant_memory(media_hub: WebHub, record: Record) -> None:
    from tests.integration.media.test_native_binary import rss_peak

    size, chunks = samples.padded_mp4_chunks(200)

    def body() -> Any:
        yield b'--zz\r\nContent-Disposition: form-data; name="patient"\r\n\r\n'
        yield record.patient.encode()
        yield b'\r\n--zz\r\nContent-Disposition: form-data; name="file"; filename="clip.mp4"\r\n'
        yield b"Content-Type: video/mp4\r\n\r\n"
        yield from chunks  # type: ignore[attr-defined]
        yield b"\r\n--zz--\r\n"

    before = rss_peak(media_hub.process.pid)
    with media_hub.http() as c:
        r = c.post("/media", content=body(),
                   headers={"Content-Type": "multipart/form-data; boundary=zz"})  # fmt: skip
    assert r.status_code == 201, r.text
    assert rendition(r.json(), "original")["size"] == size
    assert get(media_hub, rendition(r.json(), "thumbnail")["url"]).status_code == 200
    grown = rss_peak(media_hub.process.pid) - before
    assert grown < 64 * 1024 * 1024, f"the server's peak memory grew by {grown >> 20} MB"


# --------------------------------------------------------------------------- videos as DICOM


def wrapped_video(
    hub: WebHub, doc: dict[str, Any], tmp_path: Path
) -> tuple[dict[str, Any], Path, str]:
    """The ImagingStudy of a wrapped capture, its instance fetched by WADO-RS in the H.264
    transfer syntax (PS3.18 8.7.3) into a file, and the Content-Type of that part."""
    related = [r["identifier"] for r in doc["context"].get("related", [])]
    uid = next(i["value"] for i in related if i.get("system") == "urn:dicom:uid")
    study = hub.study(uid.removeprefix("urn:oid:"))
    dicom = rendition_of_type(doc, "application/dicom")
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={H264}'
    with hub.http() as c:
        r = c.get(dicom["url"], headers={"Accept": accept})
    assert r.status_code == 200, r.text
    head, body = r.content.split(b"\r\n\r\n", 1)
    path = tmp_path / "video.dcm"
    path.write_bytes(body.rsplit(b"\r\n--", 1)[0])
    part_type = next(
        line.split(b":", 1)[1].decode().strip() for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-type")
    )  # fmt: skip
    return study, path, part_type


def rendition_of_type(doc: dict[str, Any], content_type: str) -> dict[str, Any]:
    return dict(
        next(
            c["attachment"] for c in doc["content"]
            if c["attachment"]["contentType"] == content_type
        )
    )  # fmt: skip


def video_packets(data: bytes) -> list[bytes]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return [bytes(p) for p in container.demux(stream) if p.dts is not None]


def test_a_wrapped_video_is_a_video_photographic_image(
    media_hub: WebHub, record: Record, tmp_path: Path, assert_dicom_conforms: Any
) -> None:
    clip = samples.mp4(codec="libx264")  # H.264 within Level 4.1: remuxed, not re-encoded
    r = upload(
        media_hub, clip, "clip.mp4", "video/mp4", patient=record.patient, wrap="dicom",
        encounter=record.encounter, modality="XC", bodySite="FOOT", accession="ACC-V1",
    )  # fmt: skip
    assert r.status_code == 201, r.text
    doc = r.json()
    assert get(media_hub, rendition(doc, "original")["url"]).content == clip
    assert get(media_hub, rendition(doc, "thumbnail")["url"]).status_code == 200
    study, path, part_type = wrapped_video(media_hub, doc, tmp_path)
    assert_valid_r4(study)
    assert study["subject"]["reference"] == record.patient
    series = study["series"][0]
    assert series["modality"]["code"] == "XC"
    assert series["instance"][0]["sopClass"]["code"] == f"urn:oid:{VIDEO_PHOTOGRAPHIC}"
    assert f"transfer-syntax={H264}" in part_type
    dataset = pydicom.dcmread(path)
    assert dataset.file_meta.TransferSyntaxUID == H264
    assert dataset.SOPClassUID == VIDEO_PHOTOGRAPHIC
    assert (dataset.PatientID, dataset.AccessionNumber) == (record.mrn, "ACC-V1")
    assert dataset.AdmissionID == record.encounter.removeprefix("Encounter/")
    assert (dataset.Rows, dataset.Columns, dataset.NumberOfFrames) == (240, 320, 30)
    assert_dicom_conforms(path)
    # dcmtk reads the object back
    dump = subprocess.run(["dcmdump", str(path)], capture_output=True, text=True, check=False)
    assert dump.returncode == 0, dump.stderr
    assert "MPEG-4 AVC/H.264 High Profile / Level 4.1" in dump.stdout
    assert "VideoPhotographicImageStorage" in dump.stdout
    # an empty Basic Offset Table, then the MP4 holding the uploaded pictures unchanged
    bot, mp4 = generate_fragments(dataset.PixelData)
    assert bot == b""
    assert mp4[4:8] == b"ftyp"
    assert video_packets(mp4) == video_packets(clip)


def test_an_endoscopy_video_is_a_video_endoscopic_image(
    media_hub: WebHub, record: Record, tmp_path: Path, assert_dicom_conforms: Any
) -> None:
    clip = samples.mp4()  # MPEG-4 Part 2: transcoded to H.264
    r = upload(media_hub, clip, "scope.mp4", "video/mp4", patient=record.patient,
               wrap="dicom", modality="ES", bodySite="COLON")  # fmt: skip
    assert r.status_code == 201, r.text
    study, path, _ = wrapped_video(media_hub, r.json(), tmp_path)
    assert study["series"][0]["modality"]["code"] == "ES"
    dataset = pydicom.dcmread(path)
    assert dataset.SOPClassUID == VIDEO_ENDOSCOPIC
    assert dataset.file_meta.TransferSyntaxUID == H264
    assert (dataset.LossyImageCompression, dataset.LossyImageCompressionMethod) == (
        "01",
        "ISO_14496_10",
    )
    assert_dicom_conforms(path)
    _, mp4 = generate_fragments(dataset.PixelData)
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert len(list(container.decode(stream))) == dataset.NumberOfFrames == 30


def truncated_mp4(turn: int) -> bytes:
    """An H.264 clip with its index first (``+faststart``) cut at 70 %: it opens and its first
    frame decodes, so it passes the checks every video gets, but a third of its frames are gone.
    ``turn`` (degrees a frame) makes each clip's bytes its own."""
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "clip.mp4"
        with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=15)
            stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
            for i in range(30):
                picture = samples.gradient(320, 240).rotate(i * turn)
                container.mux(stream.encode(av.VideoFrame.from_image(picture)))
            container.mux(stream.encode(None))
        data = path.read_bytes()
    return data[: len(data) * 7 // 10]


def test_a_corrupt_video_to_wrap_is_422_and_stores_nothing(
    media_hub: WebHub, record: Record
) -> None:
    r = upload(media_hub, truncated_mp4(3), "clip.mp4", "video/mp4", patient=record.patient)
    assert r.status_code == 201, r.text  # such a clip is kept as it is when not wrapped
    other = new_record(media_hub)
    blobs = sorted((media_hub.data_dir / "blobs").rglob("*"))  # content-addressed files
    r = upload(media_hub, truncated_mp4(4), "clip.mp4", "video/mp4", patient=other.patient,
               wrap="dicom")  # fmt: skip
    assert_refused(media_hub, other, r, 422, "corrupt video")
    assert sorted((media_hub.data_dir / "blobs").rglob("*")) == blobs


def test_wrapping_audio_is_refused(media_hub: WebHub, record: Record) -> None:
    r = upload(media_hub, samples.wav(), "heart.wav", None, patient=record.patient, wrap="dicom")
    assert_refused(media_hub, record, r, 422, "DICOM wrapping of audio/wav is not supported")
