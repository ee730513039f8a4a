"""A pydicom pixel data decoder plugin for JPEG Extended with 12-bit samples (DICOM PS3.5 A.4.1,
``1.2.840.10008.1.2.4.51`` Process 4), common in older CT and MR archives.

pydicom's GDCM plugin refuses 12-bit samples and its Pillow plugin cannot read them; the other
decoder that can (pylibjpeg-libjpeg) is GPL. python-gdcm's JPEG codec decodes them with its
12-bit IJG library (the same pixels as dcmtk's ``dcmdjpeg``; it first writes "Unsupported JPEG
data precision 12" to stderr, then retries with that library). Registered by ``_transcode``, after
pydicom's own plugins, so 8-bit JPEG Extended still goes to them.
"""

from __future__ import annotations

from typing import Any

from pydicom import uid

try:
    import gdcm  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - python-gdcm is a dependency
    gdcm = None

DECODER_DEPENDENCIES = {uid.JPEGExtended12Bit: ("python-gdcm>=3.0.10",)}
LABEL = "pixelhub-gdcm-12bit"


def is_available(transfer_syntax: str) -> bool:
    return gdcm is not None and transfer_syntax in DECODER_DEPENDENCIES


def decode_frame(src: bytes, runner: Any) -> bytes:
    """One frame's JPEG codestream decoded to native samples (``bits_allocated`` wide)."""
    if runner.bits_stored <= 8:
        raise NotImplementedError("8-bit JPEG Extended is left to pydicom's own plugins")
    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    pixel_data = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    pixel_data.SetValue(fragments.__ref__())
    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((runner.columns, runner.rows, 1))
    image.SetDataElement(pixel_data)
    kind = gdcm.PhotometricInterpretation.GetPIType(str(runner.photometric_interpretation))
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(kind))
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGExtendedProcess2_4))
    bits = runner.bits_stored
    image.SetPixelFormat(
        gdcm.PixelFormat(
            runner.samples_per_pixel, runner.bits_allocated, bits, bits - 1,
            runner.pixel_representation,
        )
    )  # fmt: skip
    decoded = image.GetBuffer()  # GDCM hands char* back as str
    if not decoded:
        raise RuntimeError("GDCM could not decode the 12-bit JPEG frame")
    return bytes(decoded.encode("utf-8", "surrogateescape"))
