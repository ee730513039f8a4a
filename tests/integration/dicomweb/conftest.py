"""Real peers for the DICOMweb tests (DICOM PS3.18): ONE ``pixelhub serve`` process per session
with the ``dicom`` and ``dicomweb`` services on free ports, read and written by the
``dicomweb-client`` package (PyPI) and by Orthanc's DICOMweb client (the session ``orthanc``
fixture of the DICOM tests, imported here).

The process is started like ``tests/e2e/test_serve.py::running_hub`` but with its output in a
file, not a pipe: a session's worth of log lines must never fill a pipe nobody reads and stall
the server. Tokens: the static ``TOKEN`` (full access), or SMART access tokens signed with the
served data dir's own keys (``WebHub.token``), as the hub's authorization server would issue.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
import pytest
from dicomweb_client import DICOMwebClient

from hub.config import Settings
from hub.smart import AuthorizationServer, ClientStore, Endpoints, KeyStore
from tests.integration.dicom.conftest import orthanc, stop_process  # noqa: F401 (fixture)

TOKEN = "dicomweb-test-token"
MAX_STORE = 4 * 1024 * 1024  # dicom_web_max_store_bytes of the served hub (413 tests)
DICOM_MULTIPART = 'multipart/related; type="application/dicom"; boundary={}'


@dataclass
class WebHub:
    url: str  # http://127.0.0.1:<port>
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicomweb"

    def headers(self, token: str | None = TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def client(self, token: str | None = TOKEN, url: str | None = None) -> DICOMwebClient:
        return DICOMwebClient(url or self.dicomweb, headers=self.headers(token), timeout=30)

    def http(self, token: str | None = TOKEN) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(token), timeout=60)

    def token(self, scope: str, patient: str | None = None) -> str:
        """A SMART access token as the hub's own authorization server signs it."""
        settings = Settings(data_dir=self.data_dir)
        fhir = f"{self.url}/fhir"
        server = AuthorizationServer(
            KeyStore(settings.keys_dir),
            ClientStore(settings.clients_file),
            Endpoints(issuer=settings.issuer(fhir), fhir_base=fhir),
        )
        extra = {"patient": patient} if patient else {}
        token, _ = server.sign_access_token("dicomweb-app", scope, subject="u", extra=extra)
        return token

    def study(self, study_uid: str, timeout: float = 30) -> dict[str, Any]:
        """The ImagingStudy of ``study_uid`` once the aggregator wrote it."""
        deadline = time.monotonic() + timeout
        with self.http() as c:
            while True:
                bundle = c.get(
                    "/fhir/ImagingStudy",
                    params={"identifier": f"urn:dicom:uid|urn:oid:{study_uid}"},
                ).json()
                if bundle.get("entry"):
                    return dict(bundle["entry"][0]["resource"])
                assert time.monotonic() < deadline, f"study {study_uid} not aggregated"
                time.sleep(0.1)

    def audit(
        self, code: str, where: Callable[[dict[str, Any]], bool], count: int = 1
    ) -> list[dict[str, Any]]:
        """Journaled AuditEvents of type ``code`` for which ``where`` holds (at least ``count``
        of them, waiting up to 10 s for the journal)."""
        directory = Settings(data_dir=self.data_dir).audit_directory
        deadline = time.monotonic() + 10
        while True:
            found = []
            for path in sorted(directory.glob("journal-*")):
                for line in path.read_bytes().splitlines():
                    event = orjson.loads(line).get("event")
                    if event and event["type"]["code"] == code and where(event):
                        found.append(event)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def assert_serving(self) -> None:
        """The process is alive and answers QIDO."""
        assert self.process.poll() is None, "pixelhub serve died"
        with self.http() as c:
            r = c.get("/dicomweb/studies", params={"limit": "1"})
        assert r.status_code in (200, 204), r.text


def start_web_hub(
    data_dir: Path, *, channels: str = "dicom,dicomweb", extra_env: dict[str, str] | None = None
) -> WebHub:
    """``pixelhub serve`` with ``channels`` on free ports (``extra_env``: more settings)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PIXELHUB_AUTH_TOKENS": TOKEN,
        "PIXELHUB_CHANNELS": channels,
        "PIXELHUB_DICOM_AGGREGATION_QUIET_SECONDS": "0.5",
        "PIXELHUB_DICOM_ALLOWED_PEERS": "DCMSEND,PYSCU",  # WADO tests load data over C-STORE
        "PIXELHUB_DICOM_WEB_MAX_STORE_BYTES": str(MAX_STORE),
        **(extra_env or {}),
    }
    log = open(data_dir.parent / "serve.log", "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--http-port", "0", "--dicom-port", "0",
         "--data-dir", str(data_dir)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    ports = data_dir / "ports.json"
    deadline = time.monotonic() + 60
    while not ports.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            log.close()
            output = (data_dir.parent / "serve.log").read_text(errors="replace")
            raise RuntimeError(f"pixelhub serve did not start:\n{output[-3000:]}")
        time.sleep(0.05)
    port = json.loads(ports.read_text())["http"]
    return WebHub(f"http://127.0.0.1:{port}", data_dir, process, log)


@pytest.fixture(scope="session")
def web_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebHub]:
    hub = start_web_hub(tmp_path_factory.mktemp("dicomweb") / "data")
    yield hub
    stop_process(hub.process)
    hub.log.close()
