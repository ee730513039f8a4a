"""``pixelhub serve``: bind the ports, write ``ports.json``, serve until SIGTERM, drain, exit.

Port ``0`` picks a free port; the chosen ports are printed and written to
``<data dir>/ports.json`` as ``{"http": ...}`` (switched-off channels are absent). SIGTERM or
SIGINT stops accepting connections, lets in-flight requests finish (up to
``shutdown_grace_seconds``), stops the projectors and closes the store: every write that was
answered 2xx is committed before its answer, so nothing acknowledged is lost.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import orjson
import uvicorn

from hub.composition import build_hub
from hub.config import Settings
from hub.demo import DEMO_PASSWORD, DEMO_USER, load_demo_data, register_demo_app

log = logging.getLogger("pixelhub")

DEMO_BANNER = """
################################################################################
#  PIXELHUB DEMO MODE: NO AUTHENTICATION. Anyone who can reach this port can   #
#  read and change every record, and any DICOM or HL7 peer is accepted unless   #
#  an allow-list is set. Sample data is loaded. Never use with real patient     #
#  data.                                                                        #
################################################################################
"""


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit TCP_NODELAY on Linux: without it, a response written in two
    # parts stalls ~40 ms on Nagle + delayed ACK, on every keep-alive request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


def write_ports(data_dir: Path, ports: dict[str, int]) -> Path:
    """Atomically write ``ports.json`` so a reader never sees a partial file."""
    path = data_dir / "ports.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(orjson.dumps(ports))
    os.replace(tmp, path)
    return path


def serve(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    http_sock = bind(settings.http_host, settings.http_port)
    http_port = http_sock.getsockname()[1]
    host_for_url = f"[{settings.http_host}]" if ":" in settings.http_host else settings.http_host
    base_url = settings.base_url or f"http://{host_for_url}:{http_port}/fhir"
    hub = build_hub(settings, base_url=base_url.rstrip("/"))
    if hub.app.state.hub.auth_server is not None:  # signing keys exist from the first start on
        hub.app.state.hub.auth_server.keys.load()
    if settings.demo:
        print(DEMO_BANNER, file=sys.stderr, flush=True)
        loaded = load_demo_data(hub.service)
        log.warning("demo mode: open access, %d sample resources present", loaded)
        if not settings.app_client_id:  # the imaging timeline at /app/, and who signs in
            register_demo_app(settings, base_url)
            origin = base_url.rstrip("/").removesuffix("/fhir")
            print(
                f"Imaging timeline app: {origin}/app/ (sign in as {DEMO_USER!r}, password "
                f"{DEMO_PASSWORD!r})",
                file=sys.stderr,
                flush=True,
            )
    elif not settings.auth_tokens:
        log.warning(
            "no authentication configured (PIXELHUB_AUTH_TOKENS): every protected request "
            "will be refused with 401"
        )
    config = uvicorn.Config(
        hub.app,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) or None,
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    # A SIGTERM/SIGINT before uvicorn takes over its signals (or re-raised by uvicorn after its
    # drain) only asks the server to exit, so the shutdown below always runs.
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: setattr(server, "should_exit", True))
    ports_file: Path | None = None
    try:
        ports = {"http": http_port, **hub.start_channels()}
        ports_file = write_ports(settings.data_dir, ports)
        listening = " ".join(f"{name}={port}" for name, port in ports.items())
        print(f"PixelHub listening: {listening} (FHIR base {base_url})", flush=True)
        print(f"ports written to {ports_file}", flush=True)
        hub.runner.start()
        hub.start_audit()
        server.run(sockets=[http_sock])
    finally:
        hub.close()
        http_sock.close()
        if ports_file is not None:
            ports_file.unlink(missing_ok=True)
        log.info("PixelHub stopped cleanly")
    return 0
