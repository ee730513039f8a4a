"""PixelHub as XDS-I.b Imaging Document Source (IHE RAD TF-3 4.68, RAD-68; IHE RAD MADO) between
real peers: hub A (``xds,dicom,dicomweb``) makes a KOS manifest for every study stored with STOW-RS
once it has been quiet, keeps it as a MADO ``DocumentReference`` + ``Binary`` and publishes it by
ITI-41 (MTOM) to hub B (``xds``), whose ITI-18 FindDocuments then finds it; a changed study gets a
replacement (``superseded`` on A, ``RPLC``/Deprecated on B). A third hub whose repository is not
reachable keeps its manifest locally and publishes it once the repository answers (a TCP
forwarder to B: bound but not listening first, so connections are refused, then forwarding).
A study whose Patient has no identifier in the affinity domain gets no manifest."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from lxml import etree
from pydicom import dcmread
from pydicom.uid import generate_uid

from adapters.xds._errors import RegistryStatus, XdsError, registry_response
from adapters.xds._identity import XdsIdentity
from adapters.xds._soap import (
    Attachment,
    SoapFault,
    SoapRequest,
    fault_response,
    read_request,
    soap_response,
)
from adapters.xds._source import ManifestSource
from hub.blobs import open_blob_store
from hub.channels import ChannelContext
from hub.config import Settings
from hub.errors import NotFound
from hub.fhir.binary import blob_binary
from hub.ports import StoredResource
from mappings.study_to_kos import kos_references
from tests.e2e.support import assert_valid_r4
from tests.integration.dicomweb.conftest import TOKEN, WebHub, start_web_hub, stop_process
from tests.integration.xds.conftest import AFFINITY, repository_id
from tests.integration.xds.test_xds_exchange import FIND_DOCUMENTS, RIM, patient, stored_query
from tests.integration.xds.test_xds_rad69 import Instance, stow
from tests.integration.xds.test_xds_rad69 import ct as rad69_ct

KOS = "1.2.840.10008.5.1.4.1.1.88.59"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
XDSB = "urn:ihe:iti:xds-b:2007"
SNOMED = "http://snomed.info/sct"


def ct(
    mrn: str, study: str, series: str, number: int, *, issuer: str | None = AFFINITY
) -> Instance:
    """A chest CT image of patient ``mrn`` (Issuer of Patient ID ``issuer``), Part 10."""
    return rad69_ct(mrn, study, series, number, issuer=issuer, body_part="CHEST",
                    accession="ACC-SRC-1")  # fmt: skip


def source_env(publish_url: str) -> dict[str, str]:
    return {
        "PIXELHUB_XDS_AFFINITY_DOMAIN": AFFINITY,
        "PIXELHUB_XDS_MANIFEST_QUIET_SECONDS": "0.5",
        "PIXELHUB_XDS_PUBLISH_URL": publish_url,
        "PIXELHUB_XDS_PUBLISH_TOKEN": TOKEN,
    }


@pytest.fixture(scope="module")
def hub_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebHub]:
    hub = start_web_hub(tmp_path_factory.mktemp("xds-b") / "data", channels="xds")
    yield hub
    stop_process(hub.process)
    hub.log.close()


@pytest.fixture(scope="module")
def hub_a(tmp_path_factory: pytest.TempPathFactory, hub_b: WebHub) -> Iterator[WebHub]:
    hub = start_web_hub(
        tmp_path_factory.mktemp("xds-a") / "data",
        channels="xds,dicom,dicomweb",
        extra_env=source_env(f"{hub_b.url}/xds/repository"),
    )
    yield hub
    stop_process(hub.process)
    hub.log.close()


# --------------------------------------------------------------------------- helpers


def manifests(hub: WebHub, study: str, status: str | None = None) -> list[dict[str, Any]]:
    """The KOS DocumentReferences of ``study`` on ``hub`` (MADO search by study UID)."""
    params = {"related:identifier": f"urn:dicom:uid|urn:oid:{study}", "_count": "50"}
    if status:
        params["status"] = status
    with hub.http() as c:
        r = c.get("/fhir/DocumentReference", params=params)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def current_manifest(
    hub: WebHub, study: str, references: int, timeout: float = 30
) -> dict[str, Any]:
    """The one current manifest of ``study`` once it lists ``references`` instances."""
    deadline = time.monotonic() + timeout
    while True:
        found = manifests(hub, study, "current")
        if len(found) == 1 and len(kos_of(hub, found[0])) == references:
            return found[0]
        assert time.monotonic() < deadline, f"no current {references}-instance manifest: {found}"
        time.sleep(0.2)


def kos_of(hub: WebHub, doc: dict[str, Any]) -> list[Any]:
    with hub.http() as c:
        r = c.get(f"/fhir/{doc['content'][0]['attachment']['url']}")
    assert r.status_code == 200, r.text
    return kos_references(dcmread(io.BytesIO(r.content)))


def unique_id(doc: dict[str, Any]) -> str:
    return str(doc["masterIdentifier"]["value"]).removeprefix("urn:oid:")


def registered(hub: WebHub, mrn: str) -> dict[str, str]:
    """uniqueId -> availabilityStatus of every DocumentEntry of ``mrn`` on ``hub`` (ITI-18)."""
    found = stored_query(hub, FIND_DOCUMENTS, {
        "$XDSDocumentEntryPatientId": f"'{mrn}^^^&amp;{AFFINITY}&amp;ISO'",
        "$XDSDocumentEntryStatus": f"('{APPROVED}','{DEPRECATED}')",
    })  # fmt: skip
    assert found.get("status", "").endswith(":Success"), etree.tostring(found)
    entries = {}
    for entry in found.findall(f"{{{RIM}}}RegistryObjectList/{{{RIM}}}ExtrinsicObject"):
        uid = next(
            str(e.get("value"))
            for e in entry.findall(f"{{{RIM}}}ExternalIdentifier")
            if e.get("identificationScheme") == UNIQUE_ID
        )
        entries[uid] = str(entry.get("status"))
    return entries


def wait_registered(hub: WebHub, mrn: str, expected: dict[str, str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (found := registered(hub, mrn)) != expected:
        assert time.monotonic() < deadline, f"registered {found}, expected {expected}"
        time.sleep(0.3)


# --------------------------------------------------------------------------- the happy path


@dataclass
class Published:
    mrn: str
    study: str
    series: str
    instances: list[Instance]
    first: dict[str, Any]  # the first manifest on A


@pytest.fixture(scope="module")
def published(hub_a: WebHub, hub_b: WebHub) -> Published:
    mrn = f"SRC-{uuid.uuid4().hex[:10]}"
    patient(hub_b, mrn)  # the affinity domain knows the patient
    study, series = generate_uid(), generate_uid()
    instances = [ct(mrn, study, series, n) for n in (1, 2, 3)]
    stow(hub_a, instances)
    first = current_manifest(hub_a, study, 3)
    return Published(mrn, study, series, instances, first)


def test_a_study_gets_a_mado_manifest(
    hub_a: WebHub, published: Published, assert_dicom_conforms: Any, tmp_path: Path
) -> None:
    doc = published.first
    assert_valid_r4(doc)
    study = hub_a.study(published.study)
    assert doc["subject"] == study["subject"]
    with hub_a.http() as c:
        subject = c.get(f"/fhir/{study['subject']['reference']}").json()
    assert {"system": f"urn:oid:{AFFINITY}", "value": published.mrn} in [
        {"system": i.get("system"), "value": i.get("value")} for i in subject["identifier"]
    ]
    assert doc["status"] == "current"
    assert doc["content"][0]["format"]["code"] == KOS
    assert doc["content"][0]["attachment"]["contentType"] == "application/dicom"
    assert doc["type"]["coding"][0]["code"] == "18748-4"
    related = doc["context"]["related"]
    assert {"reference": f"ImagingStudy/{study['id']}"} in related
    assert {"system": "urn:dicom:uid", "value": f"urn:oid:{published.study}"} in [
        r.get("identifier") for r in related
    ]
    assert any(r.get("identifier", {}).get("value") == "ACC-SRC-1" for r in related)
    events = {(c["system"], c["code"]) for e in doc["context"]["event"] for c in e["coding"]}
    assert (DCM, "CT") in events and (SNOMED, "816094009") in events
    assert doc["context"]["period"]["start"].startswith("2024-03-15")
    # the Binary is a KOS that dciodvfy accepts, referencing the 3 instances at this hub
    with hub_a.http() as c:
        data = c.get(f"/fhir/{doc['content'][0]['attachment']['url']}").content
    path = tmp_path / "manifest.dcm"
    path.write_bytes(data)
    assert_dicom_conforms(path)
    kos = dcmread(path)
    assert kos.SOPInstanceUID == unique_id(doc)
    assert kos.PatientID == published.mrn and kos.IssuerOfPatientID == AFFINITY
    references = kos_references(kos)
    assert sorted(r.sop_instance_uid for r in references) == sorted(
        i.sop for i in published.instances
    )
    assert {r.retrieve_location_uid for r in references} == {repository_id(hub_a)}
    assert {r.retrieve_ae_title for r in references} == {"PIXELHUB"}
    series_url = kos.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert series_url.RetrieveURL == (
        f"{hub_a.url}/dicomweb/studies/{published.study}/series/{published.series}"
    )


def test_the_manifest_is_published_and_replaced(
    hub_a: WebHub, hub_b: WebHub, published: Published
) -> None:
    first = unique_id(published.first)
    wait_registered(hub_b, published.mrn, {first: APPROVED})
    # a 4th instance: a replacement manifest, on A and on B
    fourth = ct(published.mrn, published.study, published.series, 4)
    stow(hub_a, [fourth])
    second = current_manifest(hub_a, published.study, 4)
    assert unique_id(second) != first
    assert second["relatesTo"] == [
        {"code": "replaces", "target": {"reference": f"DocumentReference/{published.first['id']}"}}
    ]
    assert_valid_r4(second)
    [old] = manifests(hub_a, published.study, "superseded")
    assert old["id"] == published.first["id"]
    wait_registered(hub_b, published.mrn, {first: DEPRECATED, unique_id(second): APPROVED})
    assert sorted(d["id"] for d in manifests(hub_a, published.study)) == sorted(
        [published.first["id"], second["id"]]
    )

    # the Document Source's own record of each ITI-41 it sent (ITI TF-2 3.41.5.1.1)
    def export_of_second(event: dict[str, Any]) -> bool:
        refs = {e.get("what", {}).get("reference") for e in event.get("entity", [])}
        sent = any(s.get("code") == "ITI-41" for s in event.get("subtype", []))
        return sent and f"DocumentReference/{second['id']}" in refs

    exports = hub_a.audit("110106", export_of_second)
    assert exports and exports[-1]["outcome"] == "0"


def test_no_identifier_in_the_affinity_domain_no_manifest(hub_a: WebHub, hub_b: WebHub) -> None:
    lone, known = generate_uid(), generate_uid()
    mrn = f"SRC-{uuid.uuid4().hex[:10]}"
    patient(hub_b, mrn)
    stow(hub_a, [ct(f"LOCAL-{uuid.uuid4().hex[:8]}", lone, generate_uid(), 1, issuer=None)])
    hub_a.study(lone)
    # a study stored after it gets its manifest: the projector has been past the first one
    stow(hub_a, [ct(mrn, known, generate_uid(), 1)])
    current_manifest(hub_a, known, 1)
    assert manifests(hub_a, lone) == []


# --------------------------------------------------------------------------- target down


class Forwarder:
    """A TCP port that refuses connections (bound, not listening) until ``open(target)``, then
    forwards each connection to ``target``."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.target = 0

    def open(self, target: int) -> None:
        self.target = target
        self.sock.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


