"""FHIR-native capture (issue 10 item 1): a ``Binary`` posted in its native format is streamed
to the blob store with its real type decided from the bytes, read back natively or as FHIR JSON,
and referenced from a ``DocumentReference`` in a transaction (binary.html#rest)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.e2e.support import assert_valid_r4
from tests.integration.dicomweb.conftest import WebHub
from tests.integration.media import samples
from tests.integration.media.conftest import Record


def post_binary(
    hub: WebHub, data: bytes, content_type: str, token: str | None = None, **headers: str
) -> httpx.Response:
    with hub.http(token) if token else hub.http() as c:
        return c.post("/fhir/Binary", content=data,
                      headers={"Content-Type": content_type, **headers})  # fmt: skip


def spool_is_empty(hub: WebHub) -> bool:
    spool = hub.data_dir / "binary-spool"
    return not spool.exists() or not any(spool.iterdir())


def test_a_native_binary_is_stored_and_read_back(media_hub: WebHub, record: Record) -> None:
    photo = samples.phone_jpeg()
    r = post_binary(media_hub, photo, "image/jpeg", **{"X-Security-Context": record.patient})
    assert r.status_code == 201, r.text
    binary = r.json()
    assert_valid_r4(binary)
    assert binary["contentType"] == "image/jpeg"
    assert binary["securityContext"] == {"reference": record.patient}
    assert "data" not in binary
    assert r.headers["location"].endswith(f"/fhir/Binary/{binary['id']}/_history/1")
    with media_hub.http() as c:
        native = c.get(f"/fhir/Binary/{binary['id']}")
        as_json = c.get(f"/fhir/Binary/{binary['id']}",
                        headers={"Accept": "application/fhir+json"})  # fmt: skip
        by_format = c.get(f"/fhir/Binary/{binary['id']}", params={"_format": "json"})
    assert native.status_code == 200
    assert native.content == photo
    assert native.headers["content-type"] == "image/jpeg"
    assert native.headers["x-content-type-options"] == "nosniff"
    for answer in (as_json, by_format):
        assert answer.headers["content-type"].startswith("application/fhir+json")
        assert base64.b64decode(answer.json()["data"]) == photo
        assert_valid_r4(answer.json())


def test_the_type_comes_from_the_bytes(media_hub: WebHub) -> None:
    r = post_binary(media_hub, samples.wav(), "application/octet-stream")
    assert r.status_code == 201, r.text
    assert r.json()["contentType"] == "audio/wav"


@pytest.mark.parametrize(
    ("data", "declared", "status"),
    [
        (samples.png(), "image/jpeg", 422),  # the bytes deny the declared type
        (b"\x7fELF" + bytes(100), "application/octet-stream", 415),  # no supported type
        (samples.zip_appended(samples.phone_jpeg()), "image/jpeg", 422),  # polyglot
    ],
)
def test_bad_native_content_is_refused_and_leaves_nothing(
    media_hub: WebHub, data: bytes, declared: str, status: int
) -> None:
    r = post_binary(media_hub, data, declared)
    assert r.status_code == status, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert spool_is_empty(media_hub)


def test_a_client_cannot_point_a_binary_at_a_blob(media_hub: WebHub) -> None:
    stored = post_binary(media_hub, samples.png(), "image/png").json()
    forged = {
        "resourceType": "Binary",
        "meta": {"extension": stored["meta"]["extension"]},
        "contentType": "image/png",
    }
    with media_hub.http() as c:
        r = c.post("/fhir/Binary", json=forged)
    assert r.status_code == 400
    assert "reserved" in r.text


def test_a_transaction_links_a_native_binary_to_its_document(
    media_hub: WebHub, record: Record
) -> None:
    clip = samples.mp4()
    binary = post_binary(media_hub, clip, "video/mp4").json()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:8e0c8a8e-4f57-4f55-8c1c-1d5a2f0e9b01",
                "resource": {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "subject": {"reference": record.patient},
                    "context": {"encounter": [{"reference": record.encounter}]},
                    "content": [
                        {
                            "attachment": {
                                "contentType": "video/mp4",
                                "url": f"Binary/{binary['id']}",
                            }
                        }
                    ],
                },
                "request": {"method": "POST", "url": "DocumentReference"},
            }
        ],
    }
    with media_hub.http() as c:
        r = c.post("/fhir", json=bundle)
        assert r.status_code == 200, r.text
        found = c.get("/fhir/DocumentReference", params={"encounter": record.encounter}).json()
        url = found["entry"][0]["resource"]["content"][0]["attachment"]["url"]
        assert c.get(f"/fhir/{url}").content == clip


def test_binaries_need_a_scope_that_names_them(media_hub: WebHub) -> None:
    binary = post_binary(media_hub, samples.png(), "image/png").json()
    url = f"/fhir/Binary/{binary['id']}"
    wildcard = media_hub.token("user/*.cruds")
    explicit = media_hub.token("user/Binary.cr")
    with media_hub.http(wildcard) as c:
        assert c.get(url).status_code == 403
    assert post_binary(media_hub, samples.png(), "image/png", wildcard).status_code == 403
    with media_hub.http(explicit) as c:
        assert c.get(url).status_code == 200
    assert post_binary(media_hub, samples.wav(), "audio/wav", explicit).status_code == 201


def test_a_read_of_a_native_binary_is_audited(media_hub: WebHub) -> None:
    binary = post_binary(media_hub, samples.png(), "image/png").json()
    with media_hub.http() as c:
        assert c.get(f"/fhir/Binary/{binary['id']}").status_code == 200

    def read_of_it(event: dict[str, Any]) -> bool:
        refs = {e.get("what", {}).get("reference") for e in event.get("entity", [])}
        subtype = {s.get("code") for s in event.get("subtype", [])}
        return f"Binary/{binary['id']}" in refs and "read" in subtype

    assert media_hub.audit("rest", read_of_it)


def rss_peak(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_big_binary_streams_both_ways_in_constant_memory(media_hub: WebHub) -> None:
    size, chunks = samples.padded_mp4_chunks(200)
    before = rss_peak(media_hub.process.pid)
    with media_hub.http() as c:
        r = c.post("/fhir/Binary", content=chunks, headers={"Content-Type": "video/mp4"})
        assert r.status_code == 201, r.text
        received = 0
        with c.stream("GET", f"/fhir/Binary/{r.json()['id']}") as answer:
            assert answer.headers["content-type"] == "video/mp4"
            for chunk in answer.iter_bytes():
                received += len(chunk)
    assert received == size
    grown = rss_peak(media_hub.process.pid) - before
    assert grown < 64 * 1024 * 1024, f"the server's peak memory grew by {grown >> 20} MB"


def test_a_fhir_native_capture_has_metadata_free_views(media_hub: WebHub, record: Record) -> None:
    photo = samples.phone_jpeg(1000, 800)
    binary = post_binary(media_hub, photo, "image/jpeg").json()
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": record.patient},
        "content": [{"attachment": {"contentType": "image/jpeg", "url": f"Binary/{binary['id']}"}}],
    }
    with media_hub.http() as c:
        doc = c.post("/fhir/DocumentReference", json=document).json()
    clinician = media_hub.token("user/*.rs")
    with media_hub.http(clinician) as c:
        assert c.get(f"/fhir/Binary/{binary['id']}").status_code == 403  # the original: no
        for role, size in (("thumbnail", (256, 205)), ("preview", (1000, 800))):
            for _ in range(2):  # made once, then served from where it was kept
                view = c.get(f"/media/{doc['id']}/{role}")
                assert view.status_code == 200, view.text
                assert view.headers["content-type"] == "image/jpeg"
                image = Image.open(io.BytesIO(view.content))
                assert image.size == size
                assert not image.getexif() and b"iPhone" not in view.content
        assert c.get(f"/media/{doc['id']}/original").status_code == 403
