"""A strict parser of HL7 v2 ER7 encoding ("pipe and hat"; HL7 v2.5.1 ch. 2 §2.5-§2.7).

* Delimiters come from the message itself: ``MSH-1`` is the field separator, ``MSH-2`` the
  component, repetition, escape and subcomponent characters (and v2.7's truncation character).
* Segments end with ``<CR>``. ``<CR><LF>`` is tolerated; a message whose segments are separated
  by ``<LF>`` alone is rejected (``AR``, 100) rather than read as a lone MSH.
* ``MSH-18`` (table 0211) picks the character set: ASCII, ISO 8859-1..15, UTF-8. Without MSH-18
  the standard says ASCII; bytes beyond ASCII are then read as UTF-8 when they are valid UTF-8,
  else as ISO 8859-1 (what undeclared feeds actually send). A declared charset is enforced.
* Escape sequences (§2.7): ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``, ``\\Xhh..\\`` (bytes in the message's
  charset), ``\\.br\\`` and ``\\.sp\\`` as line breaks, highlighting ``\\H\\ \\N\\`` and
  ``\\Z..\\`` dropped; anything else, or an unterminated sequence, is a data type error (102).
* ``""`` is kept verbatim: it is the v2 "delete this value" null (§2.5.3).

Every error is an ``Hl7Error`` carrying the ACK code and table 0357 condition.
"""

from __future__ import annotations

import re

from adapters.hl7v2._errors import (
    DATA_TYPE_ERROR,
    SEGMENT_SEQUENCE_ERROR,
    TABLE_VALUE_NOT_FOUND,
    Hl7Error,
)
from mappings.hl7v2_model import ErrorLocation, Field, Hl7Message, Segment

# HL7 table 0211 alternate character sets -> Python codecs
CHARSETS = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "8859/1": "iso8859-1",
    "ISO IR100": "iso8859-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "ISO IR192": "utf-8",
}
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")


def codec_for(charset_field: str) -> str | None:
    """The Python codec for an MSH-18 value; ``None`` for "not declared"."""
    name = charset_field.strip().upper()
    if not name:
        return None
    codec = CHARSETS.get(name)
    if codec is None:
        raise Hl7Error(
            "AR",
            TABLE_VALUE_NOT_FOUND,
            f"MSH-18 character set {charset_field!r} is not supported (HL7 table 0211: ASCII, "
            "8859/1..8859/15, UNICODE UTF-8)",
            ErrorLocation("MSH", 1, 18),
        )
    return codec


def _reject(code: int, text: str, location: ErrorLocation | None = None) -> Hl7Error:
    return Hl7Error("AR", code, text, location)


