"""DICOM wrapping of photos and PDFs: read back with pydicom, checked by dciodvfy."""

from __future__ import annotations

import dataclasses
import io
import struct
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pydicom
import pypdfium2
import pytest
from PIL import Image
from pydicom.encaps import generate_frames
from pydicom.uid import (
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    VLEndoscopicImageStorage,
    VLMicroscopicImageStorage,
    VLPhotographicImageStorage,
    generate_uid,
)

from adapters.media._wrap import WrapAttributes, wrap_jpeg, wrap_pdf, wrap_pixels
from hub.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType

# dciodvfy's only remark on these objects: Study ID (type 2) is left empty, nothing to put in it.
EXPECTED_WARNINGS = {
    "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study ID"
}
CAPTURED = datetime(2026, 3, 4, 15, 16, 17, tzinfo=timezone(timedelta(hours=-5)))


def attributes(**changes: Any) -> WrapAttributes:
    base = WrapAttributes(
        patient_id="MRN-42",
        issuer=("HOSP", "1.2.840.99", "ISO"),
        patient_name="Doe^Jane",
        birth_date="19800102",
        sex="F",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_uid=generate_uid(),
        accession="ACC-7",
        captured=CAPTURED,
        modality="XC",
        body_site=("SCT", "69536005", "Head"),
        laterality="L",
        study_description="Wound care",
        series_description="Left heel",
        operator="Nurse^Ann",
        device=("Apple", "iPhone 15"),
        encounter="enc-123",
        institution="General Hospital",
    )
    return dataclasses.replace(base, **changes)


def photo(mode: str = "RGB", size: tuple[int, int] = (65, 33)) -> Image.Image:
    """A small gradient, odd-sized so that subsampled chroma has a partial block."""
    image = Image.new(mode, size)
    image.putdata(
        [
            (x * 4 % 256, y * 7 % 256, (x + y) % 256) if mode == "RGB" else (x * 3 + y) % 256
            for y in range(size[1])
            for x in range(size[0])
        ]
    )
    return image


def jpeg(image: Image.Image, **save: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, **save)
    return out.getvalue()


def conforming(
    part10: bytes, tmp_path: Path, assert_dicom_conforms: Callable[..., Any]
) -> pydicom.Dataset:
    path = tmp_path / "wrapped.dcm"
    path.write_bytes(part10)
    result = assert_dicom_conforms(path)
    assert set(result.warnings) <= EXPECTED_WARNINGS, result.warnings
    assert part10[128:132] == b"DICM"
    return pydicom.dcmread(path)


def assert_common(ds: pydicom.Dataset, attrs: WrapAttributes) -> None:
    assert ds.PatientID == "MRN-42"
    assert ds.IssuerOfPatientID == "HOSP"
    qualifiers = ds.IssuerOfPatientIDQualifiersSequence[0]
    assert (qualifiers.UniversalEntityID, qualifiers.UniversalEntityIDType) == ("1.2.840.99", "ISO")
    assert (ds.PatientBirthDate, ds.PatientSex) == ("19800102", "F")
    assert ds.StudyInstanceUID == attrs.study_uid
    assert ds.SeriesInstanceUID == attrs.series_uid
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID == attrs.sop_uid
    assert ds.AccessionNumber == "ACC-7"
    assert ds.AdmissionID == "enc-123"
    assert (ds.StudyDate, ds.StudyTime) == ("20260304", "151617")
    assert (ds.ContentDate, ds.ContentTime) == ("20260304", "151617")
    assert ds.AcquisitionDateTime == "20260304151617-0500"
    assert ds.TimezoneOffsetFromUTC == "-0500"
    assert ds.Manufacturer == "Apple"
    assert ds.InstitutionName == "General Hospital"


