"""Data for the WADO-RS / WADO-URI tests: two patients' studies sent to the served hub over
C-STORE by dcmtk's ``dcmsend`` (which proposes each file's own transfer syntax), built from
pydicom's test files (pydicom-data) with fresh UIDs, plus a small multipart/related reader."""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from tests.integration.dicom.dicom_support import DicomHub, make_ct, run_tool
from tests.integration.dicomweb.conftest import WebHub

# name -> pydicom test file (several share UIDs: each gets fresh ones here)
SAMPLES = {
    "mr_implicit": "MR_small_implicit.dcm",  # Implicit VR Little Endian, 64x64
    "jpeg": "SC_rgb_jpeg_dcmtk.dcm",  # JPEG Baseline, YBR_FULL, 100x100
    "j2k": "JPEG2000.dcm",  # JPEG 2000, 1024x256 (rows x columns)
    "jpeg_ll": "JPEG-LL.dcm",  # JPEG Lossless SV1, 1024x256
    "rle_mf": "emri_small_RLE.dcm",  # RLE Lossless, 10 frames of 64x64
    "native_mf": "emri_small.dcm",  # Explicit VR Little Endian, 10 frames of 64x64
    "sr": "test-SR.dcm",  # Comprehensive SR: no pixel data
}
PDF = b"%PDF-1.4\n" + b"% PixelHub WADO test document\n" * 60 + b"%%EOF\n"


@dataclass
class Sent:
    name: str
    path: Path
    study: str
    series: str
    sop: str
    syntax: str
    dataset: Dataset
    body: bytes  # the data set's bytes after the file meta (what C-STORE carries)


@dataclass
class WadoData:
    study: str  # patient WADO-A
    other_study: str  # patient WADO-B
    sent: dict[str, Sent] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Sent:
        return self.sent[name]


def ct_ramp(study: str, series: str, patient: str, number: int) -> Dataset:
    """A 64x64 CT whose stored values ramp 0..4095 (HU -1024..3071), window 40/400."""
    ds = make_ct(sop=generate_uid(), study=study, series=series, patient_id=patient, rows=64)
    ramp = np.linspace(0, 4095, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    ds.BitsStored, ds.HighBit = 12, 11
    ds.PixelData = ramp.tobytes()
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.InstanceNumber = number
    return ds


def encapsulated_pdf(study: str, series: str, patient: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"  # Encapsulated PDF Storage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientID, ds.PatientName, ds.Modality = patient, "Wado^Doc", "DOC"
    ds.StudyDate, ds.InstanceNumber = "20240305", 1
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.DocumentTitle = "Report"
    ds.BurnedInAnnotation = "YES"
    ds.EncapsulatedDocument = PDF + (b"\0" if len(PDF) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(PDF)  # without the padding
    return ds


def dataset_body(data: bytes) -> bytes:
    """The bytes after the File Meta Information (PS3.10 7.1)."""
    (group_length,) = struct.unpack("<I", data[140:144])
    return data[144 + group_length :]


def load(hub: WebHub, workdir: Path) -> WadoData:
    """Send both patients' studies to ``hub`` over C-STORE; wait until aggregated."""
    data = WadoData(generate_uid(), generate_uid())
    ct_series, mr_series, other_series, doc_series = (generate_uid() for _ in range(4))
    datasets: dict[str, Dataset] = {
        f"ct{n}": ct_ramp(data.study, ct_series, "WADO-A", n) for n in (1, 2, 3)
    }
    for name, filename in SAMPLES.items():
        ds = pydicom.dcmread(get_testdata_file(filename))
        ds.StudyInstanceUID = data.study
        ds.SeriesInstanceUID = doc_series if name == "sr" else mr_series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientID, ds.PatientName = "WADO-A", "Wado^Alice"
        datasets[name] = ds
    datasets["pdf"] = encapsulated_pdf(data.study, doc_series, "WADO-A")
    # its series sorts first in the study: a study thumbnail must pass over it
    datasets["broken"] = ct_ramp(data.study, "1.1." + generate_uid(prefix=None), "WADO-A", 1)
    datasets["broken"].PixelData = datasets["broken"].PixelData[:-100]  # 50 pixels missing
    datasets["other_ct"] = ct_ramp(data.other_study, other_series, "WADO-B", 1)
    workdir.mkdir(parents=True, exist_ok=True)
    for name, ds in datasets.items():
        path = workdir / f"{name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        raw = path.read_bytes()
        data.sent[name] = Sent(
            name, path, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
            str(ds.SOPInstanceUID), str(ds.file_meta.TransferSyntaxUID), ds, dataset_body(raw),
        )  # fmt: skip
    port = json.loads((hub.data_dir / "ports.json").read_text())["dicom"]
    sent = run_tool(
        "/usr/bin/dcmsend", "-dn", "-aet", "DCMSEND", "-aec", "PIXELHUB", "127.0.0.1", str(port),
        *(str(s.path) for s in data.sent.values() if s.syntax != ImplicitVRLittleEndian),
    )  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr
    # dcmsend would convert Implicit VR files to Explicit VR: pynetdicom proposes the file's own
    scu = DicomHub(hub=None, port=port, data_dir=workdir)  # type: ignore[arg-type]
    for s in data.sent.values():
        if s.syntax == ImplicitVRLittleEndian:
            assert scu.send_raw(s.path).Status == 0
    hub.study(data.study)
    hub.study(data.other_study)
    return data


def stored_files(hub: WebHub) -> dict[str, bytes]:
    """The Part 10 files in the hub's blob store, by SOP Instance UID (read from the disk)."""
    found = {}
    for path in (hub.data_dir / "blobs").rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            try:
                ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
            except pydicom.errors.InvalidDicomError:
                continue
            found[str(ds.SOPInstanceUID)] = raw
    return found


def read_multipart(response: httpx.Response) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart/related response: (lower-cased headers, body)."""
    media = response.headers["content-type"]
    assert media.startswith("multipart/related"), media
    boundary = next(
        p.split("=", 1)[1].strip('"') for p in media.split(";") if p.strip().startswith("boundary")
    )
    pieces = (b"\r\n" + response.content).split(b"\r\n--" + boundary.encode())
    assert pieces[-1].startswith(b"--"), "no closing delimiter"
    parts = []
    for piece in pieces[1:-1]:
        head, _, body = piece[2:].partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("ascii").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, body))
    return parts


def decode_image(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))
