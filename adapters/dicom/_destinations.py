"""The AEs PixelHub opens associations to, as an SCU (DICOM PS3.8 7.1): C-MOVE destinations
(PS3.4 C.4.2) and storage commitment requesters that want their N-EVENT-REPORT on a new
association (PS3.4 J.3.3). Configured as ``dicom_destinations`` entries ``AET=host:port``.

Outbound associations set ``TCP_NODELAY`` as soon as the socket is open (pynetdicom has no option
for it; without it each small PDU waits ~40 ms for Nagle's algorithm and the peer's delayed ACK).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event


@dataclass(frozen=True)
class Destination:
    """One ``dicom_destinations`` entry."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, entry: str) -> Destination:
        title, equals, address = entry.strip().partition("=")
        host, colon, port = address.strip().rpartition(":")
        title, host = title.strip(), host.strip().strip("[]")
        if (
            not equals
            or not colon
            or not title
            or len(title) > 16
            or not title.isascii()
            or "\\" in title
            or not host
            or not port.strip().isdigit()
            or not 0 < int(port) < 65536
        ):
            raise ValueError(f"dicom_destinations entry {entry!r}: expected AET=host:port")
        return cls(title, host, int(port))


def parse_destinations(entries: Iterable[str]) -> dict[str, Destination]:
    """AE title -> destination; a title listed twice is refused."""
    found: dict[str, Destination] = {}
    for entry in entries:
        destination = Destination.parse(entry)
        if destination.ae_title in found:
            raise ValueError(f"dicom_destinations: {destination.ae_title} is listed twice")
        found[destination.ae_title] = destination
    return found


def _nodelay(event: Event) -> None:
    transport = event.assoc.dul.socket
    if transport is not None and transport.socket is not None:
        with contextlib.suppress(OSError):
            transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def associate(
    ae: AE,
    destination: Destination,
    *,
    handlers: Sequence[tuple[Any, Any]] = (),
    **kwargs: Any,
) -> Association:
    """Request an association with ``destination`` (the contexts are ``ae``'s requested ones,
    or ``kwargs['contexts']``), with ``TCP_NODELAY`` on its socket; check ``is_established``.

    A connection that fails leaves no socket open (pynetdicom 3.0 drops it unclosed)."""
    made: list[socket.socket] = []
    create = ae._create_socket

    def create_socket(*args: Any) -> Any:
        transport = create(*args)
        if transport.socket is not None:
            made.append(transport.socket)
        return transport

    setattr(ae, "_create_socket", create_socket)  # noqa: B010 (instance override)
    try:
        assoc = ae.associate(
            destination.host,
            destination.port,
            ae_title=destination.ae_title,
            evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay), *handlers],
            **kwargs,
        )
    finally:
        del ae._create_socket  # back to the class's method
    if not assoc.is_established:
        for raw in made:
            with contextlib.suppress(OSError):
                raw.close()
    return assoc
