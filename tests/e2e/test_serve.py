"""``pixelhub serve`` as a real process: port 0, ports.json, SIGTERM drains, nothing acked is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hl7.client
import httpx
import pytest

from hub.channels import available_channels
from tests.support.processes import children

TOKEN = "serve-test-token"


@contextmanager
def running_hub(data_dir: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {**os.environ, "PIXELHUB_AUTH_TOKENS": TOKEN}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hub",
            "serve",
            "--http-port",
            "0",
            "--dicom-port",
            "0",
            "--mllp-port",
            "0",
            "--data-dir",
            str(data_dir),
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ports = data_dir / "ports.json"
    deadline = time.monotonic() + 30
    while not ports.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.stdout.read() if proc.stdout else ""
            proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
            raise AssertionError(f"hub did not start: {out}")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{json.loads(ports.read_text())['http']}"
    try:
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_port_zero_and_ports_json(tmp_path: Path) -> None:
    with running_hub(tmp_path) as (proc, url):
        ports = json.loads((tmp_path / "ports.json").read_text())
        assert "http" in ports and len(ports) == 1 + len(available_channels())
        assert all(p > 0 for p in ports.values()) and len(set(ports.values())) == len(ports)
        assert httpx.get(f"{url}/fhir/metadata").json()["resourceType"] == "CapabilityStatement"
        assert httpx.get(f"{url}/fhir/Patient").status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        out = proc.stdout.read() if proc.stdout else ""
        for name, port in ports.items():
            assert f"{name}={port}" in out
        assert "PixelHub stopped cleanly" in out
    assert not (tmp_path / "ports.json").exists()


def test_channels_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXELHUB_CHANNELS", "http")
    with running_hub(tmp_path) as (proc, _url):
        assert set(json.loads((tmp_path / "ports.json").read_text())) == {"http"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    monkeypatch.setenv("PIXELHUB_CHANNELS", "http,carrier-pigeon")
    bad = subprocess.run(
        [sys.executable, "-m", "hub", "serve", "--http-port", "0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "carrier-pigeon" in bad.stdout + bad.stderr


def test_sigterm_during_writes_loses_nothing_acknowledged(tmp_path: Path) -> None:
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(url: str, n: int) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}", "Prefer": "return=minimal"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as c:
            i = 0
            while not stop.is_set():
                body = {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:t", "value": f"{n}-{i}"}],
                }
                try:
                    r = c.post("/fhir/Patient", json=body)
                except httpx.HTTPError:
                    return
                if r.status_code == 201:
                    with lock:
                        acknowledged.append(r.headers["location"].split("/")[-3])
                i += 1

    with running_hub(tmp_path) as (proc, url):
        threads = [threading.Thread(target=writer, args=(url, n)) for n in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        stop.set()
        for t in threads:
            t.join()
    assert len(acknowledged) > 20
    with running_hub(tmp_path) as (proc, url):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        total = httpx.get(f"{url}/fhir/Patient?_summary=count", headers=headers).json()["total"]
        assert total >= len(acknowledged)
        for pid in acknowledged[:: max(1, len(acknowledged) // 50)]:
            assert httpx.get(f"{url}/fhir/Patient/{pid}", headers=headers).status_code == 200
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_demo_mode_is_loud_and_open(tmp_path: Path) -> None:
    with running_hub(tmp_path, "--demo") as (proc, url):
        studies = httpx.get(f"{url}/fhir/ImagingStudy").json()
        modalities = {e["resource"]["modality"][0]["code"] for e in studies["entry"]}
        assert {"CT", "MG", "SM", "US", "XC", "OP", "ES"} <= modalities
        ports = json.loads((tmp_path / "ports.json").read_text())
        # any DICOM peer and HL7 sender is accepted in the demo, with no allow-list configured
        echo = subprocess.run(
            [
                "/usr/bin/echoscu",
                "-aet",
                "ANYSCU",
                "-aec",
                "PIXELHUB",
                "127.0.0.1",
                str(ports["dicom"]),
            ],
            capture_output=True,
            timeout=30,
        )
        assert echo.returncode == 0, echo.stderr
        adt = "\r".join(
            [
                "MSH|^~\\&|ANYAPP|ANYFAC|PIXELHUB|HUB|20260101120000||ADT^A04|DEMO1|P|2.5.1",
                "PID|1||DEMO-ADT^^^DEMO||Doe^Jane||19700101|F",
                "PV1|1|O|||||||||||||||||V-DEMO-1",
            ]
        )
        with hl7.client.MLLPClient("127.0.0.1", ports["mllp"]) as sender:
            ack = str(sender.send_message(adt))
        assert "MSA|AA|DEMO1" in ack, ack
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        out = proc.stdout.read() if proc.stdout else ""
    assert "DEMO MODE: NO AUTHENTICATION" in out
    with running_hub(tmp_path, "--demo") as (proc, url):  # second start: no duplicates
        again = httpx.get(f"{url}/fhir/ImagingStudy?_summary=count").json()["total"]
        assert again == len(studies["entry"])
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_cli_help_and_bad_config(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "hub", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "serve" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "hub", "serve", "--http-port", "70000", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "http_port" in bad.stderr


def _indexer_pids(parent: int) -> list[int]:
    """The children of ``parent`` that run the audit indexer (not the DICOM receivers)."""
    return [
        c.pid
        for c in children(parent)
        if b"spawn_main" in c.cmdline and not c.name.startswith("pixelhub-dicom")
    ]


def test_audit_events_are_indexed_by_a_worker_process_that_stops_with_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 7: with ``PIXELHUB_AUDIT_INDEX_PROCESS`` ``pixelhub serve`` indexes AuditEvents in
    a worker process at the lowest CPU priority; they become searchable, and SIGTERM stops the
    worker."""
    monkeypatch.setenv("PIXELHUB_AUDIT_INDEX_PROCESS", "true")
    with running_hub(tmp_path / "data") as (proc, url):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"]
            client.get(f"/fhir/Patient/{pid}")
            workers = _indexer_pids(proc.pid)
            assert len(workers) == 1, workers
            deadline = time.monotonic() + 20
            found: dict[str, object] = {}
            while time.monotonic() < deadline:
                found = client.get(f"/fhir/AuditEvent?patient=Patient/{pid}").json()
                if found.get("total") == 2:
                    break
                time.sleep(0.2)
            assert found.get("total") == 2, found
            # at the lowest priority: it uses the CPU time serving leaves
            assert os.getpriority(os.PRIO_PROCESS, workers[0]) == 19
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    deadline = time.monotonic() + 10
    while Path(f"/proc/{workers[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{workers[0]}").exists(), "the indexer outlived the hub"
