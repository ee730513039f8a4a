"""DICOM retrieve benchmark (issue 9): PixelHub and Orthanc holding the same data, in one run on
this machine, measured by the same clients:

- study-level C-FIND latency (p50/p95 over one pynetdicom association, ``TCP_NODELAY``) with
  ``--find-studies`` one-instance studies loaded (the issue's figure is at 100,000): by Patient ID,
  by a one-month Study Date range, and by a Patient Name prefix wildcard;
- C-MOVE of one ``--instances``-instance study (default 500) to a dcmtk ``storescp``, by dcmtk
  ``movescu``: instances/s, the best of 3 moves;
- WADO-RS of that study (``multipart/related; type="application/dicom"``, any transfer syntax):
  MB/s, the body read in full;
- rendered thumbnails (WADO-RS ``/rendered?viewport=128,128`` as JPEG) of distinct instances:
  latency p50/p95.

Data goes in by dcmtk ``storescu`` (4 associations). Reported: each figure for both servers and
the ratio PixelHub/Orthanc (for latencies Orthanc/PixelHub, so > 1 always means PixelHub is
better). The aim of the issue is PixelHub >= Orthanc on every figure.

    python benchmarks/dicom_retrieve.py                             # 10,000 studies, 500 inst
    python benchmarks/dicom_retrieve.py --find-studies 100000

Not a test: it checks that what was asked for arrived, and measures. JSON goes to
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from dicom_ingest import CT, TOKEN, Orthanc, Storescp, make_study, send
from dicom_ingest import PixelHub as IngestedHub
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CLIENT_AET = "BENCHSCU"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
FAMILIES = ["SMITH", "GARCIA", "NGUYEN", "MULLER", "ROSSI", "TANAKA", "KOWALSKI", "SILVA"]
WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
    }


# ---------------------------------------------------------------------------------------------
# data


def make_find_studies(folder: Path, count: int, *, shards: int = 4) -> list[dict[str, str]]:
    """``count`` studies of one small CT instance each, patients shared by ~2 studies each,
    dates over 2015-2024; returns each study's query values."""
    rng = random.Random(9)
    for k in range(shards):
        (folder / f"s{k}").mkdir(parents=True, exist_ok=True)
    pixels = bytes(8 * 8 * 2)
    studies = []
    for i in range(count):
        patient = i // 2
        family = FAMILIES[patient % len(FAMILIES)]
        date = f"{2015 + rng.randrange(10)}{1 + rng.randrange(12):02d}{1 + rng.randrange(28):02d}"
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        sop = generate_uid()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = CT, sop
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CT, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.PatientID, ds.PatientName = f"FIND-{patient:06d}", f"{family}{patient}^Pat"
        ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber = date, "101500", f"A{i:07d}"
        ds.Modality, ds.StudyDescription = "CT", "Find benchmark"
        ds.SeriesNumber = ds.InstanceNumber = 1
        ds.Rows = ds.Columns = 8
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = pixels
        ds.save_as(folder / f"s{i % shards}" / f"{i:06d}.dcm", enforce_file_format=True)
        studies.append({"PatientID": ds.PatientID, "StudyDate": date, "name": f"{family}{patient}"})
    return studies


# ---------------------------------------------------------------------------------------------
# servers


class PixelHub(IngestedHub):
    """The ingest benchmark's hub, with DICOMweb, the move destination and our client AE."""

    def __init__(self, workdir: Path, destination: Storescp) -> None:
        super().__init__(
            workdir,
            PIXELHUB_CHANNELS="dicom,dicomweb",
            PIXELHUB_DICOM_ALLOWED_PEERS=CLIENT_AET,
            PIXELHUB_DICOM_DESTINATIONS=f"{destination.aet}=127.0.0.1:{destination.port}",
            PIXELHUB_DICOM_MAX_FIND_RESULTS="1000000",
        )
        self.web = f"http://127.0.0.1:{self.http}/dicomweb"
        self.headers = {"Authorization": f"Bearer {TOKEN}"}


