"""A cheap structural check of a received data set: every element fits, nothing is cut short.

pydicom reads headers tolerantly (a data set cut in the middle of an element is returned without
an error, and ``stop_before_pixels`` never looks at the pixel data), so the channel walks the whole
encoded data set once, reading only element headers and seeking over values (DICOM PS3.5 7.1
data element encoding, 7.5 nesting of data sets, A.4 encapsulated pixel data). A length that runs
past the end, a missing sequence or item delimiter, or an unknown VR in an explicit VR transfer
syntax is a :class:`DicomStoreError` with status 0xC000. Values are never decoded.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from adapters.dicom._errors import CANNOT_UNDERSTAND, DicomStoreError

UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xE000, 0xE00D, 0xE0DD
# VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 Table 7.1-1)
LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
SHORT_VRS = frozenset(b"AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US".split())
MAX_DEPTH = 64


class _Walker:
    def __init__(self, fp: BinaryIO, end: int, *, implicit: bool, little: bool) -> None:
        self.fp = fp
        self.end = end
        self.implicit = implicit
        self.little = little

    def fail(self, text: str) -> DicomStoreError:
        return DicomStoreError(CANNOT_UNDERSTAND, text)

    def read(self, n: int, what: str) -> bytes:
        data = self.fp.read(n)
        if len(data) != n:
            raise self.fail(f"Data set truncated in {what}")
        return data

    def skip(self, length: int, tag: tuple[int, int]) -> None:
        position = self.fp.tell()
        if position + length > self.end:
            raise self.fail(f"Data set truncated: ({tag[0]:04X},{tag[1]:04X}) runs past the end")
        self.fp.seek(position + length)

    def dataset(self, *, until_item_end: bool, depth: int, implicit: bool, little: bool) -> None:
        """Walk elements to the end (top level) or to an item delimiter (nested)."""
        if depth > MAX_DEPTH:
            raise self.fail("Sequences nested too deeply")
        order = "<" if little else ">"
        while True:
            position = self.fp.tell()
            if position >= self.end:
                if until_item_end:
                    raise self.fail("Data set truncated: an item has no delimiter")
                return
            head = self.read(8, "an element header")
            group, element = struct.unpack(order + "HH", head[:4])
            if group == 0xFFFE:
                if element == ITEM_END and until_item_end:
                    return
                raise self.fail(f"Unexpected delimiter (FFFE,{element:04X})")
            if implicit:
                (length,) = struct.unpack(order + "I", head[4:])
                vr = b""
            else:
                vr = head[4:6]
                if vr in LONG_VRS:
                    (length,) = struct.unpack(order + "I", self.read(4, "an element length"))
                elif vr in SHORT_VRS:
                    (length,) = struct.unpack(order + "H", head[6:])
                else:
                    shown = vr.decode("latin-1").encode("unicode_escape").decode("ascii")
                    raise self.fail(f"Invalid VR '{shown}' in ({group:04X},{element:04X})")
            tag = (group, element)
            if length != UNDEFINED:
                self.skip(length, tag)
                continue
            if not implicit and vr not in (b"SQ", b"UN", b"OB", b"OW"):
                raise self.fail(f"Undefined length on VR {vr.decode()} ({group:04X},{element:04X})")
            # UN of undefined length holds a sequence in implicit VR little endian (PS3.5 6.2.2)
            nested_implicit = implicit or vr == b"UN"
            nested_little = little or vr == b"UN"
            self.sequence(depth + 1, implicit=nested_implicit, little=nested_little)

    def sequence(self, depth: int, *, implicit: bool, little: bool) -> None:
        """Items up to the sequence delimiter (also encapsulated pixel data fragments)."""
        order = "<" if little else ">"
        while True:
            head = self.read(8, "a sequence")
            group, element, length = struct.unpack(order + "HHI", head)
            if group != 0xFFFE:
                raise self.fail(f"Expected an item, found ({group:04X},{element:04X})")
            if element == SEQUENCE_END:
                return
            if element != ITEM:
                raise self.fail(f"Unexpected delimiter (FFFE,{element:04X}) in a sequence")
            if length == UNDEFINED:
                self.dataset(until_item_end=True, depth=depth, implicit=implicit, little=little)
            else:
                self.skip(length, (group, element))


def check_structure(fp: BinaryIO, start: int, end: int, *, implicit: bool, little: bool) -> None:
    """Walk the data set encoded in ``fp[start:end]``; raise ``DicomStoreError`` if broken."""
    fp.seek(start)
    walker = _Walker(fp, end, implicit=implicit, little=little)
    walker.dataset(until_item_end=False, depth=0, implicit=implicit, little=little)
