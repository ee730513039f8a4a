"""Helpers for the HL7 v2 integration tests: start a hub with the channel, send, look things up."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hl7.client
import orjson

from hub.auth import Principal
from hub.composition import Hub
from tests.e2e.support import make_hub

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "hl7v2"
PEERS = [
    "EPICADT^STMARY",
    "RIS^STMARY",
    "HNAM^CLINIC_NORD",
    "MEDITECH^GENHOSP",
    "MPI^REGION",
    "RIS^NORTHRAD",
    "REPORTING^NORTHRAD",
    "CPOE^WESTCLINIC",
    "RIS^HOSP",
    "OLDRIS^STMARY",
]
AUTHORITIES = {"STMARY": "urn:oid:2.16.840.1.113883.3.1"}
ADMIN = Principal("test", scopes=frozenset({"*"}))
VT, FS_CR = b"\x0b", b"\x1c\r"


@dataclass
class Hl7Hub:
    hub: Hub
    port: int

    def client(self, timeout: float = 10.0) -> hl7.client.MLLPClient:
        c = hl7.client.MLLPClient("127.0.0.1", self.port)
        c.socket.settimeout(timeout)
        return c

    def send(self, message: bytes | str) -> list[list[str]]:
        """Send one message with python-hl7's MLLPClient; the ACK's segments, split on ``|``."""
        with self.client() as c:
            return ack_segments(c.send_message(message))

    def send_file(self, name: str) -> list[list[str]]:
        return self.send((CORPUS / name).read_bytes())

    def search(self, resource_type: str, *params: tuple[str, str]) -> list[dict[str, Any]]:
        bundle = self.hub.service.search(ADMIN, resource_type, list(params))
        data: dict[str, Any] = orjson.loads(orjson.dumps(bundle))
        return [
            e["resource"]
            for e in data.get("entry", [])
            if e.get("search", {}).get("mode") != "include"
        ]

    def read(self, reference: str) -> dict[str, Any]:
        rtype, rid = reference.split("/")
        stored = self.hub.service.read(ADMIN, rtype, rid)
        assert stored.data is not None
        data: dict[str, Any] = orjson.loads(stored.data)
        return data

    def count(self, resource_type: str | None = None) -> int:
        return self.hub.engine.repository.count(resource_type)

    def close(self) -> None:
        self.hub.close()


def start_hl7_hub(data_dir: Path, **overrides: Any) -> Hl7Hub:
    settings: dict[str, Any] = {
        "mllp_port": 0,
        "channels": ["hl7v2"],
        "hl7_allowed_peers": PEERS,
        "hl7_authority_systems": AUTHORITIES,
        "mllp_idle_timeout": 30.0,
    }
    settings.update(overrides)
    hub = make_hub(data_dir, **settings)
    ports = hub.start_channels()
    return Hl7Hub(hub, ports["mllp"])


def ack_segments(raw: bytes | str) -> list[list[str]]:
    data = raw.encode() if isinstance(raw, str) else raw
    assert data.startswith(VT) and data.endswith(FS_CR), data
    text = data[1:-2].decode("latin-1")
    return [s.split("|") for s in text.split("\r") if s]


def msa(ack: list[list[str]]) -> list[str]:
    return next(s for s in ack if s[0] == "MSA")


def err_codes(ack: list[list[str]]) -> list[str]:
    """ERR-3.1 (v2.5+) or ERR-1.4.1 (before), per ERR segment."""
    out = []
    for seg in ack:
        if seg[0] != "ERR":
            continue
        if len(seg) > 3 and seg[3]:
            out.append(seg[3].split("^")[0])
        else:
            out.append(seg[1].split("^")[3].split("&")[0])
    return out


def read_frame(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """One MLLP frame from a raw socket (b"" if the peer closed first)."""
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(FS_CR):
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data


def read_frames(sock: socket.socket, count: int, timeout: float = 10.0) -> list[bytes]:
    """``count`` MLLP frames from a raw socket, however the peer's writes were split."""
    sock.settimeout(timeout)
    data = b""
    while data.count(FS_CR) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return [VT + f.lstrip(VT) + FS_CR for f in data.split(FS_CR) if f]


def message(
    kind: str = "ADT^A04^ADT_A01",
    control: str = "C1",
    *body: str,
    sender: str = "RIS|HOSP",
    version: str = "2.5.1",
    extra_msh: str = "",
) -> bytes:
    msh = f"MSH|^~\\&|{sender}|PIXELHUB|HOSP|20240305101500+0100||{kind}|{control}|P|{version}{extra_msh}"
    return ("\r".join([msh, *body]) + "\r").encode()


def omi(n: int, *, accession: str | None = None, sender: str = "RIS|HOSP") -> bytes:
    acc = accession or f"ACC{n}"
    return message(
        "OMI^O23^OMI_O23",
        f"OMI{n}",
        f"PID|1||MRN{n % 50}^^^HOSP^MR||Doe^Jane{n % 50}||19700101|F",
        f"ORC|NW|PL{n}^RIS|FL{n}^RIS||SC||||20240305101500+0100",
        "TQ1|1||||||20240306080000+0100||R",
        f"OBR|1|PL{n}^RIS|FL{n}^RIS|CTHEAD^CT Head^L|||||||||||||||||||CT",
        f"IPC|{acc}|RP{n}|1.2.3.{n}|SPS{n}|CT^CT^DCM",
        sender=sender,
    )