def assert_photo(ds: pydicom.Dataset, attrs: WrapAttributes) -> None:
    assert_common(ds, attrs)
    assert ds.SOPClassUID == VLPhotographicImageStorage
    assert ds.Modality == "XC"
    assert ds.ImageLaterality == "L"
    site = ds.AnatomicRegionSequence[0]
    assert (site.CodingSchemeDesignator, site.CodeValue, site.CodeMeaning) == (
        "SCT",
        "69536005",
        "Head",
    )
    assert ds.ManufacturerModelName == "iPhone 15"
    assert ds.OperatorsName == "Nurse^Ann"
    assert ds.ImageType == ["ORIGINAL", "PRIMARY"]
    assert "SpecificCharacterSet" not in ds  # all ASCII


def assert_one_fragment(ds: pydicom.Dataset, stream: bytes) -> None:
    """The JPEG stream byte for byte, with the one NUL an odd-length stream is padded with
    (PS3.5 A.4: fragments have even length)."""
    (fragment,) = generate_frames(ds.PixelData, number_of_frames=1)
    assert fragment[: len(stream)] == stream
    assert fragment[len(stream) :] == b"\x00" * (len(stream) % 2)


@pytest.mark.parametrize(("subsampling", "label"), [(2, "4:2:0"), (1, "4:2:2")], ids=["420", "422"])
def test_subsampled_jpeg_is_encapsulated_unchanged(
    subsampling: int, label: str, tmp_path: Path, assert_dicom_conforms: Callable[..., Any]
) -> None:
    attrs = attributes()
    stream = jpeg(photo(), subsampling=subsampling)
    part10 = wrap_jpeg(
        stream, attrs=attrs, width=65, height=33, components=3, photometric="YBR_FULL_422"
    )
    ds = conforming(part10, tmp_path, assert_dicom_conforms)
    assert_photo(ds, attrs)
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert (ds.Rows, ds.Columns, ds.SamplesPerPixel) == (33, 65, 3)
    assert (ds.PhotometricInterpretation, ds.PlanarConfiguration) == ("YBR_FULL_422", 0)
    assert (ds.LossyImageCompression, ds.LossyImageCompressionMethod) == ("01", "ISO_10918_1")
    assert_one_fragment(ds, stream)
    # A Basic Offset Table of one offset, 0 (PS3.5 A.4): item tag, length 4, value 0.
    assert ds.PixelData[:12] == struct.pack("<HHII", 0xFFFE, 0xE000, 4, 0)


def test_greyscale_jpeg_is_monochrome2(
    tmp_path: Path, assert_dicom_conforms: Callable[..., Any]
) -> None:
    stream = jpeg(photo("L"))
    part10 = wrap_jpeg(
        stream, attrs=attributes(), width=65, height=33, components=1, photometric="MONOCHROME2"
    )
    ds = conforming(part10, tmp_path, assert_dicom_conforms)
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation) == (1, "MONOCHROME2")
    assert "PlanarConfiguration" not in ds
    assert_one_fragment(ds, stream)


@pytest.mark.parametrize("photometric", ["YBR_FULL", "RGB"])
def test_full_chroma_jpeg_becomes_its_pixels_still_marked_lossy(
    photometric: str, tmp_path: Path, assert_dicom_conforms: Callable[..., Any]
) -> None:
    # The VL Image Module allows no YBR_FULL (4:4:4) or RGB JPEG: the decoded pixels go in instead.
    attrs = attributes()
    stream = jpeg(photo(), subsampling=0)
    part10 = wrap_jpeg(
        stream, attrs=attrs, width=65, height=33, components=3, photometric=photometric
    )
    ds = conforming(part10, tmp_path, assert_dicom_conforms)
    assert_photo(ds, attrs)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.PhotometricInterpretation == "RGB"
    assert (ds.LossyImageCompression, ds.LossyImageCompressionMethod) == ("01", "ISO_10918_1")
    with Image.open(io.BytesIO(stream)) as decoded:
        expected = decoded.convert("RGB").tobytes()
    assert ds.PixelData[: len(expected)] == expected


