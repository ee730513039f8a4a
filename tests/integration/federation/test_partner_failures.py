"""Partners that fail: stopped mid-test, slowed past their timeout, answering garbage, and a
partner that is this hub again (a loop). The merged result is still right and each failure is
one OperationOutcome entry (issue 12, item 2 and the issue's tests)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.integration.dicomweb.conftest import WebHub, start_web_hub, stop_process
from tests.integration.federation.conftest import (
    NATIONAL,
    Federation,
    add_partner,
    cli,
    load,
)
from tests.integration.federation.test_federated_search import matches, outcomes, sites, study_uid


def issue_of(bundle: dict[str, Any], site: str) -> dict[str, Any]:
    found = [
        o["issue"][0]
        for o in outcomes(bundle)
        if o["issue"][0]["details"]["coding"][0]["code"] == site
    ]
    assert len(found) == 1, outcomes(bundle)
    return dict(found[0])


@pytest.fixture
def partner_d(federation: Federation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebHub]:
    """A fourth hub, D, with one more study of the patient, added to A as a partner."""
    d = start_web_hub(
        tmp_path_factory.mktemp("site-D") / "data",
        channels="dicomweb",
        extra_env={"PIXELHUB_FEDERATION_SITE_ID": "site-d"},
    )
    try:
        load(d, "A", [("1.2.4", "XA", "2021-03-03T09:00:00Z")])  # knows A's MRN
        add_partner(federation.a, d, "D", "--timeout", "2")
        yield d
    finally:
        cli(federation.a.data_dir, "partners", "remove", "D")
        stop_process(d.process)
        d.log.close()


def test_a_partner_stopped_mid_test(federation: Federation, partner_d: WebHub) -> None:
    before = federation.search("ImagingStudy", {"patient": federation.patient}).json()
    assert [study_uid(e) for e in matches(before)] == ["1.2.1", "1.2.2", "1.2.3", "1.2.4"]
    stop_process(partner_d.process)
    after = federation.search("ImagingStudy", {"patient": federation.patient})
    assert after.status_code == 200
    bundle = after.json()
    assert [study_uid(e) for e in matches(bundle)] == ["1.2.1", "1.2.2", "1.2.3"]
    issue = issue_of(bundle, "D")
    assert (issue["severity"], issue["code"]) == ("error", "transient")
    assert "Hospital D: could not be reached" in issue["diagnostics"]


def test_a_partner_slowed_past_its_timeout(federation: Federation, partner_d: WebHub) -> None:
    os.kill(partner_d.process.pid, signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        start = time.monotonic()
        bundle = federation.search("ImagingStudy", {"patient": federation.patient}).json()
        took = time.monotonic() - start
    finally:
        os.kill(partner_d.process.pid, signal.SIGCONT)
    assert 2.0 <= took < 6.0, took  # D's timeout is 2 s; the others answered meanwhile
    assert [study_uid(e) for e in matches(bundle)] == ["1.2.1", "1.2.2", "1.2.3"]
    issue = issue_of(bundle, "D")
    assert issue["code"] == "timeout" and "no answer within 2 s" in issue["diagnostics"]
    # D answers again once resumed
    again = federation.search("ImagingStudy", {"patient": federation.patient}).json()
    assert "1.2.4" in [study_uid(e) for e in matches(again)]


class Garbage:
    """A "partner" that grants tokens and then answers its searches with ``body``."""

    def __init__(self) -> None:
        self.body = b""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.endswith("/.well-known/smart-configuration"):
                    url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
                    self._send(200, json.dumps({"token_endpoint": url}).encode())
                else:
                    self._send(200, outer.body)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                token = {"access_token": "t", "token_type": "Bearer", "expires_in": 300}
                self._send(200, json.dumps(token).encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def fhir_base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/fhir"


@pytest.fixture
def garbage(federation: Federation) -> Iterator[Garbage]:
    server = Garbage()
    cli(
        federation.a.data_dir,
        "partners",
        "add",
        "G",
        "--fhir-base",
        server.fhir_base,
        "--client-id",
        "anything",
        "--identifier-system",
        NATIONAL,
    )
    yield server
    cli(federation.a.data_dir, "partners", "remove", "G")
    server.server.shutdown()
    server.server.server_close()


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"resourceType": "Bundle", "type": "searchset", "entry": [', "malformed JSON"),
        (b'{"resourceType": "Patient", "id": "x"}', "not a searchset Bundle"),
        (
            b'{"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": 7}]}',
            "not valid",
        ),
        (b"\xff\xfe garbage", "malformed JSON"),
    ],
)
def test_a_partner_answering_garbage(
    federation: Federation, garbage: Garbage, body: bytes, said: str
) -> None:
    garbage.body = body
    r = federation.search("ImagingStudy", {"patient": federation.patient})
    assert r.status_code == 200
    bundle = r.json()
    assert [study_uid(e) for e in matches(bundle)] == ["1.2.1", "1.2.2", "1.2.3"]
    issue = issue_of(bundle, "G")
    assert issue["code"] == "processing" and said in issue["diagnostics"]


def test_a_partner_that_leads_back_here_is_cut_by_the_hop_check(federation: Federation) -> None:
    """Partner "LOOP" is hub A's own federated base: A asks itself, sees its site id in Via,
    and answers 508 to itself; the loop ends there."""
    a = federation.a
    jwks = a.data_dir.parent / "self-jwks.json"
    jwks.write_text(cli(a.data_dir, "partners", "jwks"))
    out = cli(
        a.data_dir,
        "clients",
        "add",
        "self",
        "--type",
        "confidential-asymmetric",
        "--jwks",
        str(jwks),
        "--scope",
        "system/ImagingStudy.rs system/Endpoint.rs",
    )
    client_id = out.split("client_id:")[1].split()[0]
    cli(
        a.data_dir,
        "partners",
        "add",
        "LOOP",
        "--fhir-base",
        f"{a.url}/fhir/federated",
        "--token-url",
        f"{a.url}/auth/token",
        "--client-id",
        client_id,
    )
    try:
        bundle = federation.search("ImagingStudy", {"patient": federation.patient}).json()
    finally:
        cli(a.data_dir, "partners", "remove", "LOOP")
    assert [study_uid(e) for e in matches(bundle)] == ["1.2.1", "1.2.2", "1.2.3"]
    issue = issue_of(bundle, "LOOP")
    assert "HTTP 508" in issue["diagnostics"] and "already passed this hub" in issue["diagnostics"]
    assert sites(matches(bundle)[0]) == ["local", "B"]
