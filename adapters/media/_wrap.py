"""DICOM objects made from uploaded photos, videos and PDFs (DICOM PS3.3, PS3.5, PS3.10).

A photo becomes a VL Photographic Image (PS3.3 A.32.4; VL Endoscopic A.32.1 or VL Microscopic
A.32.2 for the modalities ES and GM): a JPEG stream encapsulated unchanged as one fragment
(PS3.5 8.2.1, A.4), or 8-bit RGB pixels in Explicit VR Little Endian. A video becomes a Video
Photographic Image (A.32.7; Video Endoscopic A.32.5, Video Microscopic A.32.6): its MP4 of one
H.264 track (``_video``) is the one fragment of the Pixel Data, after an empty Basic Offset Table,
in MPEG-4 AVC/H.264 High Profile / Level 4.1 (PS3.5 8.2.7, A.4), written straight to a file. A
PDF becomes an Encapsulated PDF (PS3.3 A.45.1). Photos and PDFs are returned as Part-10 bytes
(PS3.10 7.1), videos as a Part-10 file, for the DICOM importer; the caller generates the UIDs and
has stripped the capture of its metadata. Free text is tidied to fit its VR; identifiers that do
not fit are refused (422) rather than cut.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, encapsulate_buffer
from pydicom.filewriter import dcmwrite
from pydicom.tag import Tag
from pydicom.uid import (
    MPEG4HP41,
    UID,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    VideoEndoscopicImageStorage,
    VideoMicroscopicImageStorage,
    VideoPhotographicImageStorage,
    VLEndoscopicImageStorage,
    VLMicroscopicImageStorage,
    VLPhotographicImageStorage,
)

from adapters.media._video import H264Video
from hub.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType

__all__ = [
    "PHOTO_SOP_CLASSES",
    "VIDEO_SOP_CLASSES",
    "WrapAttributes",
    "wrap_jpeg",
    "wrap_pdf",
    "wrap_pixels",
    "wrap_video",
]

# The VL IOD of each photo modality (PS3.3 A.32.1, A.32.2, A.32.4: each fixes its Modality).
PHOTO_SOP_CLASSES: Mapping[str, UID] = MappingProxyType(
    {
        "XC": VLPhotographicImageStorage,
        "ES": VLEndoscopicImageStorage,
        "GM": VLMicroscopicImageStorage,
    }
)
# The video IOD of each of the same modalities (PS3.3 A.32.7, A.32.5, A.32.6).
VIDEO_SOP_CLASSES: Mapping[str, UID] = MappingProxyType(
    {
        "XC": VideoPhotographicImageStorage,
        "ES": VideoEndoscopicImageStorage,
        "GM": VideoMicroscopicImageStorage,
    }
)
# PS3.5 Table 6.2-1: a value of explicit length is at most 2^32 - 2 bytes (0xFFFFFFFF is undefined).
_MAX_VALUE_BYTES = 0xFFFFFFFE
_JPEG = "ISO_10918_1"  # PS3.3 C.7.6.1.1.5.1: the Lossy Image Compression Method of JPEG
_LO = 64  # characters of an LO value (PS3.5 Table 6.2-1)
_DATE = re.compile(r"[0-9]{8}")  # DA (PS3.5 Table 6.2-1): a partial date is not one
_UNSAFE_TEXT = re.compile(r"[\\\x00-\x1f\x7f]")
_TEXT_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})


@dataclass(frozen=True)
class WrapAttributes:
    """What the caller knows about the upload, in DICOM form."""

    patient_id: str
    issuer: tuple[str, str, str]  # (0010,0021), (0040,0032), (0040,0033): see issuer_of()
    patient_name: str  # PN, "Family^Given" or ""
    birth_date: str  # DA, YYYYMMDD or ""
    sex: str  # M, F, O or ""
    study_uid: str
    series_uid: str
    sop_uid: str
    accession: str  # "" allowed (type 2)
    captured: datetime  # aware: content and acquisition date and time
    modality: str  # photos, videos: XC, ES or GM (*_SOP_CLASSES), "" as XC; PDFs are always DOC
    body_site: tuple[str, str, str] | None  # (scheme, code, meaning), scheme "SCT"
    laterality: str  # L, R, B, U or "" (unknown)
    study_description: str
    series_description: str
    operator: str  # PN or ""
    device: tuple[str, str]  # (Manufacturer, Manufacturer's Model Name), "" when unknown
    encounter: str  # FHIR Encounter id -> Admission ID (0038,0010), "" allowed
    institution: str  # "" allowed
    series_number: int = 1
    instance_number: int = 1


def wrap_jpeg(
    jpeg: bytes,
    *,
    attrs: WrapAttributes,
    width: int,
    height: int,
    components: int,
    photometric: str,
) -> bytes:
    """A VL image (PS3.3 A.32.4, or A.32.1/A.32.2 for ES/GM) holding ``jpeg`` unchanged as the one
    fragment of its encapsulated Pixel Data, with a Basic Offset Table (PS3.5 A.4), in JPEG
    Baseline (PS3.5 8.2.1): ``photometric`` is ``YBR_FULL_422`` for subsampled colour (4:2:2 and
    4:2:0) and ``MONOCHROME2`` for grey.

    The VL Image Module (PS3.3 C.8.12.1.1) allows neither ``YBR_FULL`` (4:4:4) nor ``RGB`` in a
    lossy JPEG: such a photo is decoded and its pixels wrapped as ``wrap_pixels`` does, still
    marked lossy, rather than compressed a second time."""
    if photometric in ("YBR_FULL", "RGB") and components == 3:
        rgb = _decode(jpeg, width, height)
        return wrap_pixels(rgb, attrs=attrs, width=width, height=height, lossy_method=_JPEG)
    if (components, photometric) not in ((1, "MONOCHROME2"), (3, "YBR_FULL_422")):
        raise ValueError(f"{components} components as {photometric} is not a VL JPEG image")
    ds = _image(attrs, width, height, components, photometric, lossy_methods=(_JPEG,))
    ds.PixelData = encapsulate([jpeg], has_bot=True)
    ds["PixelData"].VR = "OB"
    return _part10(ds, JPEGBaseline8Bit)


def wrap_pixels(
    rgb: bytes, *, attrs: WrapAttributes, width: int, height: int, lossy_method: str = ""
) -> bytes:
    """A VL image (PS3.3 A.32.4, or A.32.1/A.32.2 for ES/GM) from 8-bit interleaved RGB pixels,
    in Explicit VR Little Endian (PS3.5 A.2). ``lossy_method`` names the lossy compression the
    pixels went through before (PS3.3 C.7.6.1.1.5, e.g. ``ISO_10918_1``), "" for none."""
    if len(rgb) != width * height * 3:
        raise ValueError(f"{len(rgb)} bytes are not {width}x{height} RGB pixels")
    methods = (lossy_method,) if lossy_method else ()
    ds = _image(attrs, width, height, 3, "RGB", lossy_methods=methods)
    ds.PixelData = rgb + b"\x00" * (len(rgb) % 2)  # OB values have even length (PS3.5 7.1.1)
    ds["PixelData"].VR = "OB"
    return _part10(ds, ExplicitVRLittleEndian)


def wrap_video(video: H264Video, *, attrs: WrapAttributes, path: str | Path) -> Path:
    """A Video Photographic Image (PS3.3 A.32.7, or A.32.5/A.32.6 for ES/GM) written to ``path``:
    the MP4 of ``video`` as the one fragment of its Pixel Data after an empty Basic Offset Table,
    in MPEG-4 AVC/H.264 High Profile / Level 4.1 (PS3.5 8.2.7, A.4), copied from its file while
    written, never held in memory. The Cine and Multi-frame modules (C.7.6.5, C.7.6.6) give its
    frame count and nominal frame time; 413 past the 2^32 - 2 bytes of one fragment."""
    size = video.path.stat().st_size
    if size > _MAX_VALUE_BYTES:
        raise PayloadTooLarge(f"A video of {size} bytes does not fit in one DICOM object")
    ds = _image(
        attrs, video.width, video.height, 3, "YBR_PARTIAL_420",
        lossy_methods=video.lossy_methods, classes=VIDEO_SOP_CLASSES,
    )  # fmt: skip
    ds.CineRate = round(video.frame_rate)
    ds.FrameTime = f"{float(1000 / video.frame_rate):.6g}"  # DS, milliseconds
    ds.NumberOfFrames = video.frames
    ds.FrameIncrementPointer = Tag(0x0018, 0x1063)  # Frame Time
    out = Path(path)
    with open(video.path, "rb") as mp4:
        ds.PixelData = encapsulate_buffer([mp4], has_bot=False)
        ds["PixelData"].VR = "OB"
        _meta(ds, MPEG4HP41)
        dcmwrite(out, ds, enforce_file_format=True)
    return out


def wrap_pdf(pdf_path: str | Path, *, attrs: WrapAttributes, title: str) -> bytes:
    """An Encapsulated PDF (PS3.3 A.45.1, C.24.2) holding the file's bytes. The file is read
    whole: uploads are limited to well below the 4 GiB an OB value can hold."""
    path = Path(pdf_path)
    size = path.stat().st_size
    if size > _MAX_VALUE_BYTES - 1:
        raise PayloadTooLarge(f"A PDF of {size} bytes does not fit in one DICOM object")
    pdf = path.read_bytes()
    if not pdf.startswith(b"%PDF-"):
        raise UnsupportedMediaType("The file is not a PDF")
    ds = _common(attrs, EncapsulatedPDFStorage, "DOC")
    # SC Equipment (C.8.6.1): made on a workstation, not scanned.
    ds.ConversionType = "WSD"
    # Encapsulated Document (C.24.2)
    ds.InstanceNumber = attrs.instance_number
    _content_time(ds, attrs.captured)
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = _text(title, 1024)  # ST
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + b"\x00" * (len(pdf) % 2)
    ds.EncapsulatedDocumentLength = len(pdf)
    return _part10(ds, ExplicitVRLittleEndian)


def _image(
    attrs: WrapAttributes,
    width: int,
    height: int,
    components: int,
    photometric: str,
    *,
    lossy_methods: tuple[str, ...],
    classes: Mapping[str, UID] = PHOTO_SOP_CLASSES,
) -> Dataset:
    """Every module of the VL image IODs (the video ones too, but their Cine and Multi-frame
    modules) but the Pixel Data itself; ``lossy_methods`` lists the lossy compressions the
    pixels went through, oldest first (PS3.3 C.7.6.1.1.5)."""
    modality = attrs.modality or "XC"
    if modality not in classes:
        raise Unprocessable(
            f"A capture of modality {modality!r} cannot be wrapped: one of XC, ES, GM"
        )
    ds = _common(attrs, classes[modality], modality)
    if attrs.operator:  # General Series (C.7.3.1); the Encapsulated Document Series has none
        ds.OperatorsName = _text(attrs.operator, _LO)
    # General Image (C.7.6.1) and VL Image (C.8.12.1)
    ds.InstanceNumber = attrs.instance_number
    ds.PatientOrientation = ""
    _content_time(ds, attrs.captured)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.LossyImageCompression = "01" if lossy_methods else "00"
    if lossy_methods:
        ds.LossyImageCompressionMethod = list(lossy_methods)
    if attrs.laterality:
        if attrs.laterality not in ("L", "R", "B", "U"):
            raise Unprocessable(f"Laterality {attrs.laterality!r} is not one of L, R, B, U")
        ds.ImageLaterality = attrs.laterality
    else:  # General Series (C.7.3.1): type 2C when Image Laterality is absent, here unknown
        ds.Laterality = ""
    if attrs.body_site:
        scheme, code, meaning = attrs.body_site
        ds.AnatomicRegionSequence = [_code(code, scheme, meaning)]
    # Image Pixel (C.7.6.3)
    ds.SamplesPerPixel = components
    ds.PhotometricInterpretation = photometric
    ds.Rows = height
    ds.Columns = width
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if components > 1:
        ds.PlanarConfiguration = 0
    # Acquisition Context (C.7.6.14): nothing is known of it.
    ds.AcquisitionContextSequence = []
    return ds


def _common(attrs: WrapAttributes, sop_class: str, modality: str) -> Dataset:
    """Patient, General Study, Patient Study, General Series, General Equipment and SOP Common
    (PS3.3 C.7.1.1, C.7.2.1, C.7.2.2, C.7.3.1, C.7.5.1, C.12.1)."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = attrs.sop_uid
    ds.PatientName = _text(attrs.patient_name, _LO)  # PN: 64 characters a component group
    ds.PatientID = _identifier(attrs.patient_id, _LO, "patient id")
    namespace, universal_id, universal_type = attrs.issuer
    if namespace:
        ds.IssuerOfPatientID = _text(namespace, _LO)
    if universal_id:
        qualifiers = Dataset()
        qualifiers.UniversalEntityID = universal_id
        qualifiers.UniversalEntityIDType = universal_type
        ds.IssuerOfPatientIDQualifiersSequence = [qualifiers]
    ds.PatientBirthDate = attrs.birth_date if _DATE.fullmatch(attrs.birth_date) else ""
    ds.PatientSex = attrs.sex if attrs.sex in ("M", "F", "O") else ""
    ds.StudyInstanceUID = attrs.study_uid
    ds.StudyDate = attrs.captured.strftime("%Y%m%d")
    ds.StudyTime = attrs.captured.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = _identifier(attrs.accession, 16, "accession number")
    if attrs.study_description:
        ds.StudyDescription = _text(attrs.study_description, _LO)
    if attrs.encounter:
        ds.AdmissionID = _text(attrs.encounter, _LO)
    ds.Modality = modality
    ds.SeriesInstanceUID = attrs.series_uid
    ds.SeriesNumber = attrs.series_number
    if attrs.series_description:
        ds.SeriesDescription = _text(attrs.series_description, _LO)
    manufacturer, model = attrs.device
    ds.Manufacturer = _text(manufacturer, _LO)
    if model:
        ds.ManufacturerModelName = _text(model, _LO)
    if attrs.institution:
        ds.InstitutionName = _text(attrs.institution, _LO)
    offset = attrs.captured.strftime("%z")
    if offset:
        ds.TimezoneOffsetFromUTC = offset
    return ds