def test_rgb_pixels_are_lossless(tmp_path: Path, assert_dicom_conforms: Callable[..., Any]) -> None:
    attrs = attributes()
    pixels = photo().tobytes()  # 65 x 33 x 3: an odd length, padded
    ds = conforming(
        wrap_pixels(pixels, attrs=attrs, width=65, height=33), tmp_path, assert_dicom_conforms
    )
    assert_photo(ds, attrs)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (ds.PhotometricInterpretation, ds.PlanarConfiguration) == ("RGB", 0)
    assert ds.LossyImageCompression == "00"
    assert "LossyImageCompressionMethod" not in ds
    assert ds.PixelData == pixels + b"\x00"
    assert ds.pixel_array.shape == (33, 65, 3)
    assert ds.pixel_array.tobytes() == pixels


@pytest.mark.parametrize(
    ("modality", "sop_class", "iod"),
    [
        ("ES", VLEndoscopicImageStorage, "VLEndoscopicImage"),
        ("GM", VLMicroscopicImageStorage, "VLMicroscopicImage"),
        ("", VLPhotographicImageStorage, "VLPhotographicImage"),
    ],
)
def test_modality_chooses_the_vl_iod(
    modality: str,
    sop_class: str,
    iod: str,
    tmp_path: Path,
    assert_dicom_conforms: Callable[..., Any],
) -> None:
    attrs = attributes(modality=modality, body_site=None, laterality="")
    part10 = wrap_pixels(photo().tobytes(), attrs=attrs, width=65, height=33)
    path = tmp_path / "wrapped.dcm"
    path.write_bytes(part10)
    assert assert_dicom_conforms(path).iod == iod
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == sop_class
    assert ds.Modality == (modality or "XC")
    assert "AnatomicRegionSequence" not in ds
    assert "ImageLaterality" not in ds
    assert ds.Laterality == ""  # unknown, in the series instead


def test_non_ascii_text_declares_utf8(
    tmp_path: Path, assert_dicom_conforms: Callable[..., Any]
) -> None:
    attrs = attributes(patient_name="Müller^Jürgen", study_description="Brûlure du talon")
    ds = conforming(
        wrap_pixels(photo().tobytes(), attrs=attrs, width=65, height=33),
        tmp_path,
        assert_dicom_conforms,
    )
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert str(ds.PatientName) == "Müller^Jürgen"
    assert ds.StudyDescription == "Brûlure du talon"


def test_issuer_parts_only_when_set(
    tmp_path: Path, assert_dicom_conforms: Callable[..., Any]
) -> None:
    for issuer in (("", "", ""), ("HOSP", "", ""), ("", "https://ids.example/mrn", "URI")):
        ds = conforming(
            wrap_pixels(photo().tobytes(), attrs=attributes(issuer=issuer), width=65, height=33),
            tmp_path,
            assert_dicom_conforms,
        )
        assert ds.get("IssuerOfPatientID", "") == issuer[0]
        if issuer[1]:
            (qualifiers,) = ds.IssuerOfPatientIDQualifiersSequence
            assert qualifiers.UniversalEntityID == issuer[1]
            assert qualifiers.UniversalEntityIDType == issuer[2]
        else:
            assert "IssuerOfPatientIDQualifiersSequence" not in ds


def test_optional_text_left_out_and_odd_values_tidied(
    tmp_path: Path, assert_dicom_conforms: Callable[..., Any]
) -> None:
    attrs = attributes(
        accession="",
        encounter="",
        institution="",
        operator="",
        device=("", ""),
        birth_date="1980",  # a partial FHIR date is no DICOM DA
        sex="U",
        study_description="a\\b\nc" + "x" * 80,
        body_site=("SCT", "1234567890123456789", "Long concept id"),
        laterality="U",
    )
    ds = conforming(
        wrap_pixels(photo().tobytes(), attrs=attrs, width=65, height=33),
        tmp_path,
        assert_dicom_conforms,
    )
    assert (ds.AccessionNumber, ds.PatientBirthDate, ds.PatientSex, ds.Manufacturer) == ("",) * 4
    for keyword in ("AdmissionID", "InstitutionName", "OperatorsName", "ManufacturerModelName"):
        assert keyword not in ds
    assert ds.StudyDescription == "a b c" + "x" * 59
    site = ds.AnatomicRegionSequence[0]
    assert site.LongCodeValue == "1234567890123456789"
    assert "CodeValue" not in site
    assert ds.ImageLaterality == "U"


