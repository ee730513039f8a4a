"""Bad input on the DICOMweb service (DICOM PS3.18) of a real ``pixelhub serve``: malformed
STOW-RS multipart bodies, wrong media types, wrong Accept, path traversal, unknown query keys,
oversize bodies and a client that vanishes mid-upload. Each gets its specific status with a
clear reason, nothing is half-stored or left in the spool, and the hub keeps serving."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.integration.dicom.dicom_support import encode, make_ct
from tests.integration.dicomweb.conftest import DICOM_MULTIPART, MAX_STORE, WebHub
from tests.integration.dicomweb.test_dicomweb_qido_stow import multipart, value

BOUNDARY = "PixelHubTestBoundary"
CT = DICOM_MULTIPART.format(BOUNDARY)


def spool(hub: WebHub) -> list[str]:
    """The spool files the server still holds open (they are anonymous: unlinked at creation,
    so only the process's open descriptors show them)."""
    found = []
    for fd in Path(f"/proc/{hub.process.pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if "dicom-spool" in target:
            found.append(target)
    return found


def post(
    hub: WebHub, body: bytes, content_type: str = CT, path: str = "/dicomweb/studies", **kw: str
) -> httpx.Response:
    with hub.http() as c:
        return c.post(path, content=body, headers={"Content-Type": content_type, **kw})


def a_part() -> bytes:
    return encode(make_ct(sop=generate_uid(), study=generate_uid()))


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (multipart([b"x"]), 'multipart/related; type="application/dicom"', "no boundary"),
        (multipart([b"x"]), "multipart/related; boundary=", "no boundary"),
        (multipart([b"x"]), 'multipart/related; boundary="bad\\"quote"', "not valid"),
        (multipart([a_part()])[:300], CT, "truncated"),
        (multipart([a_part()])[:-8], CT, "truncated"),
        (b"\x00\xff garbage bytes \r\n" * 50, CT, "truncated"),
        (b"", CT, "truncated"),
        (f"--{BOUNDARY}--\r\n".encode(), CT, "no part"),
        (f"--{BOUNDARY}\r\nno colon here\r\n\r\nx\r\n--{BOUNDARY}--".encode(), CT, "header"),
        (f"--{BOUNDARY}junk\r\n\r\nx\r\n--{BOUNDARY}--".encode(), CT, "after a multipart"),
    ],
    ids=[
        "no-boundary", "empty-boundary", "invalid-boundary", "truncated-in-part",
        "no-closing-delimiter", "garbage", "empty-body", "no-part", "bad-part-header",
        "text-after-delimiter",
    ],
)  # fmt: skip
def test_malformed_multipart_is_400(
    web_hub: WebHub, body: bytes, content_type: str, reason: str
) -> None:
    before = web_hub.client().search_for_instances(limit=1000)
    r = post(web_hub, body, content_type)
    assert r.status_code == 400, r.text
    assert reason in r.json()["issue"][0]["diagnostics"]
    assert web_hub.client().search_for_instances(limit=1000) == before  # nothing stored
    assert spool(web_hub) == []
    web_hub.assert_serving()


def test_parts_that_are_not_dicom_fail_with_their_reasons(web_hub: WebHub) -> None:
    cut = a_part()[:-100]  # a data set cut short inside its pixel data
    no_uid = make_ct(sop=generate_uid(), study=generate_uid())
    del no_uid.StudyInstanceUID
    parts = [b"plain text, not DICOM", cut, encode(no_uid)]
    r = post(web_hub, multipart(parts))
    assert r.status_code == 409, r.text
    reasons = [value(f, "00081197") for f in r.json()["00081198"]["Value"]]
    assert reasons == [0xC000, 0xC000, 0xA900]
    typed = f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--{BOUNDARY}--\r\n".encode()
    r = post(web_hub, typed)
    assert r.status_code == 409 and value(r.json()["00081198"]["Value"][0], "00081197") == 0xC000
    assert spool(web_hub) == []
    web_hub.assert_serving()


@pytest.mark.parametrize(
    "content_type",
    [
        "application/dicom",
        "application/json",
        'multipart/related; type="application/dicom+json"; boundary=b',
        'multipart/related; type="application/dicom+xml"; boundary=b',
        "multipart/form-data; boundary=b",
        "",
    ],
)
def test_other_media_types_are_415(web_hub: WebHub, content_type: str) -> None:
    r = post(web_hub, a_part(), content_type)
    assert r.status_code == 415, r.text
    assert "application/dicom" in r.json()["issue"][0]["diagnostics"]
    web_hub.assert_serving()


