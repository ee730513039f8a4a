"""IHE XDS.b / XDS-I.b exchange (issue 11): ITI-41 submissions per second with a 50-instance KOS
manifest (MTOM), ITI-18 FindDocuments latency (p50/p95) with ``--entries`` DocumentEntries in the
registry, and RAD-69 retrieve MB/s of a study's instances (beside WADO-RS of the same study).

One ``pixelhub serve`` (channels xds, dicom, dicomweb) on this machine. The registry is filled to
``--entries`` through MHD (FHIR transactions of DocumentReferences made by the same mapping as
ITI-41, 500 per transaction), which is how a bulk load would go; ITI-41 itself is timed on its own
submissions. No XDS peer runs here (no public XDS registry is packaged for Debian, PyPI or Maven
Central that the machine can start), so the figures are absolute, beside the disk's own copy
rate for RAD-69.

    .venv/bin/python benchmarks/xds_exchange.py --submissions 200 --entries 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from dicom_ingest import TOKEN, PixelHub

from adapters.xds._ebrim import parse_submit_objects
from mappings.xds_to_documentreference import documententry_to_documentreference

# The submissions are those of the integration tests (hand-written metadata + a real KOS).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.xds.conftest import AFFINITY, new_submission
from tests.integration.xds.test_xds_exchange import (
    APPROVED,
    FIND_DOCUMENTS,
    stored_query_xml,
)
from tests.integration.xds.test_xds_rad69 import RAD69, ct, request_body

RESULTS = Path(__file__).parent / "results"


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 2),
    }


def create_patient(client: httpx.Client, mrn: str) -> str:
    r = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": f"urn:oid:{AFFINITY}", "value": mrn}],
        },
    )
    r.raise_for_status()
    return f"Patient/{r.json()['id']}"


def iti41_rate(client: httpx.Client, count: int) -> dict[str, Any]:
    """ITI-41 one after the other, each a fresh patient's 50-instance KOS over MTOM."""
    submissions = [new_submission(instances=50) for _ in range(count)]
    for s in submissions:
        create_patient(client, s.patient_mrn)
    started = time.perf_counter()
    for s in submissions:
        content_type, body = s.mtom()
        r = client.post("/xds/repository", content=body, headers={"Content-Type": content_type})
        if r.status_code != 200 or b"ResponseStatusType:Success" not in r.content:
            raise SystemExit(f"ITI-41 failed: {r.status_code} {r.text[:500]}")
    seconds = time.perf_counter() - started
    return {"submissions": count, "per_s": round(count / seconds, 1),
            "kos_bytes": len(submissions[0].document)}  # fmt: skip


def fill_registry(client: httpx.Client, entries: int, per_patient: int) -> list[str]:
    """``entries`` DocumentReferences over ``entries / per_patient`` patients, by transactions."""
    template = parse_submit_objects(new_submission().body).entries[0]
    mrns: list[str] = []
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        if batch:
            r = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction",
                                           "entry": list(batch)})  # fmt: skip
            r.raise_for_status()
            batch.clear()

    for n in range(0, entries, per_patient):
        mrn = f"BENCH-{n // per_patient}"
        mrns.append(mrn)
        who = create_patient(client, mrn)
        for _ in range(per_patient):
            entry = replace(template, entry_uuid=f"urn:uuid:{uuid.uuid4()}",
                            unique_id=f"2.25.{uuid.uuid4().int}")  # fmt: skip
            doc = documententry_to_documentreference(entry, patient=who, content_url="Binary/none")
            batch.append(
                {"resource": doc, "request": {"method": "POST", "url": "DocumentReference"}}
            )
            if len(batch) >= 500:
                flush()
    flush()
    return mrns