class OrthancPeer(Orthanc):
    """The ingest benchmark's Orthanc, with the DICOMweb plugin, the move destination and our
    client AE known, and C-FIND/C-MOVE allowed."""

    def __init__(self, workdir: Path, destination: Storescp) -> None:
        super().__init__(
            workdir,
            DicomAlwaysAllowFind=True,
            DicomAlwaysAllowMove=True,
            LimitFindResults=0,
            LimitFindInstances=0,
            DicomModalities={
                "dest": [destination.aet, "127.0.0.1", destination.port],
                "bench": [CLIENT_AET, "127.0.0.1", 1],
            },
            Plugins=["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
            DicomWeb={"Enable": True, "Root": "/dicom-web/"},
        )
        self.web = f"http://127.0.0.1:{self.http}/dicom-web"
        self.headers: dict[str, str] = {}


# ---------------------------------------------------------------------------------------------
# measurements


def settle(hub: PixelHub, timeout: float = 1800) -> float:
    """Seconds until every projector has caught up (``pixelhub_projector_lag`` 0 in
    ``/metrics``): queries are measured on a quiet hub, as Orthanc, which indexes while it
    stores, is measured once its last C-STORE is answered."""
    started = time.monotonic()
    lag = re.compile(rb"^pixelhub_projector_lag\{[^}]*\} (\S+)$", re.M)
    with httpx.Client(headers=hub.headers, timeout=30) as client:
        while time.monotonic() - started < timeout:
            lags = lag.findall(client.get(f"http://127.0.0.1:{hub.http}/metrics").content)
            if lags and max(float(x) for x in lags) == 0:
                return time.monotonic() - started
            time.sleep(0.5)
    raise SystemExit(f"projectors still behind after {timeout} s")


def find_latency(server: Any, studies: list[dict[str, str]], queries: int) -> dict[str, Any]:
    from pynetdicom import AE, evt

    def nodelay(event: Any) -> None:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    ae = AE(ae_title=CLIENT_AET)
    ae.add_requested_context(STUDY_ROOT_FIND)
    assoc = ae.associate(
        "127.0.0.1", server.port, ae_title=server.aet, evt_handlers=[(evt.EVT_CONN_OPEN, nodelay)]
    )
    if not assoc.is_established:
        raise SystemExit(f"C-FIND association to {server.name} refused")
    rng = random.Random(4)
    picks = [rng.choice(studies) for _ in range(queries)]
    kinds = {
        "patient_id": lambda s: {"PatientID": s["PatientID"]},
        "date_month": lambda s: {"StudyDate": f"{s['StudyDate'][:6]}01-{s['StudyDate'][:6]}28"},
        "name_prefix": lambda s: {"PatientName": f"{s['name']}*"},
    }
    result: dict[str, Any] = {}
    try:
        for kind, keys in kinds.items():
            times, found = [], 0
            for pick in picks:
                ds = Dataset()
                ds.QueryRetrieveLevel = "STUDY"
                for keyword in ("StudyInstanceUID", "PatientName", "PatientID", "StudyDate"):
                    setattr(ds, keyword, "")
                ds.ModalitiesInStudy = ""
                ds.NumberOfStudyRelatedInstances = None
                for keyword, value in keys(pick).items():
                    setattr(ds, keyword, value)
                started = time.perf_counter()
                for status, identifier in assoc.send_c_find(ds, STUDY_ROOT_FIND):
                    if status and status.Status in (0xFF00, 0xFF01) and identifier is not None:
                        found += 1
                    elif status and status.Status not in (0xFF00, 0xFF01, 0x0000):
                        raise SystemExit(f"{server.name} C-FIND status 0x{status.Status:04X}")
                times.append(time.perf_counter() - started)
            result[kind] = {**percentiles(times), "matches": found}
    finally:
        assoc.release()
    return result


def move_rate(server: Any, study: str, instances: int, out: Path, rounds: int = 3) -> float:
    """C-MOVE the study to ``storescp`` (writing into ``out``, emptied before each round) with
    dcmtk ``movescu``: the best of ``rounds`` moves, instances/s (one move of a few hundred
    milliseconds swings by half between runs on this machine, for either server)."""
    return max(_move_once(server, study, instances, out) for _ in range(rounds))


def _move_once(server: Any, study: str, instances: int, out: Path) -> float:
    for old in out.iterdir():
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    started = time.monotonic()
    done = subprocess.run(
        ["/usr/bin/movescu", "-S", "-aet", CLIENT_AET, "-aec", server.aet, "-aem",
         "STORESCP", "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
         "127.0.0.1", str(server.port)],
        capture_output=True, text=True, env={**os.environ, "TCP_NODELAY": "1"}, timeout=900,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    received = sum(1 for _ in out.rglob("*") if _.is_file())
    if done.returncode != 0 or received != instances:
        raise SystemExit(
            f"C-MOVE from {server.name}: exit {done.returncode}, {received}/{instances} "
            f"received\n{done.stderr[-1500:]}"
        )
    return instances / elapsed


def wado_rate(server: Any, study: str, rounds: int = 3) -> dict[str, float]:
    """WADO-RS of the whole study: the best of ``rounds`` reads, MB/s."""
    best, size = 0.0, 0
    with httpx.Client(headers=server.headers, timeout=600) as client:
        for _ in range(rounds):
            size = 0
            started = time.monotonic()
            with client.stream(
                "GET", f"{server.web}/studies/{study}", headers={"Accept": WADO_ACCEPT}
            ) as response:
                if response.status_code != 200:
                    raise SystemExit(f"WADO-RS {server.name}: {response.status_code}")
                for chunk in response.iter_raw(1 << 20):
                    size += len(chunk)
            best = max(best, size / (time.monotonic() - started) / 1e6)
    return {"mb_per_s": best, "bytes": size}


def thumbnail_latency(server: Any, study: str, count: int) -> dict[str, Any]:
    """Rendered 128x128 JPEG of ``count`` distinct instances of the study."""
    with httpx.Client(headers=server.headers, timeout=60) as client:
        listing = client.get(
            f"{server.web}/studies/{study}/instances", headers={"Accept": "application/dicom+json"}
        )
        listing.raise_for_status()
        items = [
            (i["0020000E"]["Value"][0], i["00080018"]["Value"][0]) for i in listing.json()[:count]
        ]
        times = []
        for series, sop in items:
            started = time.perf_counter()
            response = client.get(
                # a literal comma: Orthanc does not decode "%2C" in viewport
                f"{server.web}/studies/{study}/series/{series}/instances/{sop}/rendered"
                "?viewport=128,128",
                headers={"Accept": "image/jpeg"},
            )
            times.append(time.perf_counter() - started)
            if response.status_code != 200 or not response.content.startswith(b"\xff\xd8"):
                raise SystemExit(f"rendered {server.name}: {response.status_code}")
    return percentiles(times)


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--find-studies", type=int, default=10000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--thumbnails", type=int, default=50)
    parser.add_argument("--servers", nargs="+", default=["pixelhub", "orthanc"])
    args = parser.parse_args()
    for tool in ("/usr/bin/storescu", "/usr/bin/storescp", "/usr/bin/movescu", "/usr/sbin/Orthanc"):
        if not Path(tool).exists():
            raise SystemExit(f"{tool} missing: apt-get install dcmtk orthanc orthanc-dicomweb")
    work = Path(tempfile.mkdtemp(prefix="pixelhub-retrieve-bench-"))
    load_before = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    try:
        big = work / "study"
        study, total = make_study(big, args.instances, args.side, shards=4)
        finds = work / "finds"
        studies = make_find_studies(finds, args.find_studies)
        for name in args.servers:
            run = work / name
            destination = Storescp(run, fork=False)
            try:
                server: Any = (
                    PixelHub(run, destination)
                    if name == "pixelhub"
                    else OrthancPeer(run, destination)
                )
            except BaseException:
                destination.stop()  # a server that did not start leaves no storescp behind
                raise
            try:
                started = time.monotonic()
                send(server, finds, 4)
                send(server, big, 4)
                row: dict[str, Any] = {"load_s": time.monotonic() - started}
                if name == "pixelhub":
                    row["settle_s"] = settle(server)
                row["find"] = find_latency(server, studies, args.queries)
                row["move_inst_per_s"] = move_rate(server, study, args.instances, run / "storescp")
                row["wado"] = wado_rate(server, study)
                row["thumbnail"] = thumbnail_latency(server, study, args.thumbnails)
            finally:
                server.stop()
                destination.stop()
            results[name] = row
            print(name, json.dumps(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if len(results) == 2:
        report(results, args, total, {"before": load_before, "after": os.getloadavg()})


def report(
    results: dict[str, dict[str, Any]], args: argparse.Namespace, total: int,
    load: dict[str, tuple[float, ...]],
) -> None:  # fmt: skip
    ours, theirs = results["pixelhub"], results["orthanc"]
    lines: list[tuple[str, float, float, float]] = []
    for kind in ours["find"]:
        a, b = ours["find"][kind]["p50_ms"], theirs["find"][kind]["p50_ms"]
        lines.append((f"C-FIND {kind} p50 ms ({args.find_studies} studies)", a, b, b / a))
    a, b = ours["move_inst_per_s"], theirs["move_inst_per_s"]
    lines.append((f"C-MOVE inst/s ({args.instances} instances, best of 3)", a, b, a / b))
    a, b = ours["wado"]["mb_per_s"], theirs["wado"]["mb_per_s"]
    lines.append((f"WADO-RS MB/s ({total / 1e6:.0f} MB study)", a, b, a / b))
    a, b = ours["thumbnail"]["p50_ms"], theirs["thumbnail"]["p50_ms"]
    lines.append(("rendered thumbnail p50 ms", a, b, b / a))
    print()
    print(f"{'figure':<48} {'PixelHub':>10} {'Orthanc':>10} {'ratio':>7}")
    for label, a, b, ratio in lines:
        print(f"{label:<48} {a:>10.1f} {b:>10.1f} {ratio:>6.2f}x")
    print("(ratio > 1: PixelHub better; aim: >= 1 on every figure)")
    shown = {k: " ".join(f"{x:.2f}" for x in v) for k, v in load.items()}
    print(f"load average (1, 5, 15 min) before: {shown['before']}, after: {shown['after']}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"dicom_retrieve-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": load},
                "args": vars(args),
                "results": results,
                "figures": [dict(zip(("figure", "pixelhub", "orthanc", "ratio"), line, strict=True))
                            for line in lines],
            },
            indent=2,
        )
    )  # fmt: skip
    print(f"results written to {path}")


if __name__ == "__main__":
    main()