def test_unacceptable_accept_is_406(web_hub: WebHub) -> None:
    with web_hub.http() as c:
        for accept in ('multipart/related; type="application/dicom+xml"', "image/png",
                       "application/dicom+json;q=0"):  # fmt: skip
            r = c.get("/dicomweb/studies", headers={"Accept": accept})
            assert r.status_code == 406, (accept, r.text)
            assert "application/dicom+json" in r.json()["issue"][0]["diagnostics"]
        r = c.get("/dicomweb/studies", headers={"Accept": "text/html, application/json;q=0.5"})
        assert r.status_code in (200, 204)
    xml = 'multipart/related; type="application/dicom+xml"'
    assert post(web_hub, multipart([a_part()]), Accept=xml).status_code == 406
    web_hub.assert_serving()


@pytest.mark.parametrize(
    "path",
    [
        "/dicomweb/studies/..%2F..%2Fetc/series",
        "/dicomweb/studies/..%2F..%2F..%2Fetc%2Fpasswd/instances",
        "/dicomweb/studies/%2e%2e/series",
        "/dicomweb/studies/1.2.3%00/series",
        "/dicomweb/studies/..%5C..%5Cboot.ini/series/1.2.3/instances",
        "/dicomweb/studies/../../../etc/passwd",
    ],
)
def test_path_traversal_is_refused(web_hub: WebHub, path: str) -> None:
    with web_hub.http() as c:
        r = c.get(path)
        assert r.status_code in (400, 404), r.text
        assert "root:" not in r.text
        posted = c.post(
            path.split("/series")[0], content=multipart([a_part()]), headers={"Content-Type": CT}
        )
        assert posted.status_code in (400, 404, 405), posted.text
    assert not (web_hub.data_dir.parent / "etc").exists()
    assert spool(web_hub) == []
    web_hub.assert_serving()


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("Foo=1", "Unknown query parameter or attribute 'Foo'"),
        ("0009ZZZZ=1", "Unknown query parameter"),
        ("00200099=1", "Unknown attribute 00200099"),
        ("PatientID.Foo=1", "Unknown query parameter or attribute 'Foo'"),
        ("PatientID.PatientName=x", "not a sequence"),
        ("limit=-1", "non-negative integer"),
        ("offset=abc", "non-negative integer"),
        ("fuzzymatching=maybe", "true or false"),
        ("includefield=NotAnAttribute", "Unknown query parameter"),
        ("StudyDate=2024-13-45", "Invalid DA"),
        ("StudyInstanceUID=not-a-uid", "Invalid UID"),
        ("PatientID=a&PatientID=b", "given twice"),
    ],
)
def test_bad_query_parameters_are_400(web_hub: WebHub, query: str, reason: str) -> None:
    with web_hub.http() as c:
        r = c.get(f"/dicomweb/studies?{query}")
    assert r.status_code == 400, r.text
    assert reason in r.json()["issue"][0]["diagnostics"]
    web_hub.assert_serving()


def test_oversize_stow_is_413(web_hub: WebHub) -> None:
    big = b"\x00" * (MAX_STORE + 1024)
    r = post(web_hub, multipart([big]))  # announced by Content-Length: refused before reading
    assert r.status_code == 413 and str(MAX_STORE) in r.text

    def chunked() -> Iterator[bytes]:  # no Content-Length: refused once the limit is passed
        yield f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        for _ in range(MAX_STORE // 65536 + 2):
            yield b"\x00" * 65536

    with web_hub.http() as c:
        r = c.post("/dicomweb/studies", content=chunked(), headers={"Content-Type": CT})
    assert r.status_code == 413
    assert spool(web_hub) == []
    web_hub.assert_serving()


def test_a_client_vanishing_mid_upload_leaves_nothing(web_hub: WebHub) -> None:
    port = int(web_hub.url.rsplit(":", 1)[1])
    part = a_part()
    body = multipart([part])
    head = (
        f"POST /dicomweb/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {web_hub.headers()['Authorization'].split()[1]}\r\n"
        f"Content-Type: {CT}\r\nContent-Length: {len(body) + 100000}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(head + body[: len(body) // 2])
        time.sleep(0.3)
    deadline = time.monotonic() + 5
    while spool(web_hub) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spool(web_hub) == []
    web_hub.assert_serving()
    ok = post(web_hub, multipart([a_part()]))
    assert ok.status_code == 200
    log = (web_hub.data_dir.parent / "serve.log").read_text(errors="replace")
    assert "ClientDisconnect" not in log and "the client went away" in log


def test_a_body_cut_after_whole_parts_keeps_them_and_says_what_failed(web_hub: WebHub) -> None:
    first, second = a_part(), a_part()
    body = multipart([first, second])
    cut = body[: body.index(second) + 200]  # the second part never ends
    r = post(web_hub, cut)
    assert r.status_code == 202 and r.headers["warning"].startswith("299 ")
    (stored,) = r.json()["00081199"]["Value"]
    (failed,) = r.json()["00081198"]["Value"]
    assert value(failed, "00081197") == 0xC000
    sop = value(stored, "00081155")
    with web_hub.http() as c:
        found = c.get("/dicomweb/instances", params={"SOPInstanceUID": sop})
    assert found.status_code == 200 and len(found.json()) == 1
    assert spool(web_hub) == []
    web_hub.assert_serving()
