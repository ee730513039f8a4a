"""Real DICOM peers against the ``dicom`` channel: dcmtk's echoscu, storescu (uncompressed) and
dcmsend (compressed syntaxes), and Orthanc pushing as a modality; then FHIR search finds the
studies with the right counts. Every ology fixture goes through the wire and its ImagingStudy is
checked against the mapping of the same objects."""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from mappings.dicom_instance import extract_instance_summary
from mappings.dicom_to_imagingstudy import dicom_to_imagingstudy, dicom_to_specimen
from tests.integration.dicom.conftest import Orthanc
from tests.integration.dicom.dicom_support import FIXTURES, DicomHub, encode, make_ct
from tests.unit.mappings.test_dicom_golden import CASES


def case_files() -> list[Path]:
    """Every object of the golden cases, once (some cases share files)."""
    paths: list[Path] = []
    for case in CASES:
        for name in case.testdata:
            path = Path(str(get_testdata_file(name)))
            if path not in paths:
                paths.append(path)
        for name in case.generated:
            path = FIXTURES / f"{name}.dcm"
            if path not in paths:
                paths.append(path)
    return paths


def test_echoscu(dicom_hub: DicomHub) -> None:
    result = dicom_hub.echoscu()
    assert result.returncode == 0, result.stderr


def test_storescu_then_fhir_search(dicom_hub: DicomHub, tmp_path: Path) -> None:
    study_a, study_b, series_a = generate_uid(), generate_uid(), generate_uid()
    files = []
    for i in range(3):
        ds = make_ct(
            sop=generate_uid(),
            study=study_a,
            series=series_a,
            patient_id="MRN-7",
            name="Roe^Richard",
        )
        ds.InstanceNumber = i + 1
        files.append(tmp_path / f"a{i}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    other = make_ct(sop=generate_uid(), study=study_b, patient_id="MRN-7", name="Roe^Richard")
    other.Modality = "MR"
    other.SOPClassUID = other.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    files.append(tmp_path / "b.dcm")
    other.save_as(files[-1], enforce_file_format=True)
    result = dicom_hub.storescu(*files)
    assert result.returncode == 0, result.stderr
    study = dicom_hub.study(study_a, instances=3)
    assert study["numberOfSeries"] == 1 and study["modality"][0]["code"] == "CT"
    dicom_hub.study(study_b, instances=1)
    system = "urn:pixelhub:patient-id"
    assert dicom_hub.total("ImagingStudy", ("patient.identifier", f"{system}|MRN-7")) == 2
    assert dicom_hub.total("ImagingStudy", ("modality", "CT")) == 1
    assert (
        dicom_hub.total(
            "ImagingStudy", ("modality", "http://dicom.nema.org/resources/ontology/DCM|MR")
        )
        == 1
    )
    assert dicom_hub.total("Patient", ("identifier", f"{system}|MRN-7")) == 1
    assert dicom_hub.store.count() == 4


COMPRESSED = [
    "examples_ybr_color.dcm",  # JPEG Baseline
    "RG3_J2KI.dcm",  # JPEG 2000
    "emri_small_RLE.dcm",  # RLE Lossless
    "JPEG-LL.dcm",  # JPEG Lossless SV1
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS Lossless
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
]


def test_dcmsend_compressed_syntaxes_stored_as_received(dicom_hub: DicomHub) -> None:
    paths = [Path(str(get_testdata_file(n))) for n in COMPRESSED]
    paths.append(FIXTURES / "es-colonoscopy.dcm")  # MPEG-4 AVC/H.264
    # never decompress: the SCP must accept each file's own transfer syntax
    result = dicom_hub.dcmsend(*paths, options=["--decompress-never"])
    assert result.returncode == 0, result.stderr + result.stdout
    for path in paths:
        original = pydicom.dcmread(path)
        record = dicom_hub.store.get(original.SOPInstanceUID)
        assert record is not None, path.name
        assert record.transfer_syntax_uid == original.file_meta.TransferSyntaxUID, path.name
        stored = pydicom.dcmread(io.BytesIO(dicom_hub.blob(record.blob_key)))
        assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert stored.PixelData == original.PixelData, path.name  # not transcoded


@pytest.mark.parametrize("name", ["es-colonoscopy.dcm", "RG3_J2KI.dcm"])
def test_the_received_bytes_are_stored_exactly(dicom_hub: DicomHub, name: str) -> None:
    path = FIXTURES / name if (FIXTURES / name).exists() else Path(str(get_testdata_file(name)))
    assert dicom_hub.send_raw(path).Status == 0x0000
    record = dicom_hub.store.get(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    stored, raw = dicom_hub.blob(record.blob_key), path.read_bytes()
    assert stored[_data_set_offset(stored) :] == raw[_data_set_offset(raw) :]
    assert hashlib.sha256(stored).hexdigest() == record.sha256


def _data_set_offset(raw: bytes) -> int:
    from adapters.dicom import read_file_meta

    offset, _ = read_file_meta(io.BytesIO(raw))
    return offset


def test_the_same_instance_twice_is_a_no_op_and_different_bytes_replace(
    dicom_hub: DicomHub, tmp_path: Path, collect_for_validation: Any
) -> None:
    study_uid, sop = generate_uid(), generate_uid()
    ds = make_ct(sop=sop, study=study_uid)
    path = tmp_path / "one.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert dicom_hub.storescu(path).returncode == 0
    first = dicom_hub.study(study_uid, instances=1)
    seq = dicom_hub.hub.engine.change_feed.last_seq()
    assert dicom_hub.storescu(path).returncode == 0  # identical: success, nothing new
    assert dicom_hub.hub.engine.change_feed.last_seq() == seq
    assert dicom_hub.store.get(sop).version == 1
    ds.SeriesDescription = "corrected"
    ds.save_as(path, enforce_file_format=True)
    assert dicom_hub.storescu(path).returncode == 0
    assert dicom_hub.store.get(sop).version == 2
    provenance = _wait(
        lambda: dicom_hub.search("Provenance", ("target", f"ImagingStudy/{first['id']}"))
    )
    study = dicom_hub.study(study_uid, instances=1)
    assert study["series"][0]["description"] == "corrected"
    assert (
        provenance[0]["target"][0]["reference"]
        == f"ImagingStudy/{first['id']}/_history/{study['meta']['versionId']}"
    )
    collect_for_validation("integration/dicom/replaced/Provenance", provenance[0])


def _wait(probe: Any, timeout: float = 20) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_every_ology_fixture_over_the_wire(
    dicom_hub: DicomHub, collect_for_validation: Any
) -> None:
    files = case_files()
    assert len(files) >= 31
    result = dicom_hub.dcmsend(*files)
    assert result.returncode == 0, result.stderr + result.stdout
    by_study: dict[str, list[Any]] = defaultdict(list)
    for path in files:
        summary = extract_instance_summary(pydicom.dcmread(path, stop_before_pixels=True))
        assert dicom_hub.store.get(summary.sop_instance_uid) is not None, path.name
        by_study[summary.study_instance_uid].append(summary)
    for uid, summaries in by_study.items():
        study = dicom_hub.study(uid, instances=len({s.sop_instance_uid for s in summaries}))
        specimens = {}
        for s in summaries:
            for spec, resource in zip(
                s.specimens, dicom_to_specimen(s, patient_reference="x"), strict=True
            ):
                found = dicom_hub.search("Specimen", ("identifier", spec.identifier))
                assert len(found) == 1, spec.identifier
                specimens[spec.identifier] = f"Specimen/{found[0]['id']}"
                assert found[0]["identifier"] == resource["identifier"]
        accession = next((i for i in study["identifier"] if i.get("type")), None)
        expected = dicom_to_imagingstudy(
            summaries,
            study_id=study["id"],
            patient_reference=study["subject"]["reference"],
            endpoint_reference="Endpoint/pixelhub-dicomweb",
            accession_system=accession["system"] if accession else "",
            encounter_reference=study.get("encounter", {}).get("reference"),
            specimen_references=specimens,
        )
        assert {k: v for k, v in study.items() if k != "meta"} == expected, uid
        collect_for_validation(f"integration/dicom/ology/{uid}/ImagingStudy", study)
        patient = dicom_hub.read(study["subject"]["reference"])
        collect_for_validation(f"integration/dicom/ology/{uid}/Patient", patient)
    names = {p.name for p in files}
    assert {"sm-colon-he.dcm", "es-colonoscopy.dcm", "op-fundus.dcm", "waveform_ecg.dcm"} <= names


@pytest.mark.parametrize("mode", ["one association", "one association per instance"])
def test_orthanc_pushes_as_a_modality(
    dicom_hub: DicomHub, orthanc: Orthanc, tmp_path: Path, mode: str
) -> None:
    orthanc.clear()
    orthanc.add_modality("pixelhub", "PIXELHUB", dicom_hub.port)
    study_uid = generate_uid()
    series = [generate_uid(), generate_uid()]
    ids = []
    for i in range(5):
        ds = make_ct(sop=generate_uid(), study=study_uid, series=series[i % 2], patient_id="ORT-1")
        ds.InstanceNumber = i
        ds.SeriesNumber = i % 2 + 1
        ids.append(orthanc.upload(encode(ds)))
    if mode == "one association":
        answer = orthanc.push("pixelhub", ids)
        assert answer.get("FailedInstancesCount", 0) == 0, answer
    else:
        for one in ids:
            orthanc.push("pixelhub", [one])
    study = dicom_hub.study(study_uid, instances=5)
    assert study["numberOfSeries"] == 2
    assert (
        dicom_hub.total("ImagingStudy", ("identifier", f"urn:dicom:uid|urn:oid:{study_uid}")) == 1
    )
    assert (
        dicom_hub.total("ImagingStudy", ("patient.identifier", "urn:pixelhub:patient-id|ORT-1"))
        == 1
    )
    sources = {dicom_hub.store.get(i["uid"]).source for s in study["series"] for i in s["instance"]}
    assert sources == {"ORTHANC@127.0.0.1"}
