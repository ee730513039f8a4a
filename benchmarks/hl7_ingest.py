"""HL7 v2 ingest benchmark: OMI^O23 orders over MLLP into a real ``pixelhub serve`` (issue 5).

For each connection count, a fresh hub (temp data dir, SQLite, only the ``hl7v2`` channel) is
started as its own process, pinned to ONE CPU core; python-hl7's ``MLLPClient`` senders (one
thread per connection, on the other cores) send ``--messages`` OMI^O23 messages in total and wait for each ACK.
Reported per run: messages/s end to end (ACK received, which the hub sends only after the commit),
p50/p95/p99 ACK latency, the server's peak RSS (VmHWM) and its RSS sampled along the run (to see
whether memory stays flat). At the end it checks that every order is stored (one ServiceRequest per
message). Prints a table and writes JSON to ``benchmarks/results/``.

    python benchmarks/hl7_ingest.py --messages 10000 --connections 1 4
    python benchmarks/hl7_ingest.py --synchronous normal   # SQLite synchronous=NORMAL (WAL)

Not a test: it checks nothing but the final count, it measures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import hl7.client

PEER = "RIS^HOSP"


def omi(n: int) -> bytes:
    """One IHE RAD-4 style OMI^O23 (v2.5.1), 500 distinct patients."""
    p = n % 500
    segments = [
        f"MSH|^~\\&|RIS|HOSP|PIXELHUB|HOSP|20240305101500+0100||OMI^O23^OMI_O23|B{n}|P|2.5.1",
        f"PID|1||MRN{p}^^^HOSP^MR||Doe^Jane{p}^Q||19700101|F|||Main St {p}^^Springfield^^12345",
        "PV1|1|O|CT1^^^HOSP",
        f"ORC|NW|PL{n}^RIS|FL{n}^RIS||SC||||20240305101500+0100|||4711^Weber^Anna",
        "TQ1|1||||||20240306080000+0100||R",
        f"OBR|1|PL{n}^RIS|FL{n}^RIS|CTHEAD^CT Head w/o contrast^L|||||||||Headache||||||||||CT",
        "DG1|1||R51^Headache^I10",
        f"IPC|ACC{n}^HOSP|RP{n}|1.2.826.0.1.3680043.10.{n}|SPS{n}|CT^CT^DCM|CT1",
    ]
    return ("\r".join(segments) + "\r").encode()


def start_hub(data_dir: Path, synchronous: str) -> tuple[subprocess.Popen[bytes], int]:
    env = {
        **os.environ,
        "PIXELHUB_AUTH_TOKENS": "bench-token",
        "PIXELHUB_LOG_LEVEL": "warning",
        "PIXELHUB_CHANNELS": "hl7v2",
        "PIXELHUB_MLLP_PORT": "0",
        "PIXELHUB_HL7_ALLOWED_PEERS": PEER,
    }
    if synchronous != "full":
        env["PIXELHUB_DATABASE_URL"] = (
            f"sqlite:///{data_dir / 'pixelhub.db'}?synchronous={synchronous}"
        )
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--http-port", "0", "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    pin_apart(proc.pid)
    ports = data_dir / "ports.json"
    deadline = time.monotonic() + 60
    while not ports.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("hub failed to start")
        time.sleep(0.05)
    return proc, int(json.loads(ports.read_text())["mllp"])


def pin_apart(pid: int) -> None:
    """The hub, every thread of it (``sched_setaffinity`` of a pid moves only its main thread),
    on the first core this process may use, and this process (the senders) on the others when
    there are: so the senders never take the hub's core, which made runs vary by 20%."""
    first, *others = sorted(os.sched_getaffinity(0))
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that has just ended
            os.sched_setaffinity(int(task), {first})
    if others:
        os.sched_setaffinity(0, set(others))


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return -1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of all the process's threads (proc(5) ``stat`` fields 14, 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(messages: int, connections: int, synchronous: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hl7bench-") as tmp:
        proc, port = start_hub(Path(tmp), synchronous)
        try:
            payloads = [omi(n) for n in range(messages)]
            latencies: list[list[float]] = [[] for _ in range(connections)]
            failures: list[str] = []
            rss_samples: list[int] = []
            anon_samples: list[int] = []
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.5):
                    rss_samples.append(status_kb(proc.pid, "VmRSS"))
                    anon_samples.append(status_kb(proc.pid, "RssAnon"))

            def sender(k: int) -> None:
                with hl7.client.MLLPClient("127.0.0.1", port) as client:
                    for n in range(k, messages, connections):
                        started = time.perf_counter()
                        ack = client.send_message(payloads[n])
                        latencies[k].append(time.perf_counter() - started)
                        if b"MSA|AA|" not in ack:
                            failures.append(ack.decode("latin-1"))

            warm = hl7.client.MLLPClient("127.0.0.1", port)
            warm.send_message(omi(messages + 1).replace(b"|B", b"|W"))  # load code paths once
            warm.close()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            threads = [threading.Thread(target=sender, args=(k,)) for k in range(connections)]
            load_before = os.getloadavg()[0]
            cpu_before = cpu_seconds(proc.pid)
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(proc.pid) - cpu_before
            done.set()
            flat = sorted(x for per in latencies for x in per)
            stored = count_service_requests(Path(tmp))
            return {
                "connections": connections,
                "messages": messages,
                "synchronous": synchronous,
                "seconds": round(elapsed, 3),
                "messages_per_s": round(messages / elapsed, 1),
                # The hub's CPU per message (every thread: MLLP loop, applier, projectors): on
                # its one core, 1000 / this is the most it could do if nothing else ran there.
                "server_cpu_ms_per_msg": round(cpu * 1000 / messages, 3),
                "ack_ms_p50": round(percentile(flat, 0.50) * 1000, 2),
                "ack_ms_p95": round(percentile(flat, 0.95) * 1000, 2),
                "ack_ms_p99": round(percentile(flat, 0.99) * 1000, 2),
                "server_peak_rss_mb": round(status_kb(proc.pid, "VmHWM") / 1024, 1),
                "server_rss_mb_first_last": [
                    round(rss_samples[0] / 1024, 1) if rss_samples else None,
                    round(rss_samples[-1] / 1024, 1) if rss_samples else None,
                ],
                # RSS includes SQLite's memory-mapped database file (mmap_size 256 MiB), which
                # grows with the data; RssAnon is the process's own heap.
                "server_rss_anon_mb_first_last": [
                    round(anon_samples[0] / 1024, 1) if anon_samples else None,
                    round(anon_samples[-1] / 1024, 1) if anon_samples else None,
                ],
                # Other work on the machine skews msg/s and latency, far less the CPU per message.
                "load_avg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "failures": len(failures),
                "first_failure": failures[0] if failures else None,
                "service_requests_stored": stored,
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def count_service_requests(data_dir: Path) -> int:
    """Live ServiceRequests in the store (adapters/sqlite/schema.sql ``resource`` table)."""
    import sqlite3

    with sqlite3.connect(data_dir / "pixelhub.db") as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM resource WHERE res_type = 'ServiceRequest' AND deleted = 0"
        ).fetchone()
        return int(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--synchronous", choices=["full", "normal"], default="full")
    args = parser.parse_args()
    results = [run(args.messages, c, args.synchronous) for c in args.connections]
    print(
        f"{'conns':>5} {'msg/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'cpu ms':>7} "
        f"{'peak MB':>8} {'stored':>7} {'fail':>5} {'load':>10}"
    )
    for r in results:
        print(
            f"{r['connections']:>5} {r['messages_per_s']:>8} {r['ack_ms_p50']:>7} "
            f"{r['ack_ms_p95']:>7} {r['ack_ms_p99']:>7} {r['server_cpu_ms_per_msg']:>7} "
            f"{r['server_peak_rss_mb']:>8} "
            f"{r['service_requests_stored']:>7} {r['failures']:>5} "
            f"{'/'.join(map(str, r['load_avg_1m_before_after'])):>10}"
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"hl7_ingest-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {
                "benchmark": "hl7_ingest",
                "machine": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "server_pinned_to_one_core": True,
                },
                "runs": results,
            },
            indent=2,
        )
    )
    print(f"written {path}")


if __name__ == "__main__":
    main()