def find_documents_latency(client: httpx.Client, mrns: list[str], queries: int) -> dict[str, Any]:
    samples = []
    for _ in range(queries):
        mrn = random.choice(mrns)
        envelope = stored_query_xml(FIND_DOCUMENTS, {
            "$XDSDocumentEntryPatientId": f"'{mrn}^^^&amp;{AFFINITY}&amp;ISO'",
            "$XDSDocumentEntryStatus": f"('{APPROVED}')",
        })  # fmt: skip
        started = time.perf_counter()
        r = client.post("/xds/registry", content=envelope,
                        headers={"Content-Type": "application/soap+xml"})  # fmt: skip
        samples.append(time.perf_counter() - started)
        if b"ResponseStatusType:Success" not in r.content:
            raise SystemExit(f"ITI-18 failed: {r.text[:500]}")
    return {"queries": queries, **percentiles(samples)}


def rad69_rate(client: httpx.Client, repository: str, instances: int, side: int) -> dict[str, Any]:
    """RAD-69 of a whole study (one request, MTOM answer) beside WADO-RS of the same study."""
    from pydicom.uid import generate_uid

    study, series = generate_uid(), generate_uid()
    made = [ct("BENCH-RAD69", study, series, n, side=side) for n in range(1, instances + 1)]
    boundary = "BenchBoundary"
    for start in range(0, len(made), 50):
        body = (
            b"".join(
                f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                + i.data
                + b"\r\n"
                for i in made[start : start + 50]
            )
            + f"--{boundary}--\r\n".encode()
        )
        r = client.post(
            "/dicomweb/studies",
            content=body,
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'
            },
        )
        r.raise_for_status()
    documents = [(study, series, repository, i.sop) for i in made]
    envelope = (
        '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:wsa="http://www.w3.org/2005/08/addressing"><env:Header>'
        f"<wsa:Action>{RAD69}</wsa:Action><wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>"
        f"</env:Header><env:Body>{request_body(documents, ['1.2.840.10008.1.2.1'])}</env:Body>"
        "</env:Envelope>"
    ).encode()

    def timed(method: str, url: str, **kwargs: Any) -> tuple[float, int]:
        started, size = time.perf_counter(), 0
        with client.stream(method, url, **kwargs) as r:
            r.raise_for_status()
            for chunk in r.iter_bytes():
                size += len(chunk)
        return time.perf_counter() - started, size

    rad69 = [timed("POST", "/xds/imaging", content=envelope,
                   headers={"Content-Type": "application/soap+xml"}) for _ in range(3)]  # fmt: skip
    wado = [
        timed(
            "GET",
            f"/dicomweb/studies/{study}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        )
        for _ in range(3)
    ]
    rad69_best = min(rad69)
    wado_best = min(wado)
    rad69_mb_s = rad69_best[1] / 1e6 / rad69_best[0]
    wado_mb_s = wado_best[1] / 1e6 / wado_best[0]
    return {
        "instances": instances,
        "mb": round(rad69_best[1] / 1e6, 1),
        "mb_per_s": round(rad69_mb_s, 1),
        "wado_rs_mb_per_s": round(wado_mb_s, 1),
        "ratio_rad69_vs_wado_rs": round(rad69_mb_s / wado_mb_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--submissions", type=int, default=200)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--per-patient", type=int, default=10)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--side", type=int, default=256, help="CT rows = columns (128 KB at 256)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pixelhub-xds-bench-"))
    hub = PixelHub(workdir, PIXELHUB_CHANNELS="xds,dicom,dicomweb",
                   PIXELHUB_DICOM_WEB_MAX_STORE_BYTES=str(1 << 30))  # fmt: skip
    results: dict[str, Any] = {"machine": platform.platform(), "cpus": os.cpu_count()}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{hub.http}", timeout=600,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as client:  # fmt: skip
            results["iti41"] = iti41_rate(client, args.submissions)
            started = time.perf_counter()
            mrns = fill_registry(client, args.entries, args.per_patient)
            results["registry_fill"] = {
                "entries": args.entries,
                "per_s": round(args.entries / (time.perf_counter() - started), 1),
            }
            results["iti18_find_documents"] = find_documents_latency(client, mrns, args.queries)
            repository = json.loads((hub.data / "xds-ids.json").read_text())["repository"]
            results["rad69"] = rad69_rate(client, repository, args.instances, args.side)
    finally:
        hub.stop()
    text = json.dumps(results, indent=2)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "xds_exchange.json").write_text(text)


if __name__ == "__main__":
    main()
