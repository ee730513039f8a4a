"""SOAP 1.2 + WS-Addressing + MTOM/XOP reading and answering (adapters/xds/_soap.py)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lxml import etree

from adapters.xds._soap import (
    SOAP,
    WSA,
    Attachment,
    SoapFault,
    fault_response,
    mtom_response,
    read_request,
    soap_response,
)
from hub.errors import PayloadTooLarge

XDSB = "urn:ihe:iti:xds-b:2007"
ACTION = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"


def envelope(body: str, action: str | None = ACTION, message_id: str = "urn:uuid:1") -> bytes:
    headers = f"<wsa:Action>{action}</wsa:Action>" if action else ""
    headers += f"<wsa:MessageID>{message_id}</wsa:MessageID>"
    return (
        f'<env:Envelope xmlns:env="{SOAP}" xmlns:wsa="{WSA}"><env:Header>{headers}</env:Header>'
        f"<env:Body>{body}</env:Body></env:Envelope>"
    ).encode()


def document(inner: str) -> str:
    return (
        f'<xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="{XDSB}">'
        f'<xdsb:Document id="Doc1">{inner}</xdsb:Document>'
        "</xdsb:ProvideAndRegisterDocumentSetRequest>"
    )


async def chunks_of(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def read(content_type: str, data: bytes, tmp_path: Path, limit: int = 1 << 20) -> object:
    return asyncio.run(
        read_request(content_type, chunks_of(data), spool_dir=str(tmp_path), limit=limit)
    )


def mtom(parts: list[tuple[str, str, bytes]], boundary: str = "MIMEb", start: str = "") -> bytes:
    out = b""
    for content_id, content_type, body in parts:
        out += (
            (
                f"--{boundary}\r\nContent-Type: {content_type}\r\nContent-ID: <{content_id}>\r\n\r\n"
            ).encode()
            + body
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


MTOM_TYPE = 'multipart/related; boundary=MIMEb; type="application/xop+xml"; start="<root@x>"'


def test_a_plain_envelope_gives_its_action_message_id_and_body(tmp_path: Path) -> None:
    data = base64.b64encode(b"%PDF-1.4 hello").decode()
    request = read("application/soap+xml; charset=UTF-8", envelope(document(data)), tmp_path)
    assert request.action == ACTION  # type: ignore[attr-defined]
    assert request.message_id == "urn:uuid:1"  # type: ignore[attr-defined]
    body = request.body  # type: ignore[attr-defined]
    assert body.tag == f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest"
    assert request.content_of(body[0]) == b"%PDF-1.4 hello"  # type: ignore[attr-defined]


def test_an_mtom_message_keeps_its_documents_on_disk(tmp_path: Path) -> None:
    include = '<xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:doc1%40x"/>'
    root = envelope(document(include))
    pdf = b"%PDF-1.4 " + bytes(range(256)) * 50
    data = mtom([
        ("root@x", 'application/xop+xml; charset=UTF-8; type="application/soap+xml"', root),
        ("doc1@x", "application/pdf", pdf),
    ])  # fmt: skip
    request = read(MTOM_TYPE, data, tmp_path)
    content = request.content_of(request.body[0])  # type: ignore[attr-defined]
    assert isinstance(content, Attachment)
    assert content.read() == pdf and content.size == len(pdf)
    assert content.content_type == "application/pdf"
    request.discard()  # type: ignore[attr-defined]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content_type", "data", "words"),
    [
        ("text/xml", envelope("<a/>"), "neither"),
        ("application/soap+xml", b"<not xml", "well-formed"),
        ("application/soap+xml", envelope("<a/>", action=None), "wsa:Action"),
        ("application/soap+xml", envelope(""), "no Body"),
        (
            "application/soap+xml",
            b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><a/>'
            b"</e:Body></e:Envelope>",
            "SOAP 1.2",
        ),
        ('multipart/related; boundary=MIMEb; type="text/xml"', b"", "xop+xml"),
        (MTOM_TYPE, b"--MIMEb\r\nContent-ID: <root@x>\r\n\r\n<a/>", "closing boundary"),
        (MTOM_TYPE, mtom([("other@x", "application/xop+xml", envelope("<a/>"))]), "start part"),
        (MTOM_TYPE, mtom([("root@x", "text/plain", envelope("<a/>"))]), "not application/xop"),
    ],
)
def test_bad_packaging_is_a_sender_fault(
    tmp_path: Path, content_type: str, data: bytes, words: str
) -> None:
    with pytest.raises(SoapFault) as caught:
        read(content_type, data, tmp_path)
    assert words in caught.value.message
    assert caught.value.code == "Sender"
    assert list(tmp_path.iterdir()) == []


def test_an_include_naming_no_part_is_a_fault(tmp_path: Path) -> None:
    include = '<xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:gone@x"/>'
    data = mtom([("root@x", "application/xop+xml", envelope(document(include)))])
    request = read(MTOM_TYPE, data, tmp_path)
    with pytest.raises(SoapFault, match="names no MIME part"):
        request.content_of(request.body[0])  # type: ignore[attr-defined]


def test_entities_are_never_expanded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    xxe = (
        f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file://{secret}">]>'
        f'<env:Envelope xmlns:env="{SOAP}" xmlns:wsa="{WSA}"><env:Header>'
        f"<wsa:Action>{ACTION}</wsa:Action></env:Header><env:Body><a>&x;</a></env:Body>"
        "</env:Envelope>"
    ).encode()
    request = read("application/soap+xml", xxe, tmp_path / "spool")
    assert b"TOP SECRET" not in etree.tostring(request.body)  # type: ignore[attr-defined]


def test_an_oversize_message_is_413_and_leaves_nothing(tmp_path: Path) -> None:
    data = mtom([
        ("root@x", "application/xop+xml", envelope("<a/>")),
        ("doc@x", "application/pdf", bytes(5000)),
    ])  # fmt: skip
    with pytest.raises(PayloadTooLarge):
        read(MTOM_TYPE, data, tmp_path, limit=2000)
    assert list(tmp_path.iterdir()) == []


def test_answers_carry_the_addressing_headers(tmp_path: Path) -> None:
    body = etree.Element("{urn:x}Response")
    content_type, data = soap_response("urn:x:Response", "urn:uuid:1", body)
    assert content_type.startswith("application/soap+xml")
    root = etree.fromstring(data)
    assert root.findtext(f"{{{SOAP}}}Header/{{{WSA}}}Action") == "urn:x:Response"
    assert root.findtext(f"{{{SOAP}}}Header/{{{WSA}}}RelatesTo") == "urn:uuid:1"
    assert root.find(f"{{{SOAP}}}Body/{{urn:x}}Response") is not None


def test_a_fault_names_its_code_and_subcode() -> None:
    fault = SoapFault("no such action", subcode="wsa:ActionNotSupported")
    _, data = fault_response(fault, "urn:uuid:9")
    root = etree.fromstring(data)
    values = root.findall(f".//{{{SOAP}}}Value")
    assert [v.text for v in values] == ["env:Sender", "wsa:ActionNotSupported"]
    assert root.findtext(f".//{{{SOAP}}}Text") == "no such action"


def test_an_mtom_answer_is_read_back_as_sent(tmp_path: Path) -> None:
    doc = tmp_path / "doc.bin"
    doc.write_bytes(bytes(range(256)) * 100)
    include = etree.Element(f"{{{XDSB}}}Document")
    etree.SubElement(include, "{http://www.w3.org/2004/08/xop/include}Include").set(
        "href", "cid:doc1@pixelhub"
    )
    body = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetResponse")
    body.append(include)
    content_type, chunks = mtom_response(
        "urn:r", "urn:uuid:2", body,
        {"doc1@pixelhub": Attachment("doc1@pixelhub", "application/dicom", str(doc))},
    )  # fmt: skip
    request = read(content_type, b"".join(chunks), tmp_path / "spool")
    content = request.content_of(request.body[0])  # type: ignore[attr-defined]
    assert isinstance(content, Attachment) and content.read() == doc.read_bytes()
