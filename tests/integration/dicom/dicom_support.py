"""Helpers for the DICOM integration tests: a hub with the real ``dicom`` channel, dcmtk's tools
(called by absolute path: pynetdicom's own scripts of the same names shadow them in a virtualenv),
a pynetdicom SCU for crafted bad input, and FHIR look-ups."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config
from pynetdicom.association import Association

from hub.auth import Principal
from hub.blobs import open_blob_store
from hub.composition import Hub
from hub.imaging.study_aggregator import study_resource_id
from tests.e2e.support import make_hub

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "dicom"
ADMIN = Principal("test", scopes=frozenset({"*"}))
PEERS = ["STORESCU", "DCMSEND", "ECHOSCU", "PYSCU", "ORTHANC@127.0.0.1"]
AET = "PIXELHUB"
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_tool(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A dcmtk tool by absolute path (``/usr/bin/storescu``...), with TCP_NODELAY=1."""
    assert args[0].startswith("/usr/bin/"), "call dcmtk by absolute path"
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, env=DCMTK_ENV, check=False
    )


@dataclass
class DicomHub:
    hub: Hub
    port: int
    data_dir: Path

    @property
    def store(self) -> Any:
        return self.hub.engine.dicom_store  # type: ignore[attr-defined]

    # -- senders -------------------------------------------------------------------------------
    def echoscu(self, aet: str = "ECHOSCU") -> subprocess.CompletedProcess[str]:
        return run_tool("/usr/bin/echoscu", "-aet", aet, "-aec", AET, "127.0.0.1", str(self.port))

    def storescu(
        self, *files: Path | str, aet: str = "STORESCU"
    ) -> subprocess.CompletedProcess[str]:
        return run_tool(
            "/usr/bin/storescu",
            "-aet",
            aet,
            "-aec",
            AET,
            "127.0.0.1",
            str(self.port),
            *map(str, files),
        )

    def dcmsend(
        self, *files: Path | str, aet: str = "DCMSEND", options: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        return run_tool(
            "/usr/bin/dcmsend", *options, "-aet", aet, "-aec", AET, "127.0.0.1", str(self.port),
            *map(str, files),
        )  # fmt: skip

    def associate(self, *contexts: tuple[str, Sequence[str]], aet: str = "PYSCU") -> Association:
        ae = AE(ae_title=aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        for abstract, syntaxes in contexts or ((CT_CLASS, [ExplicitVRLittleEndian]),):
            ae.add_requested_context(abstract, list(syntaxes))
        return ae.associate("127.0.0.1", self.port, ae_title=AET)

    def send_raw(self, path: Path, *, context: tuple[str, Sequence[str]] | None = None) -> Dataset:
        """C-STORE the bytes of a Part 10 file as they are (pynetdicom's chunked send: the
        command's UIDs come from the file meta, the data set is not decoded)."""
        meta = pydicom.filereader.read_file_meta_info(path)
        cx = context or (str(meta.MediaStorageSOPClassUID), [str(meta.TransferSyntaxUID)])
        previous = _config.STORE_SEND_CHUNKED_DATASET
        _config.STORE_SEND_CHUNKED_DATASET = True
        try:
            assoc = self.associate(cx)
            assert assoc.is_established, "association refused"
            try:
                status = assoc.send_c_store(path)
            finally:
                assoc.release()
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = previous
        return status

    def assert_still_serving(self) -> None:
        """C-ECHO and a good C-STORE still work (the SCP survived whatever came before)."""
        echo = self.echoscu()
        assert echo.returncode == 0, echo.stderr
        good = make_ct(sop=generate_uid(), study=generate_uid())
        path = self.data_dir.parent / f"good-{good.SOPInstanceUID}.dcm"
        good.save_as(path, enforce_file_format=True)
        sent = self.storescu(path)
        assert sent.returncode == 0, sent.stderr
        assert self.store.get(good.SOPInstanceUID) is not None

    def blob(self, key: str) -> bytes:
        with open_blob_store(self.data_dir).open(key) as fp:
            return fp.read()

    # -- FHIR ----------------------------------------------------------------------------------
    def search(self, resource_type: str, *params: tuple[str, str]) -> list[dict[str, Any]]:
        bundle = self.hub.service.search(ADMIN, resource_type, list(params))
        data: dict[str, Any] = orjson.loads(orjson.dumps(bundle))
        return [
            e["resource"]
            for e in data.get("entry", [])
            if e.get("search", {}).get("mode") != "include"
        ]

    def total(self, resource_type: str, *params: tuple[str, str]) -> int:
        bundle = self.hub.service.search(ADMIN, resource_type, [*params, ("_summary", "count")])
        return int(bundle["total"])

    def read(self, reference: str) -> dict[str, Any]:
        rtype, rid = reference.split("/")[:2]
        stored = self.hub.service.read(ADMIN, rtype, rid)
        assert stored.data is not None
        data: dict[str, Any] = orjson.loads(stored.data)
        return data

    def study(
        self, study_uid: str, *, instances: int | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        """The ImagingStudy of ``study_uid`` once aggregated (with ``instances`` instances)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.search(
                "ImagingStudy", ("identifier", f"urn:dicom:uid|urn:oid:{study_uid}")
            )
            if found and (instances is None or found[0]["numberOfInstances"] == instances):
                assert found[0]["id"] == study_resource_id(study_uid)
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"study {study_uid} not aggregated in {timeout} s: {found}")
            time.sleep(0.05)

    def close(self) -> None:
        self.hub.close()


def start_dicom_hub(data_dir: Path, **overrides: Any) -> DicomHub:
    settings: dict[str, Any] = {
        "dicom_port": 0,
        "channels": ["dicom"],
        "dicom_allowed_peers": PEERS,
        "dicom_aggregation_quiet_seconds": 1.0,
        **overrides,
    }
    hub = make_hub(data_dir, **settings)
    ports = hub.start_channels()
    hub.runner.start()
    return DicomHub(hub, ports["dicom"], data_dir)


def make_ct(
    *,
    sop: str,
    study: str,
    series: str | None = None,
    patient_id: str = "CT-PAT-1",
    name: str = "Doe^Jane",
    rows: int = 8,
    charset: str | None = None,
) -> Dataset:
    """A small valid CT Image Storage instance (Explicit VR Little Endian)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CT_CLASS
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series or generate_uid()
    ds.Modality = "CT"
    ds.PatientID = patient_id
    ds.PatientName = name
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = "20240305"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC-1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Rows = ds.Columns = rows
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(rows * rows * 2)
    return ds


def encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
