"""The stored file format (PS3.10 7.1 file meta we build), the file meta reader, the structural
walk that catches truncated data sets, and the status each error becomes (PS3.4 B.2.3)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from adapters.dicom import (
    CANNOT_UNDERSTAND,
    DATASET_MISMATCH,
    OUT_OF_RESOURCES,
    DicomStoreError,
    file_meta,
    read_file_meta,
    store_status,
)
from adapters.dicom._errors import comment
from adapters.dicom._part10 import IMPLEMENTATION_CLASS_UID, NotPart10
from adapters.dicom._structure import check_structure
from hub.errors import Conflict, OutOfResources
from mappings.dicom_instance import DicomMappingError

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "dicom"
TESTDATA = [
    "CT_small.dcm",  # explicit VR little endian
    "MR_small.dcm",
    "rtplan.dcm",  # implicit VR little endian, nested sequences
    "MR_small_bigendian.dcm",  # explicit VR big endian
    "examples_ybr_color.dcm",  # JPEG baseline, encapsulated fragments
    "waveform_ecg.dcm",
    "test-SR.dcm",
    "liver_1frame.dcm",
]


def part10_files() -> list[Path]:
    found = [Path(str(get_testdata_file(n))) for n in TESTDATA]
    return found + sorted(FIXTURES.glob("*.dcm"))


def split(path: Path) -> tuple[bytes, int, str]:
    raw = path.read_bytes()
    offset, meta = read_file_meta(io.BytesIO(raw))
    return raw, offset, meta[0x0010]


def walk(raw: bytes, offset: int, ts: str) -> None:
    uid = pydicom.uid.UID(ts)
    check_structure(
        io.BytesIO(raw), offset, len(raw), implicit=uid.is_implicit_VR, little=uid.is_little_endian
    )


def test_file_meta_is_read_back_by_pydicom() -> None:
    meta = file_meta("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5", ExplicitVRLittleEndian)
    ds = Dataset()
    ds.PatientID = "P1"
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=False, little_endian=True, enforce_file_format=False)
    parsed = pydicom.dcmread(io.BytesIO(meta + buffer.getvalue()))
    assert parsed.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert parsed.file_meta.MediaStorageSOPInstanceUID == "1.2.3.4.5"
    assert parsed.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert parsed.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert parsed.PatientID == "P1"
    offset, values = read_file_meta(io.BytesIO(meta))
    assert offset == len(meta)
    assert values[0x0003] == "1.2.3.4.5" and values[0x0010] == ExplicitVRLittleEndian


def test_file_meta_is_deterministic() -> None:
    one = file_meta("1.2.3", "4.5.6", ImplicitVRLittleEndian)
    assert one == file_meta("1.2.3", "4.5.6", ImplicitVRLittleEndian)
    assert one != file_meta("1.2.3", "4.5.7", ImplicitVRLittleEndian)


@pytest.mark.parametrize(
    "data", [b"", b"\x00" * 132, b"\x00" * 128 + b"DICM", b"\x00" * 128 + b"DICM\x02\x00"]
)
def test_read_file_meta_refuses_non_part10(data: bytes) -> None:
    with pytest.raises(NotPart10):
        read_file_meta(io.BytesIO(data))


@pytest.mark.parametrize("path", part10_files(), ids=lambda p: p.name)
def test_every_sample_walks_clean(path: Path) -> None:
    raw, offset, ts = split(path)
    walk(raw, offset, ts)


@pytest.mark.parametrize("path", part10_files(), ids=lambda p: p.name)
def test_every_truncation_is_caught(path: Path) -> None:
    raw, offset, ts = split(path)
    body = len(raw) - offset
    for cut in {offset + 3, offset + body // 3, offset + body // 2, len(raw) - 1}:
        with pytest.raises(DicomStoreError) as caught:
            walk(raw[:cut], offset, ts)
        assert caught.value.status == CANNOT_UNDERSTAND


def test_big_endian_sample_is_big_endian() -> None:
    _, _, ts = split(Path(str(get_testdata_file("MR_small_bigendian.dcm"))))
    assert ts == ExplicitVRBigEndian


def test_an_unknown_vr_is_caught() -> None:
    raw, offset, ts = split(Path(str(get_testdata_file("CT_small.dcm"))))
    # the first data set element's VR (explicit VR little endian) becomes "ZZ"
    broken = raw[: offset + 4] + b"ZZ" + raw[offset + 6 :]
    with pytest.raises(DicomStoreError, match="Invalid VR 'ZZ'"):
        walk(broken, offset, ts)


def test_an_unterminated_sequence_is_caught() -> None:
    element = struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    with pytest.raises(DicomStoreError):
        check_structure(
            io.BytesIO(element + item), 0, len(element + item), implicit=False, little=True
        )


def test_status_of_each_error() -> None:
    assert store_status(DicomStoreError(DATASET_MISMATCH, "x"))[0] == DATASET_MISMATCH
    missing = DicomMappingError(
        "missing StudyInstanceUID (0020,000D)", tag="(0020,000D)", keyword="StudyInstanceUID"
    )
    assert store_status(missing) == (DATASET_MISMATCH, "Missing StudyInstanceUID (0020,000D)")
    bad = DicomMappingError(
        "SOPInstanceUID (0008,0018) is not a valid UID", tag="(0008,0018)", keyword="SOPInstanceUID"
    )
    assert store_status(bad)[0] == CANNOT_UNDERSTAND
    assert store_status(OutOfResources("disk full"))[0] == OUT_OF_RESOURCES
    assert store_status(Conflict("x"))[0] == CANNOT_UNDERSTAND
    assert store_status(InvalidDicomError("not dicom"))[0] == CANNOT_UNDERSTAND
    status, text = store_status(RuntimeError("secret detail"))
    assert status == CANNOT_UNDERSTAND and "secret" not in text


def test_error_comment_is_a_valid_lo() -> None:
    text = comment("Données\\invalides " + "x" * 100)
    assert len(text) <= 64 and "\\" not in text and text.isascii()


def test_meta_dataset_roundtrip_with_pydicom_writer() -> None:
    # Our group 0002 equals what pydicom writes for the same values (modulo implementation).
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = "1.2.3"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ours = pydicom.dcmread(
        io.BytesIO(file_meta("1.2.840.10008.5.1.4.1.1.2", "1.2.3", ExplicitVRLittleEndian) + b""),
        force=True,
    ).file_meta
    for keyword in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID"):
        assert ours[keyword].value == meta[keyword].value
