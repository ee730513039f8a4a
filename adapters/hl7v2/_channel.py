"""The ``hl7v2`` channel: settings in, a running MLLP listener out (``hub.channels`` protocol)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from adapters.hl7v2._ingest import Hl7Ingest, parse_peers
from adapters.hl7v2._mllp import MllpServer
from hub.channels import ChannelContext
from hub.peers import tls_server_context

# The projectors are woken at most this often while messages stream in (see ``_WakeLimiter``).
WAKE_INTERVAL = 0.05


class _WakeLimiter:
    """Passes "a write committed" on to the projectors at most once per ``interval`` seconds,
    and always once after the last one: each wake-up costs the projectors a run and a cursor
    commit, which per message would take the writer from the ingest as often as it commits."""

    def __init__(self, wake: Callable[[], None], interval: float) -> None:
        self.wake = wake
        self.interval = interval
        self._poked = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hl7v2-wake", daemon=True)

    def poke(self) -> None:
        self._poked.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._poked.set()
        if self._thread.ident is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while True:
            self._poked.wait()
            self._poked.clear()
            self.wake()
            if self._stop.wait(self.interval):
                if self._poked.is_set():
                    self.wake()
                return


class Hl7v2Channel:
    """HL7 v2 over MLLP on ``settings.mllp_port`` (``0`` = a free port), bound to
    ``settings.http_host``; allowed peers from ``settings.hl7_allowed_peers``."""

    name = "hl7v2"
    port_name = "mllp"

    def __init__(self, context: ChannelContext) -> None:
        settings = context.settings
        self.wake = _WakeLimiter(context.notify_change, WAKE_INTERVAL)
        self.ingest = Hl7Ingest(
            context.service,
            principal_for=context.peer,
            peers=parse_peers(settings.hl7_allowed_peers, demo=settings.demo),
            authority_systems=dict(settings.hl7_authority_systems),
            default_patient_system=settings.hl7_default_patient_system,
            notify_change=self.wake.poke,
            audit=context.audit,
        )
        tls = None
        if settings.mllp_tls_cert or settings.mllp_tls_key:
            if not (settings.mllp_tls_cert and settings.mllp_tls_key):
                raise ValueError("MLLP TLS needs both mllp_tls_cert and mllp_tls_key")
            tls = tls_server_context(
                str(settings.mllp_tls_cert),
                str(settings.mllp_tls_key),
                str(settings.mllp_tls_ca) if settings.mllp_tls_ca else None,
            )
        self.server = MllpServer(
            self.ingest.handle_batch,
            self.ingest.refuse,
            host=settings.http_host,
            port=settings.mllp_port,
            max_message_bytes=settings.mllp_max_message_bytes,
            idle_timeout=settings.mllp_idle_timeout,
            ssl_context=tls,
            max_batch=settings.mllp_max_batch,
        )

    def start(self) -> int:
        port = self.server.start()
        self.wake.start()  # after: a listener that failed to bind leaves no thread behind
        return port

    def stop(self, timeout: float) -> None:
        self.server.stop(timeout)
        self.wake.stop()


def create_channel(context: ChannelContext) -> Hl7v2Channel:
    """The ``pixelhub.channels`` entry point ``hl7v2``."""
    return Hl7v2Channel(context)
