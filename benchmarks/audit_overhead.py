"""What the audit trail costs (issue 7): the same workloads with audit on and off, same run.

FHIR: a real ``pixelhub serve`` (on one core, the client on the others) loaded with ``--size``
ImagingStudy/DocumentReference resources, then ``--rounds`` ImagingStudy searches (patient +
modality + date) and Patient reads, one client,
measured with ``PIXELHUB_AUDIT_ENABLED=false`` and ``=true`` in alternating order (``--repeat``
times each; the best rate of each mode counts, the run least disturbed by the rest of the
machine). With ``--ingest``, the DICOM and HL7 ingest benchmarks run ``--repeat`` times in each
mode, alternating too. Prints the ratios on/off (the issue's aim: >= 0.95) and, beside them, the
ratio of the hub's CPU time per request or message off/on, which other load on the machine
disturbs less (for FHIR it includes the audit indexer's work in the second after the requests),
and writes JSON to ``benchmarks/results/``.

    python benchmarks/audit_overhead.py --size 10000 --rounds 1000 --ingest

Not a test: it checks nothing, it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from fhir_crud import MODALITIES, TOKEN, Generator, percentiles, start_hub
from hl7_ingest import cpu_seconds, pin_apart

RESULTS = Path(__file__).parent / "results"
# The ingest benchmarks and their arguments: one connection or association each
INGEST: list[tuple[str, list[str]]] = [
    ("hl7_ingest", ["--messages", "3000", "--connections", "1"]),
    (
        "dicom_ingest",
        "--instances 1000 --sizes 64 --associations 1 --receivers pixelhub --no-probes".split(),
    ),
]


def fhir_round(audit: bool, size: int, rounds: int) -> dict[str, Any]:
    os.environ["PIXELHUB_AUDIT_ENABLED"] = "true" if audit else "false"
    data_dir = Path(tempfile.mkdtemp(prefix=f"pixelhub-audit-{'on' if audit else 'off'}-"))
    proc, url = start_hub(data_dir)
    pin_apart(proc.pid)
    gen = Generator()
    try:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
        ) as client:
            for _ in range(size // 100):
                client.post("/fhir", json=gen.bundle()).raise_for_status()
            rng = random.Random(5)
            queries = [
                f"/fhir/ImagingStudy?patient={rng.choice(gen.patients)}"
                f"&modality={rng.choice(MODALITIES)}&started=ge{rng.randint(2016, 2024)}-01-01"
                for _ in range(rounds)
            ]
            reads = [f"/fhir/Patient/{rng.choice(gen.patients)}" for _ in range(rounds)]
            out: dict[str, Any] = {}
            time.sleep(1.0)  # the load's own indexing and projections are done
            for name, urls in (("search", queries), ("read", reads)):
                samples = []
                cpu = cpu_seconds(proc.pid)
                start = time.perf_counter()
                for u in urls:
                    t = time.perf_counter()
                    client.get(u).raise_for_status()
                    samples.append(time.perf_counter() - t)
                elapsed = time.perf_counter() - start
                time.sleep(1.0)  # the audit indexer's next poll (0.5 s) is in the CPU figure
                out[name] = {
                    "per_s": round(len(urls) / elapsed, 1),
                    "server_cpu_ms": round((cpu_seconds(proc.pid) - cpu) * 1000 / len(urls), 3),
                    **percentiles(samples),
                }
            return out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def ingest_run(script: str, args: list[str], audit: bool) -> dict[str, float]:
    """Run one ingest benchmark; from its newest result file, PixelHub's best msg/s or inst/s
    and, where the benchmark reports it, the hub's least CPU time per message."""
    env = {**os.environ, "PIXELHUB_AUDIT_ENABLED": "true" if audit else "false"}
    before = set(RESULTS.glob(f"{script}-*.json"))
    subprocess.run(
        [sys.executable, str(Path(__file__).parent / f"{script}.py"), *args], env=env, check=True
    )
    (newest,) = set(RESULTS.glob(f"{script}-*.json")) - before
    result = json.loads(newest.read_text())
    cpu = [r["server_cpu_ms_per_msg"] for r in result.get("runs", [])]
    return {"per_s": best_rate(result), **({"server_cpu_ms": min(cpu)} if cpu else {})}


def best_rate(result: Any) -> float:
    """PixelHub's best rate in an ingest benchmark's JSON: ``inst_per_s`` of the DICOM rows whose
    receiver is PixelHub, ``messages_per_s`` of the HL7 runs."""
    rates = [r["inst_per_s"] for r in result.get("rows", []) if r.get("receiver") == "pixelhub"]
    rates += [r["messages_per_s"] for r in result.get("runs", [])]
    return max(rates) if rates else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--ingest", action="store_true", help="also DICOM and HL7 ingest")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for i in range(args.repeat):
        for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
            runs[mode].append(fhir_round(mode == "on", args.size, args.rounds))
    best = {
        mode: {k: max(r[k]["per_s"] for r in rs) for k in ("search", "read")}
        for mode, rs in runs.items()
    }
    result: dict[str, Any] = {
        "machine": os.uname().nodename,
        "cores": os.cpu_count(),
        **args.__dict__,
    }
    result["fhir"] = {"runs": runs, "best_per_s": best}
    ratios = {f"fhir_{k}": round(best["on"][k] / best["off"][k], 3) for k in ("search", "read")}
    cpu_ratios = {
        f"fhir_{k}": round(
            min(r[k]["server_cpu_ms"] for r in runs["off"])
            / min(r[k]["server_cpu_ms"] for r in runs["on"]),
            3,
        )
        for k in ("search", "read")
    }
    if args.ingest:
        for script, script_args in INGEST:
            modes: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
            for i in range(args.repeat):
                for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                    modes[mode].append(ingest_run(script, script_args, audit=mode == "on"))
            off = max(r["per_s"] for r in modes["off"])
            on = max(r["per_s"] for r in modes["on"])
            result[script] = {"off_per_s": off, "on_per_s": on, "runs": modes}
            ratios[script] = round(on / off, 3)
            if all("server_cpu_ms" in r for r in modes["off"] + modes["on"]):
                cpu_off = min(r["server_cpu_ms"] for r in modes["off"])
                cpu_on = min(r["server_cpu_ms"] for r in modes["on"])
                cpu_ratios[script] = round(cpu_off / cpu_on, 3)
    result["ratios_on_over_off"] = ratios
    result["cpu_ratios_off_over_on"] = cpu_ratios
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"audit_overhead-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"{'workload':<16}{'audit off /s':>14}{'audit on /s':>14}{'on/off':>8}{'cpu off/on':>12}")
    rows = [(f"fhir_{k}", best["off"][k], best["on"][k]) for k in ("search", "read")]
    rows += [(n, result[n]["off_per_s"], result[n]["on_per_s"]) for n, _ in INGEST if n in result]
    for name, off_rate, on_rate in rows:
        cpu_ratio = cpu_ratios.get(name, "")
        print(f"{name:<16}{off_rate:>14.1f}{on_rate:>14.1f}{ratios[name]:>8}{cpu_ratio:>12}")
    print(f"(aim: on/off >= 0.95)  written to {out}")


if __name__ == "__main__":
    main()
