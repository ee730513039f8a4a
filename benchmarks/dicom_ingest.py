"""DICOM ingest benchmark (issue 4): CT instances sent by dcmtk's ``/usr/bin/storescu`` over 1 and
over N parallel associations into

(a) PixelHub, full path: ``pixelhub serve`` with only the ``dicom`` channel, receiving in
    ``--pixelhub-processes`` processes (default 0: its own default, one per core up to 4); every
    C-STORE success means the bytes are fsynced and the index row committed; at the end the
    study must be searchable through FHIR (``GET /fhir/ImagingStudy?identifier=...``) with
    every instance;
(b) dcmtk ``storescp +xa`` writing files (``--fork`` for several associations);
(c) Orthanc (its own process, temporary storage and index);

all on this machine, in one run, with ``TCP_NODELAY=1`` for dcmtk and Orthanc. Reported per
receiver, image size and association count: instances/s and MB/s (first storescu start to last
storescu exit), the ratios PixelHub/storescp and PixelHub/Orthanc, PixelHub's delay from the last
C-STORE to the study being searchable with all its instances, and each server's peak RSS
(VmHWM; for storescp --fork, the parent). Extra PixelHub probes: a sender with Nagle left on
(``TCP_NODELAY=0 storescu``), C-STORE response latency p50/p99 for 1 MB objects (a pynetdicom
SCU, one association, TCP_NODELAY on its socket) and the CPU an idle association costs.

    python benchmarks/dicom_ingest.py                       # 1,000 instances, 64x64 and 256x256
    python benchmarks/dicom_ingest.py --instances 300 --sizes 64 --associations 1 4

Not a test: it checks only that everything sent arrived, it measures. JSON goes to
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

sys.path.append(str(Path(__file__).resolve().parents[1]))
from adapters.dicom._processes import process_count

CT = "1.2.840.10008.5.1.4.1.1.2"
TOKEN = "bench-token"
SENDER_AET = "BENCHSCU"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# data


def make_study(folder: Path, n: int, side: int, *, shards: int) -> tuple[str, int]:
    """``n`` CT instances of one study (4 series), ``side`` x ``side`` 16-bit, split over
    ``shards`` sub-folders; returns the Study Instance UID and the total bytes."""
    study = generate_uid()
    series = [generate_uid() for _ in range(4)]
    pixels = bytes((i * 7) % 256 for i in range(side * side * 2))
    total = 0
    for k in range(shards):
        (folder / f"s{k}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CT
        sop = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID, ds.SOPInstanceUID = CT, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series[i % 4]
        ds.Modality = "CT"
        ds.PatientID, ds.PatientName = "BENCH-1", "Bench^Mark"
        ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20240305", "101500", "BENCH-ACC"
        ds.StudyDescription, ds.SeriesDescription = "Benchmark CT", f"Series {i % 4 + 1}"
        ds.SeriesNumber, ds.InstanceNumber = i % 4 + 1, i + 1
        ds.BodyPartExamined = "CHEST"
        ds.Rows = ds.Columns = side
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = pixels
        path = folder / f"s{i % shards}" / f"{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        total += path.stat().st_size
    return study, total


# ---------------------------------------------------------------------------------------------
# receivers


class PixelHub:
    name = "pixelhub"

    def __init__(self, workdir: Path, **settings: str) -> None:
        """``pixelhub serve`` on free ports; ``settings`` are extra ``PIXELHUB_*`` variables."""
        self.data = workdir / "pixelhub"
        env = {
            **os.environ,
            "PIXELHUB_AUTH_TOKENS": TOKEN,
            "PIXELHUB_LOG_LEVEL": "warning",
            "PIXELHUB_CHANNELS": "dicom",
            "PIXELHUB_DICOM_ALLOWED_PEERS": f"{SENDER_AET},PROBE",
            **settings,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "serve", "--http-port", "0", "--dicom-port", "0",
             "--data-dir", str(self.data)],
            env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        ports = self.data / "ports.json"
        deadline = time.monotonic() + 60
        while not ports.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("pixelhub failed to start")
            time.sleep(0.05)
        found = json.loads(ports.read_text())
        self.port, self.http = int(found["dicom"]), int(found["http"])
        self.aet = "PIXELHUB"

    def searchable(self, study: str, n: int, timeout: float = 300) -> float:
        """Seconds until the ImagingStudy has ``n`` instances in a FHIR search."""
        started = time.monotonic()
        url = f"http://127.0.0.1:{self.http}/fhir/ImagingStudy"
        params = {"identifier": f"urn:dicom:uid|urn:oid:{study}"}
        with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
            while time.monotonic() - started < timeout:
                entries = client.get(url, params=params).json().get("entry") or []
                if entries and entries[0]["resource"]["numberOfInstances"] == n:
                    return time.monotonic() - started
                time.sleep(0.01)
        raise SystemExit(f"study {study} not searchable with {n} instances in {timeout} s")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


class Storescp:
    name = "storescp"

    def __init__(self, workdir: Path, *, fork: bool) -> None:
        out = workdir / "storescp"
        out.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.aet = "STORESCP"
        args = ["/usr/bin/storescp", "+xa", "-aet", self.aet, "-od", str(out)]
        if fork:
            args.append("--fork")
        self.proc = subprocess.Popen(
            [*args, str(self.port)], env={**os.environ, "TCP_NODELAY": "1"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(self.port, self.proc)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Orthanc:
    name = "orthanc"

    def __init__(self, workdir: Path, **extra: Any) -> None:
        """Orthanc with a temporary storage and index; ``extra`` adds configuration."""
        root = workdir / "orthanc"
        root.mkdir(parents=True, exist_ok=True)
        self.port, self.http = free_port(), free_port()
        self.aet = "ORTHANC"
        config = {
            "Name": "bench",
            "HttpPort": self.http,
            "DicomPort": self.port,
            "DicomAet": self.aet,
            "StorageDirectory": str(root / "storage"),
            "IndexDirectory": str(root / "index"),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "StorageCompression": False,
            "Plugins": [],
            **extra,
        }
        (root / "orthanc.json").write_text(json.dumps(config))
        self.proc = subprocess.Popen(
            ["/usr/sbin/Orthanc", "--no-jobs", str(root / "orthanc.json")],
            env={**os.environ, "TCP_NODELAY": "1"}, cwd=root,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(self.port, self.proc)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"receiver on port {port} exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"receiver on port {port} did not start")


# ---------------------------------------------------------------------------------------------
# sending


def send(receiver: Any, folder: Path, associations: int, *, nodelay: bool = True) -> float:
    """Run ``associations`` storescu processes in parallel, one per shard; wall seconds."""
    env = {**os.environ, "TCP_NODELAY": "1" if nodelay else "0"}
    shards = sorted(p for p in folder.iterdir() if p.is_dir())
    groups: list[list[Path]] = [[] for _ in range(associations)]
    for i, shard in enumerate(shards):
        groups[i % associations].append(shard)
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                "/usr/bin/storescu",
                "-aet",
                SENDER_AET,
                "-aec",
                receiver.aet,
                "+sd",
                "+r",
                "127.0.0.1",
                str(receiver.port),
                *map(str, group),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for group in groups
    ]
    failed = []
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            failed.append(err.decode(errors="replace")[-500:])
    elapsed = time.monotonic() - started
    if failed:
        raise SystemExit(f"storescu failed against {receiver.name}: {failed[0]}")
    return elapsed


def latency_probe(port: int, n: int, size: int) -> dict[str, float]:
    """C-STORE round trips of ``size``-byte CT objects over one pynetdicom association."""
    from pynetdicom import AE, evt

    def nodelay(event: Any) -> None:
        sock = event.assoc.dul.socket.socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    side = int((size / 2) ** 0.5)
    ae = AE(ae_title="PROBE")
    ae.add_requested_context(CT, ExplicitVRLittleEndian)
    assoc = ae.associate(
        "127.0.0.1", port, ae_title="PIXELHUB", evt_handlers=[(evt.EVT_CONN_OPEN, nodelay)]
    )
    if not assoc.is_established:
        raise SystemExit("latency probe: association refused")
    study, series = generate_uid(), generate_uid()
    pixels = bytes(side * side * 2)
    times = []
    try:
        for i in range(n):
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.SOPClassUID, ds.SOPInstanceUID = CT, generate_uid()
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.Modality, ds.PatientID, ds.InstanceNumber = "CT", "PROBE-1", i + 1
            ds.Rows = ds.Columns = side
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
            ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.PixelData = pixels
            t = time.perf_counter()
            status = assoc.send_c_store(ds)
            times.append(time.perf_counter() - t)
            if status.Status != 0:
                raise SystemExit(f"latency probe: status 0x{status.Status:04X}")
    finally:
        assoc.release()
    times.sort()
    return {
        "objects": n,
        "bytes": side * side * 2,
        "p50_ms": 1000 * statistics.median(times),
        "p99_ms": 1000 * times[min(len(times) - 1, int(0.99 * len(times)))],
        "max_ms": 1000 * times[-1],
    }


def idle_cost(hub: PixelHub, seconds: float = 5.0) -> float:
    """Percent of one core the hub burns while one association sits idle."""
    from pynetdicom import AE

    ae = AE(ae_title="PROBE")
    ae.add_requested_context("1.2.840.10008.1.1")
    time.sleep(1.0)
    quiet_before = cpu_seconds(hub.proc.pid)
    time.sleep(seconds)
    baseline = cpu_seconds(hub.proc.pid) - quiet_before
    assoc = ae.associate("127.0.0.1", hub.port, ae_title="PIXELHUB")
    try:
        time.sleep(0.5)
        before = cpu_seconds(hub.proc.pid)
        time.sleep(seconds)
        used = cpu_seconds(hub.proc.pid) - before
    finally:
        assoc.release()
    return 100 * max(0.0, used - baseline) / seconds


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--associations", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--receivers", nargs="+", default=["pixelhub", "storescp", "orthanc"])
    parser.add_argument("--probes", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--pixelhub-processes", type=int, default=0, help="dicom_processes")
    args = parser.parse_args()
    for tool in ("/usr/bin/storescu", "/usr/bin/storescp", "/usr/sbin/Orthanc"):
        if not Path(tool).exists():
            raise SystemExit(f"{tool} missing: apt-get install dcmtk orthanc")
    work = Path(tempfile.mkdtemp(prefix="pixelhub-dicom-bench-"))
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    probes: dict[str, Any] = {}
    try:
        for side in args.sizes:
            for associations in args.associations:
                folder = work / f"data-{side}-{associations}"
                study, total = make_study(folder, args.instances, side, shards=max(associations, 4))
                for name in args.receivers:
                    run = work / f"run-{name}-{side}-{associations}"
                    receiver: Any
                    if name == "pixelhub":
                        receiver = PixelHub(
                            run, PIXELHUB_DICOM_PROCESSES=str(args.pixelhub_processes)
                        )
                    elif name == "storescp":
                        receiver = Storescp(run, fork=associations > 1)
                    else:
                        receiver = Orthanc(run)
                    try:
                        elapsed = send(receiver, folder, associations)
                        row: dict[str, Any] = {
                            "receiver": name,
                            "side": side,
                            "associations": associations,
                            "instances": args.instances,
                            "bytes": total,
                            "seconds": elapsed,
                            "inst_per_s": args.instances / elapsed,
                            "mb_per_s": total / elapsed / 1e6,
                        }
                        if name == "pixelhub":
                            row["searchable_after_s"] = receiver.searchable(study, args.instances)
                            row["processes"] = process_count(args.pixelhub_processes)
                        row["peak_rss_mb"] = peak_rss(receiver.proc.pid) / 2**20
                        if name == "pixelhub" and args.probes and associations == 1:
                            nagle_folder = work / f"nagle-{side}"
                            count = min(args.instances, 200)
                            nagle_study, _ = make_study(nagle_folder, count, side, shards=1)
                            took = send(receiver, nagle_folder, 1, nodelay=False)
                            probes[f"nagle_sender_{side}"] = {
                                "instances": count,
                                "inst_per_s": count / took,
                                "searchable_after_s": receiver.searchable(nagle_study, count),
                            }
                    finally:
                        receiver.stop()
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                shutil.rmtree(folder, ignore_errors=True)
        if args.probes and "pixelhub" in args.receivers:
            hub = PixelHub(work / "probe")
            try:
                probes["latency_1mb"] = latency_probe(hub.port, 200, 1 << 20)
                probes["idle_association_cpu_percent"] = idle_cost(hub)
            finally:
                hub.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(rows, probes, {"before": load_before, "after": os.getloadavg()})


def report(
    rows: list[dict[str, Any]], probes: dict[str, Any], load: dict[str, tuple[float, ...]]
) -> None:
    print()
    print(
        f"{'receiver':<10} {'image':>7} {'assoc':>5} {'inst/s':>8} {'MB/s':>7} "
        f"{'vs storescp':>11} {'vs orthanc':>10} {'searchable':>10} {'peak RSS':>9}"
    )
    index = {(r["receiver"], r["side"], r["associations"]): r for r in rows}
    for r in rows:
        key = (r["side"], r["associations"])
        ratios = []
        for other in ("storescp", "orthanc"):
            peer = index.get((other, *key))
            ratio = (
                r["inst_per_s"] / peer["inst_per_s"]
                if peer and r["receiver"] == "pixelhub"
                else None
            )
            ratios.append(f"{ratio:.2f}x" if ratio else "")
        searchable = f"{r['searchable_after_s']:.2f} s" if "searchable_after_s" in r else ""
        print(
            f"{r['receiver']:<10} {r['side']:>4}^2 {r['associations']:>5} {r['inst_per_s']:>8.0f} "
            f"{r['mb_per_s']:>7.1f} {ratios[0]:>11} {ratios[1]:>10} {searchable:>10} "
            f"{r['peak_rss_mb']:>6.0f} MB"
        )
    processes = sorted({r["processes"] for r in rows if "processes" in r})
    if processes:
        print(f"PixelHub receiving processes: {', '.join(map(str, processes))}")
    for name, value in probes.items():
        print(f"{name}: {value}")
    shown = {k: " ".join(f"{x:.2f}" for x in v) for k, v in load.items()}
    print(f"load average (1, 5, 15 min) before: {shown['before']}, after: {shown['after']}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = out / f"dicom_ingest-{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "load_average": load,
                },
                "rows": rows,
                "probes": probes,
            },
            indent=2,
        )
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
