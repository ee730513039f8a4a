"""Issue 7 on the DICOM channel, with dcmtk as the peer: one AuditEvent per association accepted
or rejected, and one "DICOM Instances Transferred" per study received over an association."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from pydicom.uid import generate_uid

from tests.e2e.support import assert_valid_r4
from tests.integration.dicom.dicom_support import DicomHub, make_ct


def journaled(hub: DicomHub, code: str) -> list[dict[str, Any]]:
    """The events of type ``code`` journaled so far."""
    directory = hub.hub.audit.directory
    assert directory is not None
    lines = b"".join(p.read_bytes() for p in sorted(directory.glob("journal-*")))
    return [
        r["event"]
        for r in map(orjson.loads, lines.splitlines())
        if "event" in r and r["event"]["type"]["code"] == code
    ]


def journal(hub: DicomHub, code: str, count: int = 1) -> list[dict[str, Any]]:
    """At least ``count`` events of type ``code``, waiting for the association's end, which the
    SCP handles on its own thread after storescu exits."""
    deadline = time.monotonic() + 10
    while len(found := journaled(hub, code)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_an_association_and_its_studies_are_audited(dicom_hub: DicomHub, tmp_path: Path) -> None:
    study_a, study_b = generate_uid(), generate_uid()
    files = []
    for i, study in enumerate((study_a, study_a, study_b)):
        path = tmp_path / f"{i}.dcm"
        make_ct(sop=generate_uid(), study=study, patient_id="MRN-9").save_as(
            path, enforce_file_format=True
        )
        files.append(path)
    assert dicom_hub.storescu(*files).returncode == 0
    (accepted,) = journal(dicom_hub, "110113")
    assert accepted["outcome"] == "0" and accepted["subtype"][0]["code"] == "110126"
    assert accepted["agent"][0]["who"]["identifier"] == {
        "system": "urn:dicom:ae",
        "value": "STORESCU",
    }
    assert accepted["agent"][0]["network"]["address"] == "127.0.0.1"
    received = journal(dicom_hub, "110104", count=2)
    by_study = {
        e["entity"][1]["what"]["identifier"]["value"]: e for e in received
    }  # patient first, then the study
    assert set(by_study) == {f"urn:oid:{study_a}", f"urn:oid:{study_b}"}
    first = by_study[f"urn:oid:{study_a}"]
    assert first["action"] == "C" and first["outcome"] == "0"
    assert first["entity"][1]["description"] == "2 instance(s) stored"
    patient = first["entity"][0]["what"]["identifier"]
    assert (patient["system"], patient["value"]) == ("urn:pixelhub:patient-id", "MRN-9")
    for event in (accepted, *received):
        assert_valid_r4(event)


def test_a_rejected_association_is_audited(dicom_hub: DicomHub, tmp_path: Path) -> None:
    path = tmp_path / "x.dcm"
    make_ct(sop=generate_uid(), study=generate_uid()).save_as(path, enforce_file_format=True)
    assert dicom_hub.storescu(path, aet="INTRUDER").returncode != 0
    (rejected,) = journal(dicom_hub, "110113")
    assert rejected["outcome"] == "4" and "not allowed" in rejected["outcomeDesc"]
    assert rejected["agent"][0]["name"] == "INTRUDER"
    assert journaled(dicom_hub, "110104") == []  # nothing was received
    dicom_hub.assert_still_serving()
