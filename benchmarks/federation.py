"""Federated search (issue 12): p95 latency of one ``/fhir/federated/ImagingStudy`` search over
three partners, against the slowest partner's own latency for the same search.

Four ``pixelhub serve`` processes on this machine: hub A federates partners B, C and D, each
holding ``--studies`` studies of the same patient (plus A's own). Three baselines, each measured
with the same ``--queries`` searches:

- each partner alone: ``GET <partner>/fhir/ImagingStudy?patient.identifier=..`` with the
  token hub A holds there, one request at a time;
- the three partners asked at once by a bare asyncio client (what the fan-out itself costs on
  this machine, whose two cores the three partners share);
- hub A's federated search (fan-out, token cache, merge, dedup, site tags, paging snapshot).

Overhead = federated p95 - slowest partner p95; the aim is <= 20 ms.

    .venv/bin/python benchmarks/federation.py --queries 200 --studies 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx
from fhir_crud import percentiles

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hub.config import Settings
from hub.federation import BackendTokens, PartnerStore
from hub.federation.http import AiohttpPartnerHttp
from tests.integration.dicomweb.conftest import TOKEN, WebHub, start_web_hub, stop_process
from tests.integration.federation.conftest import (
    NATIONAL,
    NATIONAL_ID,
    add_partner,
    load,
)

RESULTS = Path(__file__).parent / "results"


def timed(client: httpx.Client, url: str, params: dict[str, str], queries: int) -> list[float]:
    samples = []
    for _ in range(queries):
        started = time.perf_counter()
        r = client.get(url, params=params)
        samples.append(time.perf_counter() - started)
        if r.status_code != 200:
            raise SystemExit(f"{url}: HTTP {r.status_code} {r.text[:300]}")
    return samples


def tokens_of_a(a: WebHub) -> dict[str, str]:
    store = PartnerStore(Settings(data_dir=a.data_dir).partners_file)
    tokens = BackendTokens(store.key_file)

    async def fetch() -> dict[str, str]:
        client = AiohttpPartnerHttp()
        try:
            return {p.name: await tokens.token(client, p) for p in store.enabled()}
        finally:
            await client.aclose()

    return asyncio.run(fetch())


def concurrent_partners(
    partners: dict[str, WebHub], tokens: dict[str, str], params: dict[str, str], queries: int
) -> list[float]:
    async def go() -> list[float]:
        async with httpx.AsyncClient(timeout=30) as client:
            samples = []
            for _ in range(queries):
                started = time.perf_counter()
                answers = await asyncio.gather(*[
                    client.get(f"{hub.url}/fhir/ImagingStudy", params=params,
                               headers={"Authorization": f"Bearer {tokens[name]}"})
                    for name, hub in partners.items()
                ])  # fmt: skip
                samples.append(time.perf_counter() - started)
                assert all(r.status_code == 200 for r in answers)
            return samples

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--studies", type=int, default=20, help="studies of the patient per site")
    args = parser.parse_args()
    hubs: dict[str, WebHub] = {}
    with tempfile.TemporaryDirectory(prefix="pixelhub-bench-federation-") as tmp:
        try:
            for site in "ABCD":
                hubs[site] = start_web_hub(
                    Path(tmp) / site / "data",
                    channels="dicomweb",
                    extra_env={"PIXELHUB_FEDERATION_SITE_ID": f"site-{site.lower()}",
                               "PIXELHUB_AUDIT_SYNC": "interval"},
                )  # fmt: skip
            subjects = {}
            for n, (site, hub) in enumerate(hubs.items()):
                studies = [
                    (f"1.2.{n}.{i}", "CT", f"20{10 + i % 15:02d}-01-01T00:00:00Z")
                    for i in range(args.studies)
                ]
                subjects[site] = load(hub, site if site in "ABC" else "A", studies)
            partners = {s: hubs[s] for s in "BCD"}
            for site, hub in partners.items():
                add_partner(hubs["A"], hub, site, "--identifier-system", NATIONAL,
                            "--timeout", "30")  # fmt: skip
            tokens = tokens_of_a(hubs["A"])
            direct = {
                "patient.identifier": f"{NATIONAL}|{NATIONAL_ID}",
                "_include": "ImagingStudy:endpoint",
                "_count": "200",
            }
            federated = {"patient": subjects["A"]}
            with hubs["A"].http(TOKEN) as a:
                timed(a, "/fhir/federated/ImagingStudy", federated, 20)  # warm-up
                alone = {}
                for site, hub in partners.items():
                    with httpx.Client(
                        base_url=hub.url,
                        timeout=30,
                        headers={"Authorization": f"Bearer {tokens[site]}"},
                    ) as c:
                        timed(c, "/fhir/ImagingStudy", direct, 10)
                        alone[site] = percentiles(
                            timed(c, "/fhir/ImagingStudy", direct, args.queries)
                        )  # fmt: skip
                together = percentiles(concurrent_partners(partners, tokens, direct, args.queries))
                local = percentiles(timed(a, "/fhir/ImagingStudy", federated, args.queries))
                fed_samples = timed(a, "/fhir/federated/ImagingStudy", federated, args.queries)
                fed = percentiles(fed_samples)
                total = a.get("/fhir/federated/ImagingStudy", params=federated).json()["total"]
        finally:
            for hub in hubs.values():
                stop_process(hub.process)
                hub.log.close()
    slowest = max(v["p95_ms"] for v in alone.values())
    result = {
        "benchmark": "federation",
        "machine": f"{platform.machine()} {platform.python_version()}",
        "queries": args.queries,
        "studies_per_site": args.studies,
        "merged_matches": total,
        "partners_alone": alone,
        "slowest_partner_p95_ms": slowest,
        "three_partners_at_once": together,
        "local_search_on_A": local,
        "federated_search": fed,
        "overhead_vs_slowest_partner_ms": round(fed["p95_ms"] - slowest, 2),
        "overhead_vs_partners_at_once_ms": round(fed["p95_ms"] - together["p95_ms"], 2),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "federation.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
