"""``pixelhub import``: folders, zip files and DICOMDIR through the C-STORE ingest path, a summary
of accepted/rejected objects with reasons, resumable; the CLI reaches the importer through the
``pixelhub.importers`` entry point."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from adapters.dicom import DicomImporter, create_importer
from hub.channels import ChannelContext
from hub.cli import main
from hub.composition import Hub
from hub.imaging.study_aggregator import study_resource_id
from hub.importers import ImportItem, available_importers
from tests.e2e.support import TOKEN, make_hub
from tests.integration.dicom.dicom_support import ADMIN, make_ct

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "dicom"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = make_hub(tmp_path / "data")
    yield h
    h.close()


@pytest.fixture
def importer(hub: Hub) -> DicomImporter:
    context = ChannelContext(hub.settings, hub.service, hub.engine, hub.policy, hub.runner.notify)
    return create_importer(context)


def run(importer: DicomImporter, *paths: Path) -> dict[str, list[Any]]:
    result: dict[str, list[Any]] = {}
    for item in importer.scan(list(paths)):
        outcome = importer.import_one(item)
        result.setdefault(outcome.status, []).append(outcome)
    importer.finish()
    return result


def test_registered_as_the_dicom_importer() -> None:
    assert available_importers()["dicom"] is create_importer


def test_folder_with_junk_then_resume(hub: Hub, importer: DicomImporter, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("dx-chest.dcm", "xc-wound.dcm"):
        shutil.copy(FIXTURES / name, folder / "sub" / name)
    shutil.copy(FIXTURES / "nm-bone.dcm", folder / "nm")
    (folder / "notes.txt").write_text("not DICOM")
    result = run(importer, folder)
    assert len(result["accepted"]) == 3
    (junk,) = result["rejected"]
    assert junk.item.path.name == "notes.txt" and "not a DICOM Part 10 file" in junk.reason
    assert hub.engine.dicom_store.count() == 3  # type: ignore[attr-defined]
    again = run(importer, folder)
    assert len(again["skipped"]) == 3 and "accepted" not in again
    hub.runner.catch_up()
    uid = pydicom.dcmread(FIXTURES / "dx-chest.dcm", stop_before_pixels=True).StudyInstanceUID
    assert hub.service.read(ADMIN, "ImagingStudy", study_resource_id(uid)).version == 1


def test_zip_file(hub: Hub, importer: DicomImporter, tmp_path: Path) -> None:
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("mg-r-cc.dcm", "mg-l-cc.dcm", "kos-mg.dcm"):
            z.write(FIXTURES / name, f"MG/{name}")
        z.writestr("README", "hello")
    result = run(importer, archive)
    assert len(result["accepted"]) == 3
    assert [o.item.member for o in result["rejected"]] == ["README"]
    hub.runner.catch_up()
    uid = pydicom.dcmread(FIXTURES / "kos-mg.dcm", stop_before_pixels=True).StudyInstanceUID
    study = hub.service.read(ADMIN, "ImagingStudy", study_resource_id(uid))
    assert b'"numberOfInstances":3' in (study.data or b"")


def test_dicomdir(hub: Hub, importer: DicomImporter) -> None:
    dicomdir = Path(str(get_testdata_file("DICOMDIR")))
    referenced = [
        r.ReferencedFileID
        for r in pydicom.dcmread(dicomdir).DirectoryRecordSequence
        if "ReferencedFileID" in r
    ]
    items = importer.scan([dicomdir])
    assert len(items) == len(referenced)
    result = run(importer, dicomdir)
    assert len(result.get("accepted", [])) + len(result.get("replaced", [])) == len(referenced)


def test_replaced_object_is_reported(hub: Hub, importer: DicomImporter, tmp_path: Path) -> None:
    ds = make_ct(sop=generate_uid(), study=generate_uid())
    path = tmp_path / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert "accepted" in run(importer, path)
    ds.SeriesDescription = "second reading"
    ds.save_as(path, enforce_file_format=True)
    assert [o.status for o in run(importer, path)["replaced"]] == ["replaced"]


def test_bad_objects_are_rejected_with_reasons(importer: DicomImporter, tmp_path: Path) -> None:
    ds = make_ct(sop=generate_uid(), study=generate_uid())
    del ds.StudyInstanceUID
    path = tmp_path / "nostudy.dcm"
    ds.save_as(path, enforce_file_format=True)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes((FIXTURES / "dx-chest.dcm").read_bytes()[:-100])
    outcomes = {o.item.path.name: o for o in map(importer.import_one, importer.scan([tmp_path]))}
    assert outcomes["nostudy.dcm"].status == "rejected"
    assert outcomes["nostudy.dcm"].reason.startswith("0xA900 Missing StudyInstanceUID")
    assert outcomes["truncated.dcm"].reason.startswith("0xC000")
    missing = importer.import_one(ImportItem(tmp_path / "absent.dcm"))
    assert missing.status == "rejected" and "cannot read" in missing.reason


def test_cli_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("pt-fdg.dcm", "xa-coronary.dcm"):
        shutil.copy(FIXTURES / name, folder / name)
    (folder / "junk.bin").write_bytes(b"\x00" * 10)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("PIXELHUB_AUTH_TOKENS", TOKEN)
    result = CliRunner().invoke(main, ["import", "--data-dir", str(data_dir), str(folder)])
    assert result.exit_code == 2, result.output  # one object rejected
    assert "accepted" in result.output and "junk.bin" in result.output
    again = CliRunner().invoke(
        main, ["import", "--data-dir", str(data_dir), str(folder / "pt-fdg.dcm")]
    )
    assert again.exit_code == 0, again.output
    hub = make_hub(data_dir)
    try:
        for name in ("pt-fdg.dcm", "xa-coronary.dcm"):
            uid = pydicom.dcmread(folder / name, stop_before_pixels=True).StudyInstanceUID
            assert hub.service.read(ADMIN, "ImagingStudy", study_resource_id(uid)).version == 1
    finally:
        hub.close()