def parse_message(data: bytes) -> Hl7Message:
    """Parse one ER7 message (the MLLP frame's content)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.startswith(b"MSH"):
        start = data[:20].decode("latin-1", "replace")
        raise _reject(
            SEGMENT_SEQUENCE_ERROR, f"A message starts with an MSH segment, not {start!r}"
        )
    if len(data) < 8:
        raise _reject(SEGMENT_SEQUENCE_ERROR, "The MSH segment is truncated")
    if b"\r" not in data and b"\n" in data:
        raise _reject(
            SEGMENT_SEQUENCE_ERROR,
            "Segments are separated by <LF>; HL7 v2 (ch. 2 §2.5.1) requires <CR>",
            ErrorLocation("MSH"),
        )
    data = data.replace(b"\r\n", b"\r")
    if b"\n" in data:
        raise _reject(
            SEGMENT_SEQUENCE_ERROR,
            "A bare <LF> was found: segments end with <CR> (ch. 2 §2.5.1)",
        )
    fs = chr(data[3])
    head_end = data.find(b"\r")
    head = data[: head_end if head_end >= 0 else len(data)].decode("latin-1")
    enc_end = head.find(fs, 4)
    encoding = head[4:enc_end] if enc_end >= 0 else head[4:]
    _check_delimiters(fs, encoding)
    msh_fields = head.split(fs)
    charset_field = msh_fields[17] if len(msh_fields) > 17 else ""
    charset_field = charset_field.split(encoding[1])[0]  # first repetition
    codec = codec_for(charset_field)
    if codec is None:
        try:
            text = data.decode("ascii")
            codec = "ascii"
        except UnicodeDecodeError:
            try:
                text = data.decode("utf-8")
                codec = "utf-8"
            except UnicodeDecodeError:
                text = data.decode("iso8859-1")
                codec = "iso8859-1"
    else:
        try:
            text = data.decode(codec)
        except UnicodeDecodeError as exc:
            raise _reject(
                DATA_TYPE_ERROR,
                f"Byte {data[exc.start]:#04x} at offset {exc.start} is not valid in the declared "
                f"character set {charset_field!r} (MSH-18)",
                ErrorLocation("MSH", 1, 18),
            ) from None
    return _split(text, fs, encoding, codec)


def _check_delimiters(fs: str, encoding: str) -> None:
    where = ErrorLocation("MSH", 1, 1)
    if fs.isalnum() or fs in " \r\n":
        raise _reject(DATA_TYPE_ERROR, f"MSH-1 field separator {fs!r} is not a delimiter", where)
    if len(encoding) not in (4, 5):
        raise _reject(
            DATA_TYPE_ERROR,
            f"MSH-2 encoding characters {encoding!r}: expected 4 (or 5 from v2.7), like ^~\\&",
            ErrorLocation("MSH", 1, 2),
        )
    chars = fs + encoding
    if len(set(chars)) != len(chars) or any(c.isalnum() or c in " \r\n" for c in encoding):
        raise _reject(
            DATA_TYPE_ERROR,
            f"MSH-1/MSH-2 delimiters {chars!r} must be distinct non-alphanumeric characters",
            ErrorLocation("MSH", 1, 2),
        )


def _split(text: str, fs: str, encoding: str, codec: str) -> Hl7Message:
    cs, rs, esc, ss = encoding[0], encoding[1], encoding[2], encoding[3]
    unescape = _Unescaper(fs, cs, rs, esc, ss, codec)
    segments: list[Segment] = []
    counts: dict[str, int] = {}
    for index, raw in enumerate(text.split("\r")):
        if not raw:
            continue
        name = raw[:3]
        if not _SEGMENT_ID.fullmatch(name) or (len(raw) > 3 and raw[3] != fs):
            raise _reject(
                SEGMENT_SEQUENCE_ERROR,
                f"Segment {index + 1} ({raw[:12]!r}) does not start with a segment id followed by "
                f"the field separator {fs!r}",
                ErrorLocation(name if _SEGMENT_ID.fullmatch(name) else "", 1),
            )
        if name == "MSH" and segments:
            raise _reject(SEGMENT_SEQUENCE_ERROR, "A second MSH segment: one message per frame")
        counts[name] = seq = counts.get(name, 0) + 1
        parts = raw.split(fs)
        fields: list[Field] = [[[[name]]]]
        start = 1
        if name == "MSH":
            fields.append([[[fs]]])
            fields.append([[[parts[1] if len(parts) > 1 else ""]]])
            start = 2
        for n, value in enumerate(parts[start:], start=len(fields)):
            if not value:
                fields.append([])
                continue
            if rs not in value and ss not in value and esc not in value:  # the common case
                fields.append([[[c] for c in value.split(cs)] if cs in value else [[value]]])
                continue
            try:
                fields.append(
                    [
                        [[unescape(s) if esc in s else s for s in c.split(ss)] for c in r.split(cs)]
                        for r in value.split(rs)
                    ]
                )
            except ValueError as exc:
                raise Hl7Error(
                    "AE", DATA_TYPE_ERROR, f"{name}-{n}: {exc}", ErrorLocation(name, seq, n)
                ) from None
        segments.append(Segment(name, fields, seq, raw if name[0] == "Z" else ""))
    return Hl7Message(segments, encoding, fs, codec)


class _Unescaper:
    """Resolves §2.7 escape sequences in one leaf value."""

    def __init__(self, fs: str, cs: str, rs: str, esc: str, ss: str, codec: str) -> None:
        self.esc = esc
        self.codec = codec
        self.simple = {"F": fs, "S": cs, "R": rs, "E": esc, "T": ss, ".br": "\n", ".sp": "\n"}
        self.dropped = ("H", "N", ".fi", ".nf", ".in", ".ti", ".sk", ".ce")

    def __call__(self, value: str) -> str:
        esc = self.esc
        out: list[str] = []
        i = 0
        while True:
            j = value.find(esc, i)
            if j < 0:
                out.append(value[i:])
                return "".join(out)
            out.append(value[i:j])
            k = value.find(esc, j + 1)
            if k < 0:
                raise ValueError(f"unterminated escape sequence in {value!r}")
            seq = value[j + 1 : k]
            if seq in self.simple:
                out.append(self.simple[seq])
            elif seq.startswith("X") and _HEX.fullmatch(seq[1:]):
                try:
                    out.append(bytes.fromhex(seq[1:]).decode(self.codec))
                except UnicodeDecodeError:
                    raise ValueError(f"\\{seq}\\ is not valid in charset {self.codec}") from None
            elif seq.startswith(self.dropped) or seq.startswith("Z"):
                pass
            else:
                raise ValueError(f"unsupported escape sequence \\{seq}\\")
            i = k + 1


def escape(value: str, encoding: str = "^~\\&", fs: str = "|") -> str:
    """Escape a text for an ER7 field (§2.7), e.g. for ACK texts."""
    cs, rs, esc, ss = encoding[0], encoding[1], encoding[2], encoding[3]
    out = value.replace(esc, f"{esc}E{esc}")
    for ch, code in ((fs, "F"), (cs, "S"), (rs, "R"), (ss, "T")):
        out = out.replace(ch, f"{esc}{code}{esc}")
    return out.replace("\r", f"{esc}.br{esc}").replace("\n", f"{esc}.br{esc}")