def test_a_manifest_is_kept_while_the_repository_is_down_and_published_later(
    tmp_path_factory: pytest.TempPathFactory, hub_b: WebHub
) -> None:
    forwarder = Forwarder()
    hub = start_web_hub(
        tmp_path_factory.mktemp("xds-c") / "data",
        channels="xds,dicom,dicomweb",
        extra_env=source_env(f"http://127.0.0.1:{forwarder.port}/xds/repository"),
    )
    try:
        mrn = f"SRC-{uuid.uuid4().hex[:10]}"
        patient(hub_b, mrn)
        study = generate_uid()
        stow(hub, [ct(mrn, study, generate_uid(), n) for n in (1, 2)])
        doc = current_manifest(hub, study, 2)
        log = hub.data_dir.parent / "serve.log"
        deadline = time.monotonic() + 20
        while "is not reachable" not in log.read_text(errors="replace"):  # tried and refused
            assert time.monotonic() < deadline, "publishing was never tried"
            time.sleep(0.2)
        assert registered(hub_b, mrn) == {}
        forwarder.open(int(hub_b.url.rsplit(":", 1)[1]))
        wait_registered(hub_b, mrn, {unique_id(doc): APPROVED})
        assert [d["id"] for d in manifests(hub, study)] == [doc["id"]]
    finally:
        stop_process(hub.process)
        hub.log.close()
        forwarder.close()


