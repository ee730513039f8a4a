"""Changing an instance's transfer syntax (DICOM PS3.5 8.2, 10): into a native little-endian
syntax only, from another one or by decompressing its pixel data (PixelHub never compresses).
Shared by WADO-RS (an ``Accept`` naming a syntax the instance is not stored in) and the C-GET
SCP (a requester that did not accept the stored syntax). Decoders: pydicom's plugins (Pillow,
GDCM, pyjpegls, pylibjpeg-openjpeg for HTJ2K), plus ``_jpeg12`` for 12-bit JPEG Extended,
registered here after pydicom's own.
"""

from __future__ import annotations

import io

from pydicom import dcmread
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID, JPEGExtended12Bit

from adapters.dicom import _jpeg12
from hub.errors import Unprocessable

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
# Native (uncompressed) little-endian syntaxes: their pixel data are the same bytes in each.
NATIVE_LE = frozenset({IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE})
# What pydicom's decoders raise for a syntax without a usable plugin or damaged pixel data.
DECODE_ERRORS = (NotImplementedError, RuntimeError, ValueError, AttributeError, KeyError)

if _jpeg12.LABEL not in get_decoder(JPEGExtended12Bit).available_plugins:
    get_decoder(JPEGExtended12Bit).add_plugin(_jpeg12.LABEL, (_jpeg12.__name__, "decode_frame"))


def can_decode(transfer_syntax: str) -> bool:
    try:
        return bool(get_decoder(UID(transfer_syntax)).is_available)
    except NotImplementedError:
        return False


def can_convert(stored: str, target: str) -> bool:
    """Whether an instance stored as ``stored`` can be served in ``target``: only into a
    native little-endian syntax, from another one or by decompressing."""
    if target not in (EXPLICIT_LE, IMPLICIT_LE):
        return False
    return stored in NATIVE_LE or (UID(stored).is_encapsulated and can_decode(stored))


def transcode(data: bytes, target: str) -> bytes:
    """A Part 10 instance re-encoded in a native syntax, decompressed first if need be (the SOP
    Instance UID is kept: PS3.5 8.2 allows a lossless change of syntax); 422 when its pixel
    data cannot be decoded here."""
    ds = dcmread(io.BytesIO(data))
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        try:
            ds.decompress(generate_instance_uid=False)
        except DECODE_ERRORS as exc:
            raise Unprocessable(f"The pixel data cannot be decompressed here: {exc}") from exc
    ds.file_meta.TransferSyntaxUID = UID(target)
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=target == IMPLICIT_LE, little_endian=True, enforce_file_format=True)
    return out.getvalue()