def write_pdf(path: Path, *, odd: bool) -> bytes:
    document = pypdfium2.PdfDocument.new()
    document.new_page(200, 100)
    document.save(str(path))
    document.close()
    data = path.read_bytes()
    if (len(data) % 2 == 1) != odd:
        data += b"\n"  # whitespace after %%EOF keeps it a valid PDF
        path.write_bytes(data)
    return data


@pytest.mark.parametrize("odd", [True, False], ids=["odd-length", "even-length"])
def test_pdf_is_encapsulated_whole(
    odd: bool, tmp_path: Path, assert_dicom_conforms: Callable[..., Any]
) -> None:
    source = tmp_path / "letter.pdf"
    data = write_pdf(source, odd=odd)
    attrs = attributes(modality="DOC")
    ds = conforming(
        wrap_pdf(source, attrs=attrs, title="Referral letter"), tmp_path, assert_dicom_conforms
    )
    assert_common(ds, attrs)
    assert ds.SOPClassUID == EncapsulatedPDFStorage
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.Modality == "DOC"
    assert ds.ConversionType == "WSD"
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert ds.DocumentTitle == "Referral letter"
    assert ds.BurnedInAnnotation == "YES"
    assert ds.ConceptNameCodeSequence == []
    assert ds.EncapsulatedDocumentLength == len(data)
    assert len(ds.EncapsulatedDocument) % 2 == 0
    assert ds.EncapsulatedDocument[: ds.EncapsulatedDocumentLength] == data
    for keyword in ("OperatorsName", "ImageLaterality", "AnatomicRegionSequence"):
        assert keyword not in ds  # not in the Encapsulated PDF IOD


def test_pdf_that_is_not_a_pdf(tmp_path: Path) -> None:
    source = tmp_path / "fake.pdf"
    source.write_bytes(b"<html></html>")
    with pytest.raises(UnsupportedMediaType):
        wrap_pdf(source, attrs=attributes(modality="DOC"), title="x")


def test_pdf_too_big_for_one_value(tmp_path: Path) -> None:
    source = tmp_path / "huge.pdf"
    with source.open("wb") as fp:
        fp.truncate(0xFFFFFFFF)  # sparse: nothing is written or read
    with pytest.raises(PayloadTooLarge):
        wrap_pdf(source, attrs=attributes(modality="DOC"), title="x")


@pytest.mark.parametrize(
    "changes",
    [
        {"modality": "OP"},
        {"modality": "DOC"},
        {"laterality": "left"},
        {"patient_id": "X" * 65},
        {"patient_id": "A\\B"},
        {"accession": "A" * 17},
    ],
)
def test_unwrappable_attributes_are_422(changes: dict[str, str]) -> None:
    with pytest.raises(Unprocessable):
        wrap_pixels(photo().tobytes(), attrs=attributes(**changes), width=65, height=33)


def test_wrong_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="RGB pixels"):
        wrap_pixels(b"\x00" * 10, attrs=attributes(), width=65, height=33)
    with pytest.raises(ValueError, match="not a VL JPEG"):
        wrap_jpeg(
            jpeg(photo()), attrs=attributes(), width=65, height=33, components=1, photometric="RGB"
        )
    with pytest.raises(Unprocessable, match="not"):
        wrap_jpeg(
            jpeg(photo(), subsampling=0),
            attrs=attributes(),
            width=64,
            height=33,
            components=3,
            photometric="YBR_FULL",
        )