# --------------------------------------------------------------------------- restart


def test_a_study_waiting_for_its_quiet_period_survives_a_restart(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data_dir = tmp_path_factory.mktemp("xds-r") / "data"
    env = {"PIXELHUB_XDS_AFFINITY_DOMAIN": AFFINITY, "PIXELHUB_XDS_MANIFEST_QUIET_SECONDS": "3600"}
    hub = start_web_hub(data_dir, channels="xds,dicom,dicomweb", extra_env=env)
    study = generate_uid()
    try:
        stow(hub, [ct(f"SRC-{uuid.uuid4().hex[:10]}", study, generate_uid(), 1)])
        hub.study(study)
        deadline = time.monotonic() + 20
        while True:  # the projector has handled the ImagingStudy change (its cursor moved on)
            with hub.http() as c:
                checks = c.get("/health").json()["checks"]["projectors"]
            if checks["xds-manifests"]["lag"] == 0 and checks["study-aggregator"]["lag"] == 0:
                break
            assert time.monotonic() < deadline, checks
            time.sleep(0.2)
        assert manifests(hub, study) == []  # still waiting for an hour of quiet
    finally:
        stop_process(hub.process)
        hub.log.close()
    (data_dir / "ports.json").unlink(missing_ok=True)  # removed on a clean stop
    env["PIXELHUB_XDS_MANIFEST_QUIET_SECONDS"] = "0.5"
    hub = start_web_hub(data_dir, channels="xds,dicom,dicomweb", extra_env=env)
    try:
        current_manifest(hub, study, 1)
    finally:
        stop_process(hub.process)
        hub.log.close()


# --------------------------------------------------------------------------- the ITI-41 answers

Answer = tuple[int, str, bytes]


class Recorded:
    """The ``post`` port of ``ManifestSource``: parses each request (an MTOM ITI-41 with the
    bearer token and the KOS as an MTOM part) and answers from a script: an answer, a function
    of the request, or an exception to raise."""

    def __init__(self, spool: Path, *script: Answer | Callable[[SoapRequest], Answer] | Exception):
        self.spool = spool
        self.script = list(script)
        self.requests: list[SoapRequest] = []

    def __call__(self, url: str, body: bytes, headers: Any, timeout: float) -> Answer:
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        soap = asyncio.run(read_request(headers["Content-Type"], _one(body),
                                        spool_dir=str(self.spool), limit=1 << 30))  # fmt: skip
        assert soap.action == "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
        document = soap.content_of(soap.body.find(f"{{{XDSB}}}Document"))
        assert isinstance(document, Attachment) and document.read()[128:132] == b"DICM"
        self.requests.append(soap)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step(soap) if callable(step) else step

    def associations(self, n: int) -> list[str]:
        return [a.get("associationType", "").rsplit(":", 1)[1]
                for a in self.requests[n].body.iter(f"{{{RIM}}}Association")]  # fmt: skip


async def _one(data: bytes) -> Any:
    yield data


def answer(status: RegistryStatus, *errors: XdsError) -> Answer:
    content_type, data = soap_response(
        "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse", "",
        registry_response(list(errors), status=status),
    )  # fmt: skip
    return 200, content_type, data


def rplc_unknown(soap: SoapRequest) -> Answer:
    """The registry does not know the entry the manifest replaces (error at the RPLC)."""
    [rplc] = [a for a in soap.body.iter(f"{{{RIM}}}Association")
              if a.get("associationType", "").endswith(":RPLC")]  # fmt: skip
    return answer("Failure", XdsError(XdsError.METADATA, "no such entry", rplc.get("id", "")))


class Resources:
    """The ``read`` of a ``FhirService`` over a dict of resources."""

    def __init__(self, resources: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.resources = resources

    def read(self, principal: Any, rtype: str, rid: str) -> StoredResource:
        if (rtype, rid) not in self.resources:
            raise NotFound(f"{rtype}/{rid}")
        return StoredResource(rtype, rid, 1, "", orjson.dumps(self.resources[rtype, rid]))


def test_publish_outcomes(hub_a: WebHub, published: Published, tmp_path: Path) -> None:
    """Against a scripted repository: the RPLC is sent; a repository that already has the
    uniqueId counts as published; one that does not know the replaced entry gets the manifest
    without RPLC; a Failure, a SOAP fault, an answer without SOAP and a refused connection
    raise (so the projector retries)."""
    doc = dict(published.first)
    with hub_a.http() as c:
        kos = c.get(f"/fhir/{doc['content'][0]['attachment']['url']}").content
        subject = c.get(f"/fhir/{doc['subject']['reference']}").json()
    settings = Settings(
        data_dir=tmp_path / "data", xds_affinity_domain=AFFINITY,
        xds_publish_url="http://repository.invalid/xds", xds_publish_token=TOKEN,
    )  # fmt: skip
    key = open_blob_store(settings.data_dir).put(io.BytesIO(kos), prefix="t").key
    old_entry = f"urn:uuid:{uuid.uuid4()}"
    doc["relatesTo"] = [{"code": "replaces", "target": {"reference": "DocumentReference/old"}}]
    binary_id = doc["content"][0]["attachment"]["url"].split("/")[1]
    service = Resources({
        ("Patient", subject["id"]): subject,
        ("Binary", binary_id): blob_binary("application/dicom", key, None),
        ("DocumentReference", "old"):
            {"id": "old", "identifier": [{"system": "urn:ietf:rfc:3986", "value": old_entry}]},
    })  # fmt: skip
    context = ChannelContext(settings, service, None, None, lambda: None)  # type: ignore[arg-type]
    identity = XdsIdentity("2.999.7", "urn:oid:2.999.8")

    def publish(post: Recorded) -> None:
        ManifestSource(context, identity, None, None, post=post).publish(doc)  # type: ignore[arg-type]

    ok = Recorded(tmp_path, answer("Success"))
    publish(ok)
    assert ok.associations(0) == ["HasMember", "RPLC"]
    assert [
        a.get("targetObject")
        for a in ok.requests[0].body.iter(f"{{{RIM}}}Association")
        if a.get("associationType", "").endswith(":RPLC")
    ] == [old_entry]
    duplicate = Recorded(tmp_path, answer("Failure", XdsError(XdsError.DUPLICATE_UNIQUE_ID, "had")))
    publish(duplicate)
    assert len(duplicate.requests) == 1
    unknown = Recorded(tmp_path, rplc_unknown, answer("Success"))
    publish(unknown)
    assert [unknown.associations(n) for n in (0, 1)] == [["HasMember", "RPLC"], ["HasMember"]]
    for failing in (
        answer("Failure", XdsError(XdsError.UNKNOWN_PATIENT, "who?")),
        (500, *fault_response(SoapFault("broken", code="Receiver"))),
        (502, "text/html", b"<html>bad gateway</html>"),
        ConnectionRefusedError(111, "refused"),
    ):
        with pytest.raises(XdsError):
            publish(Recorded(tmp_path, failing))
