"""More than one process receiving on the DICOM port (issue 4).

One Python process serves associations one GIL at a time: parsing PDUs, reading headers and
writing blobs of several associations take turns. ``pixelhub serve`` therefore starts
``dicom_processes - 1`` receiving processes besides itself. Each accepts on the hub's own
listening socket (passed to it; a new connection goes to the process serving the fewest
associations, ``_scp.AcceptTurns``) and serves whole associations with its own storage SCP over
the hub's store (``hub.composition.worker_context``).

What stays with the hub's process: the audit journal (a worker's events are sent to it over a
pipe and the worker goes on only once the event is journaled there, as it would in the hub's
own process), the projectors (a worker's change notifications are sent too), the
storage commitment reports left pending by an earlier run. A worker that dies is started again;
its associations are cut (nothing their senders were not answered for was acknowledged), new
connections wait in the shared queue for the others. On stop every worker drains its
associations like the hub's own SCP does.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from adapters.dicom._scp import AcceptTurns
from hub.channels import ChannelContext
from hub.config import Settings
from hub.errors import AuditUnavailable

log = logging.getLogger("pixelhub.dicom")

START_SECONDS = 60.0  # a worker not listening by then is given up (and logged)


def process_count(setting: int) -> int:
    """``dicom_processes``: 0 = one per CPU core available to us, at most 4."""
    if setting:
        return setting
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


class _Worker:
    """One receiving process and the thread of the hub's process that answers it."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.process: BaseProcess | None = None
        self.control: Connection | None = None  # hub -> worker: stop
        self.requests: Connection | None = None  # worker -> hub: audit events, changes
        self._reaping = threading.Lock()

    def join(self, process: BaseProcess, timeout: float) -> None:
        """Wait for ``process`` (two threads waiting at once would race to reap it)."""
        with self._reaping:
            process.join(timeout)


class ReceiverProcesses:
    """The hub's side: starts ``count`` workers accepting on ``listener``, serves their
    requests, restarts those that die, stops them."""

    def __init__(self, context: ChannelContext, count: int) -> None:
        self.context = context
        self.count = count
        self.listener: socket.socket | None = None
        self._workers: list[_Worker] = []
        self._stopping = threading.Event()
        self._spawn = multiprocessing.get_context("spawn")  # no fork of a threaded process
        # associations served by each process (the hub's at 0), for ``AcceptTurns``
        self.counts = self._spawn.Array("i", count + 1, lock=False)

    def start(self, listener: socket.socket) -> None:
        """Start the workers (together: each takes a second or two to import and open the
        store) and wait until each accepts or has failed."""
        self.listener = listener
        self._workers = [_Worker(n) for n in range(1, self.count + 1)]
        for worker in self._workers:
            self._spawn_worker(worker)
        for worker in self._workers:
            self._await_ready(worker)

    def _spawn_worker(self, worker: _Worker) -> None:
        if worker.control is not None:
            worker.control.close()
        control, worker_control = self._spawn.Pipe()
        requests, worker_requests = self._spawn.Pipe()
        process = self._spawn.Process(
            target=serve_worker,
            args=(self.context.settings, self.context.service.options.base_url, self.listener,
                  self.counts, worker_control, worker_requests, worker.number),
            name=f"pixelhub-dicom-{worker.number}",
            daemon=True,
        )  # fmt: skip
        process.start()
        worker_control.close()
        worker_requests.close()
        worker.process, worker.control, worker.requests = process, control, requests

    def _await_ready(self, worker: _Worker) -> None:
        process, control, requests = worker.process, worker.control, worker.requests
        assert process is not None and control is not None and requests is not None
        ready = control.poll(START_SECONDS) and _recv(control)
        if not ready or ready[0] != "ready":
            log.error(
                "DICOM receiving process %d did not start (%s); the others serve the port",
                worker.number, ready[1] if ready else "no answer",
            )  # fmt: skip
            process.kill()
            worker.join(process, 5)
            AcceptTurns(self.counts, worker.number).leave()
            return
        threading.Thread(
            target=self._answer, args=(worker, process, requests),
            name=f"dicom-worker-{worker.number}", daemon=True,
        ).start()  # fmt: skip
        if self._stopping.is_set():  # started again while the hub was stopping
            with contextlib.suppress(OSError):
                control.send(("stop", 0.0))

    def _answer(self, worker: _Worker, process: BaseProcess, requests: Connection) -> None:
        """Journal the worker's audit events and pass on its change notifications until it
        ends; start it again if it died while the hub is running."""
        audit = self.context.audit
        while True:
            message = _recv(requests)
            if message is None:
                break
            kind, payload = message
            if kind == "audit":
                try:
                    if audit is not None:
                        audit.append(payload)
                    answer: tuple[str, Any] = ("ok", None)
                except AuditUnavailable as exc:
                    answer = ("error", str(exc))
                with contextlib.suppress(OSError):
                    requests.send(answer)
            elif kind == "changed":
                self.context.notify_change()
        requests.close()
        worker.join(process, 5)
        AcceptTurns(self.counts, worker.number).leave()
        if not self._stopping.is_set():
            log.error(
                "DICOM receiving process %d ended (exit code %s); starting it again",
                worker.number, process.exitcode,
            )  # fmt: skip
            self._spawn_worker(worker)
            self._await_ready(worker)

    def request_stop(self, timeout: float) -> None:
        """Ask every worker to drain and stop: it has ``timeout`` seconds, as the hub's own SCP
        has (``join`` waits for them)."""
        self._stopping.set()
        for worker in self._workers:
            if worker.control is not None:
                with contextlib.suppress(OSError):
                    worker.control.send(("stop", timeout))

    def join(self, timeout: float) -> None:
        for worker in self._workers:
            process = worker.process
            if process is None:
                continue
            worker.join(process, timeout + 10)
            if process.is_alive():
                log.warning("DICOM receiving process %d did not stop: killed", worker.number)
                process.kill()
                worker.join(process, 5)
            if worker.control is not None:
                worker.control.close()


