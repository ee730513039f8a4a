"""The DICOM File Format wrapper PixelHub stores every instance in (DICOM PS3.10 7.1).

A stored blob is ``128-byte preamble + "DICM" + File Meta Information + the data set exactly as
received`` (no transcoding). The File Meta Information is built here from four values only --
Media Storage SOP Class and Instance UID, Transfer Syntax UID, and PixelHub's implementation
identity -- so the same data set gives the same bytes (and the same SHA-256) whether it arrived
by C-STORE or through ``pixelhub import``.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "PREAMBLE",
    "NotPart10",
    "file_meta",
    "read_file_meta",
]

# generate_uid(entropy_srcs=["PixelHub DICOM implementation class"]) under pydicom's root
# (PS3.5 9.2: a UID derived from a registered root); fixed, so stored bytes stay stable.
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.8.498.76826405505054859195707835607896449770"
IMPLEMENTATION_VERSION_NAME = "PIXELHUB_01"
PREAMBLE = b"\x00" * 128 + b"DICM"


def _short(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    # Explicit VR Little Endian, 2-byte length form (PS3.5 7.1.2).
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw  # UI is padded with NUL (PS3.5 6.2)


def file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """Preamble, prefix and File Meta Information group (0002) in Explicit VR Little Endian."""
    name = IMPLEMENTATION_VERSION_NAME.encode("ascii")
    if len(name) % 2:
        name += b" "
    body = b"".join(
        (
            # (0002,0001) File Meta Information Version, OB: 4-byte length form
            struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",
            _short(0x0002, 0x0002, b"UI", _uid(sop_class_uid)),
            _short(0x0002, 0x0003, b"UI", _uid(sop_instance_uid)),
            _short(0x0002, 0x0010, b"UI", _uid(transfer_syntax_uid)),
            _short(0x0002, 0x0012, b"UI", _uid(IMPLEMENTATION_CLASS_UID)),
            _short(0x0002, 0x0013, b"SH", name),
        )
    )
    group_length = _short(0x0002, 0x0000, b"UL", struct.pack("<I", len(body)))
    return PREAMBLE + group_length + body


class NotPart10(ValueError):
    """The bytes are not a DICOM file (PS3.10 7.1: preamble, "DICM", group 0002)."""


def read_file_meta(fp: BinaryIO) -> tuple[int, dict[int, str]]:
    """Read a Part 10 file's meta group from ``fp`` (at its start): the offset where the data set
    begins and the text values of the group's UI elements by element number (0x0002 Media
    Storage SOP Class UID, 0x0003 Instance UID, 0x0010 Transfer Syntax UID)."""
    head = fp.read(132)
    if len(head) != 132 or head[128:] != b"DICM":
        raise NotPart10("not a DICOM Part 10 file (no DICM prefix)")
    values: dict[int, str] = {}
    offset = 132
    while True:
        header = fp.read(8)
        if not header:  # the file holds the file meta only (an empty data set)
            break
        if len(header) < 8:
            raise NotPart10("file meta information truncated")
        group, element = struct.unpack("<HH", header[:4])
        if group != 0x0002:
            break
        vr = header[4:6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            more = fp.read(4)
            if len(more) < 4:
                raise NotPart10("file meta information truncated")
            (length,) = struct.unpack("<I", more)
            offset += 12
        else:
            (length,) = struct.unpack("<H", header[6:])
            offset += 8
        if length > 1 << 20:
            raise NotPart10("file meta information element too long")
        value = fp.read(length)
        if len(value) < length:
            raise NotPart10("file meta information truncated")
        offset += length
        if vr == b"UI":
            values[element] = value.rstrip(b"\x00 ").decode("ascii", "replace")
    if 0x0010 not in values:
        raise NotPart10("file meta information has no Transfer Syntax UID (0002,0010)")
    return offset, values
