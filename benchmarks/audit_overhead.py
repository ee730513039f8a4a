"""What the audit trail costs (issue 7): the same workloads with audit on and off, same run.

FHIR: a real ``pixelhub serve`` loaded with ``--size`` ImagingStudy/DocumentReference resources,
then ``--rounds`` ImagingStudy searches (patient + modality + date) and Patient reads, one client,
measured with ``PIXELHUB_AUDIT_ENABLED=false`` and ``=true`` in alternating order (``--repeat``
times each; the best rate of each mode counts). With ``--ingest``, the DICOM and HL7 ingest
benchmarks run twice each, audit off and on, and their rates are compared too. Prints the ratios
on/off (the issue's aim: >= 0.95) and writes JSON to ``benchmarks/results/``.

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

RESULTS = Path(__file__).parent / "results"


def fhir_round(audit: bool, size: int, rounds: int) -> dict[str, Any]:
    os.environ["PIXELHUB_AUDIT_ENABLED"] = "true" if audit else "false"
    data_dir = Path(tempfile.mkdtemp(prefix=f"pixelhub-audit-{'on' if audit else 'off'}-"))
    proc, url = start_hub(data_dir)
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
            for name, urls in (("search", queries), ("read", reads)):
                samples = []
                start = time.perf_counter()
                for u in urls:
                    t = time.perf_counter()
                    client.get(u).raise_for_status()
                    samples.append(time.perf_counter() - t)
                out[name] = {
                    "per_s": round(len(urls) / (time.perf_counter() - start), 1),
                    **percentiles(samples),
                }
            return out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def ingest_rate(script: str, args: list[str], audit: bool) -> float:
    """Run one ingest benchmark; its newest result file's best msg/s or inst/s."""
    env = {**os.environ, "PIXELHUB_AUDIT_ENABLED": "true" if audit else "false"}
    before = set(RESULTS.glob(f"{script}-*.json"))
    subprocess.run(
        [sys.executable, str(Path(__file__).parent / f"{script}.py"), *args], env=env, check=True
    )
    (newest,) = set(RESULTS.glob(f"{script}-*.json")) - before
    return best_rate(json.loads(newest.read_text()))


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
    if args.ingest:
        for script, script_args in (
            ("hl7_ingest", ["--messages", "3000", "--connections", "1"]),
            (
                "dicom_ingest",
                [
                    "--instances",
                    "1000",
                    "--sizes",
                    "64",
                    "--associations",
                    "1",
                    "--receivers",
                    "pixelhub",
                    "--no-probes",
                ],
            ),
        ):
            off = ingest_rate(script, script_args, audit=False)
            on = ingest_rate(script, script_args, audit=True)
            result[script] = {"off_per_s": off, "on_per_s": on}
            ratios[script] = round(on / off, 3)
    result["ratios_on_over_off"] = ratios
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"audit_overhead-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"{'workload':<16}{'audit off /s':>14}{'audit on /s':>14}{'on/off':>8}")
    for k in ("search", "read"):
        print(f"{'fhir ' + k:<16}{best['off'][k]:>14}{best['on'][k]:>14}{ratios['fhir_' + k]:>8}")
    for script in ("hl7_ingest", "dicom_ingest"):
        if script in result:
            r = result[script]
            print(f"{script:<16}{r['off_per_s']:>14.1f}{r['on_per_s']:>14.1f}{ratios[script]:>8}")
    print(f"(aim: on/off >= 0.95)  written to {out}")


if __name__ == "__main__":
    main()
