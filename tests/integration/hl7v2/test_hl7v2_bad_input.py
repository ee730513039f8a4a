"""Bad input against the real MLLP listener: every case gets a clear answer (or a clean close),
writes nothing, and the listener keeps serving other connections."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.hl7v2.hl7_support import (
    CORPUS,
    Hl7Hub,
    ack_segments,
    err_codes,
    message,
    msa,
    omi,
    read_frame,
    read_frames,
)

GOOD = message("ADT^A28^ADT_A05", "GOOD", "PID|1||1^^^HOSP^MR||Doe^J||19800101|F")


def still_serving(hub: Hl7Hub, n: int = 1) -> None:
    """A fresh connection is served normally (python-hl7 MLLPClient as the sender)."""
    ack = hub.send(omi(10_000 + n))
    assert msa(ack)[1] == "AA", ack


def raw_exchange(hub: Hl7Hub, payload: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", hub.port)) as s:
        s.sendall(payload)
        return read_frame(s, timeout)


@pytest.mark.parametrize(
    ("fixture", "ack_code", "error"),
    [
        ("bad/lf_separators.hl7", "AR", "100"),
        ("bad/wrong_field_separator.hl7", "AR", "100"),
        ("bad/missing_msh.hl7", "AR", "100"),
        ("bad/unsupported_version.hl7", "AR", "203"),
        ("bad/unsupported_type.hl7", "AR", "200"),
        ("bad/unsupported_event.hl7", "AR", "201"),
        ("bad/missing_pid3.hl7", "AE", "101"),
        ("bad/invalid_date.hl7", "AE", "102"),
    ],
)
def test_bad_message_is_refused(hl7_hub: Hl7Hub, fixture: str, ack_code: str, error: str) -> None:
    ack = hl7_hub.send_file(fixture)
    assert msa(ack)[1] == ack_code, ack
    assert err_codes(ack) == [error]
    assert hl7_hub.count() == 0
    still_serving(hl7_hub)


def test_lf_message_names_its_control_id_never_half_read(hl7_hub: Hl7Hub) -> None:
    ack = hl7_hub.send_file("bad/lf_separators.hl7")
    err = next(s for s in ack if s[0] == "ERR")
    assert "<LF>" in err[8]
    assert hl7_hub.count("ServiceRequest") == 0 and hl7_hub.count("Patient") == 0


def test_unframed_message_gets_ar_and_close(hl7_hub: Hl7Hub) -> None:
    payload = (CORPUS / "omi_o23_v251_ihe_rad4.hl7").read_bytes()
    with socket.create_connection(("127.0.0.1", hl7_hub.port)) as s:
        s.sendall(payload)  # no <VT> ... <FS><CR>
        ack = ack_segments(read_frame(s))
        s.settimeout(5)
        assert s.recv(10) == b""  # closed after the answer
    assert msa(ack)[1:3] == ["AR", "NR20240305101500"]  # the MSH was still readable
    assert hl7_hub.count() == 0
    still_serving(hl7_hub)


def test_garbage_bytes(hl7_hub: Hl7Hub) -> None:
    garbage = (CORPUS / "bad/garbage.bin").read_bytes()
    ack = ack_segments(raw_exchange(hl7_hub, garbage[16:]))  # starts with neither <VT> nor MSH
    assert msa(ack)[1] == "AR"
    framed = ack_segments(
        raw_exchange(hl7_hub, b"\x0b" + garbage.replace(b"\x1c\r", b"") + b"\x1c\r")
    )
    assert msa(framed)[1] == "AR" and err_codes(framed) == ["100"]
    assert hl7_hub.count() == 0
    still_serving(hl7_hub)


def test_oversize_message_refused_connection_stays_usable(
    hl7_hub_factory: Callable[..., Hl7Hub],
) -> None:
    hub = hl7_hub_factory(mllp_max_message_bytes=4096)
    big = message(
        "ADT^A28^ADT_A05",
        "BIG-1",
        "PID|1||1^^^HOSP^MR||Doe^J||19800101|F",
        "NTE|1||" + "x" * 50_000,
    )
    with socket.create_connection(("127.0.0.1", hub.port)) as s:
        s.sendall(b"\x0b" + big + b"\x1c\r")
        ack = ack_segments(read_frame(s))
        assert msa(ack)[1:3] == ["AR", "BIG-1"]
        assert "exceeds the limit of 4096 bytes" in next(x for x in ack if x[0] == "ERR")[8]
        s.sendall(b"\x0b" + GOOD + b"\x1c\r")  # the same connection goes on
        assert msa(ack_segments(read_frame(s)))[1] == "AA"
    assert hub.count("Patient") == 1


def test_partial_frame_then_disconnect_leaves_nothing(hl7_hub: Hl7Hub) -> None:
    payload = b"\x0b" + (CORPUS / "omi_o23_v251_ihe_rad4.hl7").read_bytes()
    with socket.create_connection(("127.0.0.1", hl7_hub.port)) as s:
        s.sendall(payload)  # never the <FS><CR>
    time.sleep(0.3)
    assert hl7_hub.count() == 0
    still_serving(hl7_hub)
    assert hl7_hub.count("ServiceRequest") == 1  # only still_serving's order


def test_trickler_does_not_block_others_and_is_cut_off(
    hl7_hub_factory: Callable[..., Hl7Hub],
) -> None:
    hub = hl7_hub_factory(mllp_idle_timeout=3.0)
    closed = threading.Event()

    def trickle() -> None:
        with socket.create_connection(("127.0.0.1", hub.port)) as s:
            try:
                for byte in b"\x0b" + GOOD:
                    s.sendall(bytes([byte]))
                    time.sleep(1.0)
            except OSError:
                closed.set()
                return
            s.settimeout(1)
            if s.recv(10) == b"":
                closed.set()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    time.sleep(1.5)
    started = time.monotonic()
    for n in range(20):
        assert msa(hub.send(omi(n)))[1] == "AA"
    assert time.monotonic() - started < 2.5  # served while the trickler was connected
    thread.join(10)
    assert closed.is_set()  # the frame did not complete within the timeout: dropped
    assert hub.count("Patient") == 20


def test_idle_connection_is_closed(hl7_hub_factory: Callable[..., Hl7Hub]) -> None:
    hub = hl7_hub_factory(mllp_idle_timeout=1.0)
    with socket.create_connection(("127.0.0.1", hub.port)) as s:
        s.settimeout(5)
        started = time.monotonic()
        assert s.recv(10) == b""
        assert 0.8 < time.monotonic() - started < 4


def test_unknown_sender_is_rejected(hl7_hub: Hl7Hub) -> None:
    ack = hl7_hub.send(
        message("ADT^A28^ADT_A05", "X1", "PID|1||1^^^HOSP^MR", sender="ROGUE|NOWHERE")
    )
    assert msa(ack)[1] == "AR" and err_codes(ack) == ["207"]
    assert "not an allowed peer" in next(x for x in ack if x[0] == "ERR")[8]
    assert hl7_hub.count() == 0
    still_serving(hl7_hub)


def test_sender_bound_to_an_address(hl7_hub_factory: Callable[..., Hl7Hub]) -> None:
    hub = hl7_hub_factory(hl7_allowed_peers=["RIS^HOSP@10.9.9.9", "RIS^STMARY@127.0.0.1"])
    refused = hub.send(GOOD)
    assert msa(refused)[1] == "AR"
    allowed = hub.send(GOOD.replace(b"RIS|HOSP", b"RIS|STMARY"))
    assert msa(allowed)[1] == "AA"


def test_star_needs_demo(tmp_path: Path) -> None:
    from tests.integration.hl7v2.hl7_support import start_hl7_hub

    with pytest.raises(ValueError, match="demo"):
        start_hl7_hub(tmp_path / "d1", hl7_allowed_peers=["*"])
    hub = start_hl7_hub(tmp_path / "d2", hl7_allowed_peers=["*"], demo=True)
    try:
        assert msa(hub.send(GOOD.replace(b"RIS|HOSP", b"ANY|ONE")))[1] == "AA"
    finally:
        hub.close()


def test_many_concurrent_connections(hl7_hub: Hl7Hub) -> None:
    errors: list[str] = []

    def sender(k: int) -> None:
        try:
            with hl7_hub.client() as c:
                for i in range(10):
                    ack = ack_segments(c.send_message(omi(k * 100 + i)))
                    if msa(ack)[1] != "AA":
                        errors.append(str(ack))
        except Exception as exc:  # collected and asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert hl7_hub.count("ServiceRequest") == 160


def test_pipelined_messages_on_one_connection_are_acked_in_order(hl7_hub: Hl7Hub) -> None:
    with socket.create_connection(("127.0.0.1", hl7_hub.port)) as s:
        s.sendall(b"".join(b"\x0b" + omi(n) + b"\x1c\r" for n in range(5)))
        controls = [msa(ack_segments(f))[2] for f in read_frames(s, 5)]
    assert controls == [f"OMI{n}" for n in range(5)]


def test_tls(hl7_hub_factory: Callable[..., Hl7Hub], tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    hub = hl7_hub_factory(mllp_tls_cert=cert, mllp_tls_key=key)
    context = ssl.create_default_context(cafile=str(cert))
    with (
        socket.create_connection(("127.0.0.1", hub.port)) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        s.sendall(b"\x0b" + GOOD + b"\x1c\r")
        assert msa(ack_segments(read_frame(s)))[1] == "AA"
    with socket.create_connection(("127.0.0.1", hub.port)) as plain:  # no TLS: no answer
        plain.sendall(b"\x0b" + GOOD + b"\x1c\r")
        plain.settimeout(5)
        try:
            data = plain.recv(100)
        except ConnectionResetError:
            data = b""
        assert b"MSA" not in data
    assert hub.count("Patient") == 1
