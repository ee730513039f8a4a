"""Real peers for the DICOM channel: hubs with the ``dicom`` channel on free ports, and ONE
Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) per test session acting as a modality/PACS.

Orthanc is started as our own process (never the system service) with a temporary JSON config,
free ports, loopback-only HTTP and ``TCP_NODELAY=1`` (see PEERS.md); each test registers its hub
as an Orthanc modality through ``PUT /modalities/{id}`` and pushes with
``POST /modalities/{id}/store``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.integration.dicom.dicom_support import DicomHub, free_port, start_dicom_hub

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


@dataclass
class Orthanc:
    url: str
    dicom_port: int
    aet: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120)

    def upload(self, data: bytes) -> str:
        with self.client() as c:
            r = c.post("/instances", content=data)
            r.raise_for_status()
            return str(r.json()["ID"])

    def add_modality(self, name: str, aet: str, port: int) -> None:
        with self.client() as c:
            r = c.put(f"/modalities/{name}", json={"AET": aet, "Host": "127.0.0.1", "Port": port})
            r.raise_for_status()

    def push(self, modality: str, ids: list[str]) -> dict[str, Any]:
        """C-STORE the given Orthanc resources to ``modality`` (synchronous)."""
        with self.client() as c:
            r = c.post(
                f"/modalities/{modality}/store", json={"Resources": ids, "Synchronous": True}
            )
            r.raise_for_status()
            result: dict[str, Any] = r.json()
            return result

    def clear(self) -> None:
        with self.client() as c:
            for pid in c.get("/patients").json():
                c.delete(f"/patients/{pid}")


def start_orthanc(workdir: Path) -> Orthanc:
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "pixelhub-test-orthanc",
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpServerEnabled": True,
        "DicomServerEnabled": True,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAssociationCloseDelay": 0,
        "StorageCompression": False,
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "DicomModalities": {},
        "DicomModalitiesInDatabase": False,
        "HttpTimeout": 120,
        "StableAge": 1,
    }
    path = workdir / "orthanc.json"
    path.write_text(json.dumps(config))
    log = open(workdir / "orthanc.log", "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        [ORTHANC, "--no-jobs", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TCP_NODELAY": "1"},
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/system", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            log.close()
            raise RuntimeError(
                f"Orthanc did not start:\n{(workdir / 'orthanc.log').read_text()[-3000:]}"
            )
        time.sleep(0.1)
    return Orthanc(url, dicom_port, "ORTHANC", process, log)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    stop_process(server.process)
    server.log.close()


@pytest.fixture
def dicom_hub_factory(tmp_path: Path) -> Iterator[Callable[..., DicomHub]]:
    started: list[DicomHub] = []

    def factory(data_dir: Path | None = None, **overrides: Any) -> DicomHub:
        h = start_dicom_hub(data_dir or tmp_path / f"data{len(started)}", **overrides)
        started.append(h)
        return h

    yield factory
    for h in started:
        h.close()


@pytest.fixture
def dicom_hub(dicom_hub_factory: Callable[..., DicomHub]) -> DicomHub:
    return dicom_hub_factory()
