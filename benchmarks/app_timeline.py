"""First timeline paint of the imaging timeline app (issue 13: under 1.5 s for a patient with 200
items on this machine).

A real ``pixelhub serve`` holds one patient with ``--items`` timeline items (studies, documents
and reports in equal parts, with their orders and encounters), the app registered as a public
SMART client and a clinician user (the CLI, as the README says). Headless Debian chromium signs in
once (standalone launch, PixelHub's patient picker); then each run navigates to ``/app/`` with
the token already in ``sessionStorage`` and reads the ``timeline-first-paint`` performance mark
the app sets at the first frame after the items are rendered: its ``startTime`` is the time
from navigation start to the first timeline paint (HTML, scripts, ``config.json``, the FHIR
searches and the render of every item). Two series: with the browser cache (hashed assets are
cached for a year, as in real use) and with the cache disabled (every asset fetched again).
Prints JSON and writes ``benchmarks/results/app_timeline.json``.

    .venv/bin/python benchmarks/app_timeline.py --items 200 --runs 20

Needs the app built (``scripts/build-app``). Run it on a quiet machine: it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hub.http.app_routes import APP_SCOPES  # noqa: E402
from tests.app.support import sign_in  # noqa: E402
from tests.support.browser import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402

TOKEN = "bench-token"
USER, PASSWORD = "bench-user", "bench-password-1"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
MODALITIES = ["CT", "MR", "US", "MG", "XC", "SM", "OP", "ES"]


def cli(data_dir: Path, *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hub", *args, "--data-dir", str(data_dir)],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return done.stdout


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_hub(workdir: Path) -> tuple[subprocess.Popen[bytes], str, Any]:
    data = workdir / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cli(
        data,
        "users",
        "add",
        USER,
        "--role",
        "clinician",
        "--fhir-user",
        "Practitioner/b1",
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )
    out = cli(
        data,
        "clients",
        "add",
        "timeline",
        "--type",
        "public",
        "--redirect-uri",
        f"{url}/app/",
        "--scope",
        " ".join(APP_SCOPES),
    )
    client_id = out.split("client_id: ", 1)[1].split()[0]
    env = {
        **os.environ,
        "PIXELHUB_AUTH_TOKENS": TOKEN,
        "PIXELHUB_CHANNELS": "dicomweb,media",
        "PIXELHUB_APP_CLIENT_ID": client_id,
        "PIXELHUB_ACCESS_TOKEN_LIFETIME": "3600",
    }
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--http-port", str(port), "--data-dir", str(data)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 60
    while not (data / "ports.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((workdir / "serve.log").read_text(errors="replace")[-3000:])
        time.sleep(0.05)
    return proc, url, log


def seed(url: str, items: int) -> str:
    """One patient with ``items`` timeline items: a third each studies, documents, reports
    (each report about a study and based on its order), plus encounters and orders."""
    admin = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, headers=admin, timeout=120) as c:
        patient = {
            "resourceType": "Patient",
            "name": [{"family": "Bench", "given": ["Timeline"]}],
            "birthDate": "1970-01-01",
            "gender": "female",
        }
        pid = c.post("/fhir/Patient", json=patient).json()["id"]
        subject = {"reference": f"Patient/{pid}"}
        entries: list[dict[str, Any]] = []
        studies = items // 3
        documents = items // 3
        reports = items - studies - documents

        def add(resource: dict[str, Any], full_url: str | None = None) -> None:
            entry: dict[str, Any] = {
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
            if full_url:
                entry["fullUrl"] = full_url
            entries.append(entry)

        for n in range(10):
            add(
                {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "subject": subject,
                    "class": {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "AMB",
                    },
                    "type": [{"text": f"Clinic visit {n}"}],
                    "period": {"start": f"2025-{1 + n:02d}-01T09:00:00Z"},
                },
                f"urn:uuid:00000000-0000-4000-8000-{n:012d}",
            )
        for n in range(studies):
            modality = MODALITIES[n % len(MODALITIES)]
            day = f"20{20 + n % 6}-{1 + n % 12:02d}-{1 + n % 28:02d}"
            order = f"urn:uuid:00000000-0000-4000-9000-{n:012d}"
            add(
                {
                    "resourceType": "ServiceRequest",
                    "status": "completed",
                    "intent": "order",
                    "subject": subject,
                    "code": {"text": f"{modality} exam {n}"},
                    "identifier": [
                        {
                            "type": {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                        "code": "ACSN",
                                    }
                                ]
                            },
                            "system": "urn:bench:acsn",
                            "value": f"A{n}",
                        }
                    ],
                },
                order,
            )
            add(
                {
                    "resourceType": "ImagingStudy",
                    "status": "available",
                    "subject": subject,
                    "identifier": [
                        {
                            "system": "urn:dicom:uid",
                            "value": f"urn:oid:1.2.826.0.1.3680043.99.{n + 1}",
                        }
                    ],
                    "started": f"{day}T10:00:00Z",
                    "description": f"{modality} study {n}",
                    "modality": [{"system": DCM, "code": modality}],
                    "basedOn": [{"reference": order}],
                    "encounter": {"reference": f"urn:uuid:00000000-0000-4000-8000-{n % 10:012d}"},
                    "numberOfSeries": 1,
                    "numberOfInstances": 1,
                    "series": [
                        {
                            "uid": f"1.2.826.0.1.3680043.99.{n + 1}.1",
                            "modality": {"system": DCM, "code": modality},
                            "bodySite": {
                                "system": "http://snomed.info/sct",
                                "code": "51185008",
                                "display": "Thorax",
                            },
                            "performer": [{"actor": {"display": "Tech Terry"}}],
                        }
                    ],
                },
                f"urn:uuid:00000000-0000-4000-a000-{n:012d}",
            )
        for n in range(documents):
            add(
                {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "subject": subject,
                    "description": f"Clinical photo {n}",
                    "date": f"2024-{1 + n % 12:02d}-{1 + n % 28:02d}T12:00:00Z",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "urn:pixelhub:ology",
                                    "code": "dermatology",
                                    "display": "Dermatology",
                                }
                            ]
                        }
                    ],
                    "content": [
                        {"attachment": {"contentType": "image/jpeg", "url": f"urn:bench:{n}"}}
                    ],
                }
            )
        for n in range(reports):
            study = n % max(studies, 1)
            add(
                {
                    "resourceType": "DiagnosticReport",
                    "status": "final",
                    "subject": subject,
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                                    "code": "RAD",
                                }
                            ]
                        }
                    ],
                    "code": {"text": f"Report {n}"},
                    "conclusion": f"Finding {n}: nothing acute.",
                    "effectiveDateTime": f"2023-{1 + n % 12:02d}-{1 + n % 28:02d}T15:00:00Z",
                    "imagingStudy": [
                        {"reference": f"urn:uuid:00000000-0000-4000-a000-{study:012d}"}
                    ],
                    "basedOn": [{"reference": f"urn:uuid:00000000-0000-4000-9000-{study:012d}"}],
                    "performer": [{"display": "Dr Rita Reader"}],
                }
            )
        r = c.post(
            "/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}
        )
        r.raise_for_status()
    return str(pid)


def first_sign_in(page: Page, url: str) -> None:
    page.goto(f"{url}/app/")
    sign_in(page, "Timeline Bench (born 1970-01-01)", user=USER, password=PASSWORD)
    page.wait_for_selector("html[data-timeline-painted]", timeout=60000)


def first_paint(page: Page, url: str) -> tuple[float, int]:
    page.goto(f"{url}/app/")
    page.wait_for_selector("html[data-timeline-painted]", timeout=60000)
    mark = page.evaluate(
        "() => { const m = performance.getEntriesByName('timeline-first-paint')[0];"
        " return [m.startTime, m.detail.items]; }"
    )
    return float(mark[0]), int(mark[1])


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(p95, 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    dist = ROOT / "app" / "dist"
    if not (dist / "index.html").is_file():
        raise SystemExit("app/dist is not built: run scripts/build-app")
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, log = start_hub(Path(tmp))
        try:
            seed(url, args.items)
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
                )
                page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
                first_sign_in(page, url)
                first_paint(page, url)  # warm-up
                warm: list[float] = []
                shown = 0
                for _ in range(args.runs):
                    ms, shown = first_paint(page, url)
                    warm.append(ms)
                cdp = page.context.new_cdp_session(page)
                cdp.send("Network.enable")
                cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
                cold = [first_paint(page, url)[0] for _ in range(args.runs)]
                browser.close()
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    assets = {p.name: p.stat().st_size for p in sorted((dist / "assets").iterdir())}
    result = {
        "benchmark": "app_timeline",
        "items": args.items,
        "items_painted": shown,
        "runs": args.runs,
        "aim_ms": 1500,
        "cached_assets": summary(warm),
        "cache_disabled": summary(cold),
        "bundle_bytes": {
            "js": sum(v for k, v in assets.items() if k.endswith(".js")),
            "css": sum(v for k, v in assets.items() if k.endswith(".css")),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "app_timeline.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
