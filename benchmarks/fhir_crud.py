"""FHIR CRUD and search benchmark against a real ``pixelhub serve`` process (issue 2).

Loads ImagingStudy and DocumentReference resources (with their Patients) in 100-entry transaction
Bundles up to each size, then measures at that size: creates/s (single POSTs and 100-entry
transactions), read latency, and the latency of two typical searches:
``ImagingStudy?patient=…&modality=…&started=ge…`` and ``DocumentReference?patient=…&type=…``.
Prints a table and writes JSON to ``benchmarks/results/``. Peak RSS is the server's VmHWM.

    python benchmarks/fhir_crud.py --sizes 10000 100000 1000000

Not a test: it checks nothing, it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

TOKEN = "bench-token"
MODALITIES = ["CT", "MR", "US", "CR", "DX", "MG", "NM", "PT", "XA", "SM", "XC", "OP", "ES", "ECG"]
DOC_TYPES = ["18748-4", "72170-4", "11502-2", "34133-9"]
DCM = "http://dicom.nema.org/resources/ontology/DCM"


def start_hub(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {
        **os.environ,
        "PIXELHUB_AUTH_TOKENS": TOKEN,
        "PIXELHUB_LOG_LEVEL": "warning",
        "PIXELHUB_CHANNELS": "http",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--http-port", "0", "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    ports = data_dir / "ports.json"
    while not ports.exists():
        if proc.poll() is not None:
            raise SystemExit("hub failed to start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{json.loads(ports.read_text())['http']}"


def status_mb(pid: int, key: str) -> float:
    """A ``/proc/<pid>/status`` figure: ``VmHWM`` is peak RSS, including the database's memory-
    mapped pages (reclaimable page cache); ``RssAnon`` is the process's own heap now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 2),
    }


class Generator:
    """Realistic-ish data: patients with several studies over ten years, many modalities."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.patients: list[str] = []
        self.n = 0

    def bundle(self, size: int = 100) -> dict[str, Any]:
        entries: list[dict[str, Any]] = []
        while len(entries) < size:
            self.n += 1
            if not self.patients or self.rng.random() < 0.15:
                pid = f"bench-p{len(self.patients)}"
                self.patients.append(pid)
                entries.append(
                    {
                        "resource": {
                            "resourceType": "Patient",
                            "id": pid,
                            "identifier": [{"system": "urn:bench:mrn", "value": pid}],
                            "name": [
                                {"family": f"Family{self.rng.randint(0, 5000)}", "given": ["Pat"]}
                            ],
                            "gender": self.rng.choice(["male", "female"]),
                            "birthDate": f"{self.rng.randint(1930, 2020)}-0{self.rng.randint(1, 9)}-1{self.rng.randint(0, 9)}",
                        },
                        "request": {"method": "PUT", "url": f"Patient/{pid}"},
                    }
                )
                continue
            pid = self.rng.choice(self.patients[-2000:])
            year = self.rng.randint(2016, 2025)
            date = f"{year}-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}T10:00:00Z"
            if self.rng.random() < 0.7:
                mod = self.rng.choice(MODALITIES)
                uid = f"1.2.826.0.1.3680043.99.{self.n}"
                resource: dict[str, Any] = {
                    "resourceType": "ImagingStudy",
                    "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
                    "status": "available",
                    "subject": {"reference": f"Patient/{pid}"},
                    "started": date,
                    "modality": [{"system": DCM, "code": mod}],
                    "description": f"{mod} study",
                    "series": [
                        {"uid": f"{uid}.{s}", "number": s, "modality": {"system": DCM, "code": mod}}
                        for s in range(1, 4)
                    ],
                }
            else:
                resource = {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "type": {
                        "coding": [
                            {"system": "http://loinc.org", "code": self.rng.choice(DOC_TYPES)}
                        ]
                    },
                    "subject": {"reference": f"Patient/{pid}"},
                    "date": date,
                    "content": [
                        {"attachment": {"contentType": "application/pdf", "url": "Binary/x"}}
                    ],
                }
            entries.append(
                {
                    "resource": resource,
                    "request": {"method": "POST", "url": resource["resourceType"]},
                }
            )
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def load(client: httpx.Client, gen: Generator, target: int, loaded: int) -> tuple[int, float]:
    start = time.perf_counter()
    count = 0
    while loaded + count < target:
        r = client.post("/fhir", json=gen.bundle())
        r.raise_for_status()
        count += 100
    return loaded + count, count / (time.perf_counter() - start) if count else 0.0


def measure(client: httpx.Client, gen: Generator, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    start = time.perf_counter()
    ids = []
    for _ in range(rounds):
        r = client.post(
            "/fhir/Patient",
            json={"resourceType": "Patient", "name": [{"family": "Single"}]},
            headers={"Prefer": "return=minimal"},
        )
        ids.append(r.headers["location"].split("/")[-3])
    out["single_creates_per_s"] = round(rounds / (time.perf_counter() - start), 1)
    start = time.perf_counter()
    tx_rounds = max(3, rounds // 100)
    for _ in range(tx_rounds):
        client.post("/fhir", json=gen.bundle()).raise_for_status()
    out["transaction_resources_per_s"] = round(tx_rounds * 100 / (time.perf_counter() - start), 1)
    samples = []
    for pid in ids:
        t = time.perf_counter()
        client.get(f"/fhir/Patient/{pid}").raise_for_status()
        samples.append(time.perf_counter() - t)
    out["read"] = percentiles(samples)
    rng = random.Random(11)
    samples, hits = [], 0
    for _ in range(rounds):
        pid = rng.choice(gen.patients)
        q = f"/fhir/ImagingStudy?patient={pid}&modality={rng.choice(MODALITIES)}&started=ge{rng.randint(2016, 2024)}-01-01"
        t = time.perf_counter()
        r = client.get(q)
        samples.append(time.perf_counter() - t)
        hits += r.json().get("total", 0)
    out["search_imagingstudy"] = {**percentiles(samples), "mean_hits": round(hits / rounds, 2)}
    samples, hits = [], 0
    for _ in range(rounds):
        pid = rng.choice(gen.patients)
        q = f"/fhir/DocumentReference?patient={pid}&type=http://loinc.org|{rng.choice(DOC_TYPES)}"
        t = time.perf_counter()
        r = client.get(q)
        samples.append(time.perf_counter() - t)
        hits += r.json().get("total", 0)
    out["search_documentreference"] = {**percentiles(samples), "mean_hits": round(hits / rounds, 2)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="pixelhub-bench-"))
    proc, url = start_hub(data_dir)
    results: dict[str, Any] = {"machine": os.uname().nodename, "cores": os.cpu_count(), "sizes": {}}
    gen = Generator()
    loaded = 0
    try:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
        ) as client:
            for size in args.sizes:
                loaded, load_rate = load(client, gen, size, loaded)
                row = {
                    "load_resources_per_s": round(load_rate, 1),
                    **measure(client, gen, args.rounds),
                }
                row["server_peak_rss_mb"] = round(status_mb(proc.pid, "VmHWM"), 1)
                row["server_rss_anon_mb"] = round(status_mb(proc.pid, "RssAnon"), 1)
                row["db_mb"] = round(
                    sum(f.stat().st_size for f in data_dir.glob("pixelhub.db*")) / 2**20, 1
                )
                results["sizes"][str(size)] = row
                print(f"{size:>9} resources: {json.dumps(row)}", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    out_file = out_dir / f"fhir_crud-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out_file.write_text(json.dumps(results, indent=1))
    print(f"written to {out_file}")


if __name__ == "__main__":
    main()
