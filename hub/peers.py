"""What every protocol channel (DICOM DIMSE, HL7 v2 MLLP...) shares about its peers: the
allow-list rule and the TLS server context. Each channel parses its own peer identity (an AE
title, a sending application^facility) with ``parse``."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable
from typing import TypeVar

R = TypeVar("R")


def peer_rules(
    entries: Iterable[str], *, demo: bool, setting: str, parse: Callable[[str], R]
) -> list[R] | None:
    """The allowed peers from a ``*_allowed_peers`` setting; ``None`` means any peer. "Any" is
    allowed only in demo mode, where it is also the default when nothing is configured; outside
    it an empty list admits nobody (secure by default, DESIGN.md)."""
    entries = [e.strip() for e in entries if e.strip()]
    if demo and not entries:
        return None
    if "*" in entries:
        if not demo:
            raise ValueError(f'{setting} "*" (any peer) is allowed only with --demo')
        return None
    return [parse(entry) for entry in entries]


def tls_server_context(cert: str, key: str, ca: str | None) -> ssl.SSLContext:
    """TLS 1.2 or later for a channel's listener (DICOM PS3.15 B.9 BCP 195 profile; IHE ITI TF-2
    Secure Node); with ``ca``, peers must present a certificate it signed (mutual TLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca:
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