def _content_time(ds: Dataset, captured: datetime) -> None:
    ds.ContentDate = captured.strftime("%Y%m%d")
    ds.ContentTime = captured.strftime("%H%M%S")
    ds.AcquisitionDateTime = captured.strftime("%Y%m%d%H%M%S%z")


def _decode(jpeg: bytes, width: int, height: int) -> bytes:
    """The 8-bit RGB pixels of a JPEG of the given size."""
    try:
        with Image.open(io.BytesIO(jpeg), formats=["JPEG"]) as image:
            if image.size != (width, height):
                raise Unprocessable(f"The JPEG is {image.size}, not {(width, height)}")
            return image.convert("RGB").tobytes()
    except (OSError, ValueError) as exc:
        raise Unprocessable(f"The JPEG cannot be decoded: {exc}") from None


def _text(value: str, limit: int) -> str:
    """``value`` as one DICOM string value: no backslash (the value delimiter) or control
    characters (PS3.5 6.2), cut to ``limit`` characters."""
    return _UNSAFE_TEXT.sub(" ", value)[:limit].rstrip()


def _identifier(value: str, limit: int, what: str) -> str:
    """``value`` unchanged, or 422 when it is not one DICOM string value of ``limit``."""
    if _text(value, limit) != value:
        raise Unprocessable(f"The {what} {value!r} does not fit DICOM ({limit} characters at most)")
    return value


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    """One item of a code sequence (PS3.3 Table 8.8-1): a code longer than 16 characters (an
    SCT concept id may have 18 digits) goes in Long Code Value."""
    item = Dataset()
    if len(value) > 16:
        item.LongCodeValue = _text(value, _LO)
    else:
        item.CodeValue = _text(value, 16)
    item.CodingSchemeDesignator = _text(scheme, 16)
    item.CodeMeaning = _text(meaning, _LO)
    return item


def _part10(ds: Dataset, transfer_syntax: str) -> bytes:
    """``ds`` as a DICOM file (PS3.10 7.1)."""
    _meta(ds, transfer_syntax)
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def _meta(ds: Dataset, transfer_syntax: str) -> None:
    """The File Meta Information of ``ds`` (PS3.10 7.1), and UTF-8 declared when any text needs
    it (PS3.3 C.12.1.1.2, ``ISO_IR 192``)."""
    if any(e.VR in _TEXT_VRS and not str(e.value).isascii() for e in ds.iterall()):
        ds.SpecificCharacterSet = "ISO_IR 192"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta = meta