def _recv(conn: Connection) -> Any:
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


class _Hub:
    """The worker's side of the requests pipe (one request at a time, from any thread)."""

    def __init__(self, requests: Connection) -> None:
        self._requests = requests
        self._lock = threading.Lock()

    def journal(self, event: dict[str, Any]) -> None:
        with self._lock:
            try:
                self._requests.send(("audit", event))
                kind, text = self._requests.recv()
            except (EOFError, OSError) as exc:
                raise AuditUnavailable("The hub's audit journal is out of reach") from exc
        if kind != "ok":
            raise AuditUnavailable(text)

    def changed(self) -> None:
        with self._lock, contextlib.suppress(OSError):
            self._requests.send(("changed", None))


def _name_process(name: str) -> None:
    """The name ``ps`` and ``top`` show for this process (Linux ``prctl(PR_SET_NAME)``)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)


def serve_worker(
    settings: Settings,
    base_url: str,
    listener: socket.socket,
    counts: Any,
    control: Connection,
    requests: Connection,
    number: int,
) -> None:
    """A receiving process's body: accept on ``listener`` until the hub says stop or is gone."""
    from adapters.dicom._channel import DicomChannel  # the channel module imports this one
    from hub.composition import worker_context

    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[dicom-{number}]: %(message)s",
    )
    _name_process(f"pixelhub-dicom{number}")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C: the hub stops us
    stop_now = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop_now.set())
    hub = _Hub(requests)
    try:
        context = worker_context(
            settings, base_url=base_url, forward_audit=hub.journal, notify_change=hub.changed
        )
        channel = DicomChannel(context, listener=listener, turns=AcceptTurns(counts, number))
        channel.start()
    except Exception as exc:
        log.exception("DICOM receiving process %d could not start", number)
        with contextlib.suppress(OSError):
            control.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    control.send(("ready", os.getpid()))
    timeout = settings.shutdown_grace_seconds
    while not stop_now.is_set():
        try:
            if not control.poll(0.5):
                continue
            kind, value = control.recv()
        except (EOFError, OSError):  # the hub is gone
            break
        if kind == "stop":
            timeout = float(value)
            break
    log.info("DICOM receiving process %d stopping", number)
    channel.stop(timeout)
    context.engine.close()
    log.info("DICOM receiving process %d stopped", number)
