"""Cost of SMART access-token validation (issue 6, "Benchmark"): an ImagingStudy search against a
real ``pixelhub serve`` with a static token vs. a SMART JWT access token (RS384, issued by the
hub's own token endpoint to a client registered with ``pixelhub clients add``), in the same run,
in interleaved blocks so drift in machine load hits both alike. Prints requests/s, median and p95
latency for each, the per-request overhead in ms (aim: < 0.3 ms), and the in-process cost of
``AuthorizationServer.verify_access_token`` alone. Writes JSON to ``benchmarks/results/``.

    python benchmarks/smart_overhead.py --studies 200 --requests 2000

Not a test: it checks nothing, it measures. On a shared, loaded machine the HTTP difference is
noisy; the in-process figure is the stable one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import fhir_crud
from fhir_crud import TOKEN

DCM = "http://dicom.nema.org/resources/ontology/DCM"


def start_hub(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``fhir_crud.start_hub`` with access tokens valid for the whole run."""
    os.environ["PIXELHUB_ACCESS_TOKEN_LIFETIME"] = "3600"
    return fhir_crud.start_hub(data_dir)


def register_client(data_dir: Path) -> tuple[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "hub", "clients", "add", "bench",
         "--type", "confidential-symmetric", "--scope", "system/ImagingStudy.rs",
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    return fields["client_id"], fields["client_secret"]


def seed(client: httpx.Client, studies: int) -> str:
    """``studies`` ImagingStudies of one patient; returns the patient id."""
    admin = {"Authorization": f"Bearer {TOKEN}"}
    patient = {"resourceType": "Patient", "name": [{"family": "Bench"}], "gender": "other"}
    pid: str = client.post("/fhir/Patient", json=patient, headers=admin).json()["id"]
    for start in range(0, studies, 100):
        entries = [
            {
                "resource": {
                    "resourceType": "ImagingStudy",
                    "status": "available",
                    "subject": {"reference": f"Patient/{pid}"},
                    "started": f"2024-01-{1 + i % 28:02d}T10:00:00Z",
                    "modality": [{"system": DCM, "code": "CT" if i % 2 else "MR"}],
                },
                "request": {"method": "POST", "url": "ImagingStudy"},
            }
            for i in range(start, min(start + 100, studies))
        ]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        r = client.post("/fhir", json=bundle, headers=admin)
        r.raise_for_status()
    return pid


def timed(client: httpx.Client, params: dict[str, str], bearer: str, n: int) -> list[float]:
    headers = {"Authorization": f"Bearer {bearer}"}
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get("/fhir/ImagingStudy", params=params, headers=headers)
        samples.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise SystemExit(f"search failed: {r.status_code} {r.text[:200]}")
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "requests_per_s": round(len(samples) / sum(samples), 1),
        "mean_ms": round(statistics.fmean(samples) * 1000, 3),
        "median_ms": round(statistics.median(samples) * 1000, 3),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 3),
    }


def in_process_verify(data_dir: Path, n: int = 5000) -> tuple[float, float]:
    """Microseconds per ``verify_access_token`` call with the keys of the benchmark's data dir:
    a token seen before (the usual case: an app reuses its token until it expires), and a token
    seen for the first time (signature and claims checked)."""
    from hub.smart import AuthorizationServer, ClientStore, Endpoints, KeyStore

    server = AuthorizationServer(
        KeyStore(data_dir / "keys"),
        ClientStore(data_dir / "smart" / "clients.json"),
        Endpoints(issuer="http://bench/auth", fhir_base="http://bench/fhir"),
    )
    token = server.issue_access_token("bench", "system/ImagingStudy.rs")
    server.verify_access_token(token)
    t0 = time.perf_counter()
    for _ in range(n):
        server.verify_access_token(token)
    seen = (time.perf_counter() - t0) / n * 1e6
    fresh = [server.issue_access_token("bench", "system/ImagingStudy.rs") for _ in range(200)]
    t0 = time.perf_counter()
    for each in fresh:
        server.verify_access_token(each)
    return seen, (time.perf_counter() - t0) / len(fresh) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000, help="per token kind")
    parser.add_argument("--block", type=int, default=100, help="requests per interleaved block")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pixelhub-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        client_id, secret = register_client(data_dir)
        proc, url = start_hub(data_dir)
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                pid = seed(client, args.studies)
                r = client.post(
                    "/auth/token",
                    data={"grant_type": "client_credentials", "scope": "system/ImagingStudy.rs"},
                    auth=(client_id, secret),
                )
                r.raise_for_status()
                jwt_token = r.json()["access_token"]
                params = {"patient": pid, "modality": "CT", "_count": "10"}
                timed(client, params, TOKEN, 200)  # warm-up, both paths
                timed(client, params, jwt_token, 200)
                static: list[float] = []
                smart: list[float] = []
                for _ in range(max(1, args.requests // args.block)):
                    static += timed(client, params, TOKEN, args.block)
                    smart += timed(client, params, jwt_token, args.block)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        verify_seen_us, verify_first_us = in_process_verify(data_dir)

    result: dict[str, Any] = {
        "machine": os.uname().nodename,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "studies": args.studies,
        "requests_per_kind": len(static),
        "static_token": summary(static),
        "smart_jwt": summary(smart),
        "overhead_ms_mean": round((statistics.fmean(smart) - statistics.fmean(static)) * 1000, 3),
        "overhead_ms_median": round(
            (statistics.median(smart) - statistics.median(static)) * 1000, 3
        ),
        "verify_access_token_us": round(verify_seen_us, 1),
        "verify_access_token_first_use_us": round(verify_first_us, 1),
    }
    print(f"ImagingStudy?patient=…&modality=CT&_count=10, {len(static)} requests per token kind")
    print(f"{'':14}{'req/s':>9}{'median ms':>11}{'p95 ms':>9}")
    for name in ("static_token", "smart_jwt"):
        row = result[name]
        print(f"{name:14}{row['requests_per_s']:>9}{row['median_ms']:>11}{row['p95_ms']:>9}")
    print(
        f"overhead per request: {result['overhead_ms_mean']} ms (mean), "
        f"{result['overhead_ms_median']} ms (median); "
        f"verify_access_token in process: {result['verify_access_token_us']} µs "
        f"({result['verify_access_token_first_use_us']} µs on a token's first use); "
        f"load average {result['load_average'][0]:.1f} on {result['cores']} cores"
    )
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (out_dir / f"smart_overhead-{stamp}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
