"""Helpers for the DICOM mapping tests: datasets built in memory, and a Part 10 round trip.

The round trip matters for character sets: pydicom encodes text with the dataset's Specific
Character Set (0008,0005) on writing and decodes the raw bytes on reading, which is exactly what
the storage SCP will see.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from mappings.dicom_to_imagingstudy import InstanceSummary, extract_instance_summary

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "dicom"
STUDY = "1.2.826.0.1.3680043.10.1234.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def make_dataset(
    *,
    series: str = "1",
    instance: str = "1",
    study: str = STUDY,
    sop_class: str = CT_IMAGE,
    **attributes: Any,
) -> Dataset:
    """A minimal instance: the four UIDs (study/series/instance suffixes), then ``attributes``.

    An attribute given as ``None`` is left out, so a test can drop a required UID.
    """
    ds = Dataset()
    values: dict[str, Any] = {
        "StudyInstanceUID": study,
        "SeriesInstanceUID": f"{study}.{series}",
        "SOPInstanceUID": f"{study}.{series}.{instance}",
        "SOPClassUID": sop_class,
        "Modality": "CT",
    }
    values.update(attributes)
    for keyword, value in values.items():
        if value is not None:
            setattr(ds, keyword, value)
    return ds


def encode(ds: Dataset) -> bytes:
    """``ds`` as a Part 10 file (Explicit VR Little Endian), in memory."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", CT_IMAGE)
    meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "1.2.3")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def decode(data: bytes) -> Dataset:
    """Read a Part 10 file from memory, header only, as the storage SCP will."""
    return pydicom.dcmread(BytesIO(data), stop_before_pixels=True)


def roundtrip(ds: Dataset) -> Dataset:
    """Write ``ds`` as a Part 10 file in memory and read it back."""
    return decode(encode(ds))


def summary(**kwargs: Any) -> InstanceSummary:
    """``extract_instance_summary`` of :func:`make_dataset` (no round trip)."""
    return extract_instance_summary(make_dataset(**kwargs))


def code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item
