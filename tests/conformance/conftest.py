"""The ``fhir_validator`` fixture: HAPI's FHIR R4 validator, one JVM for the whole test run.

Usage (tests under tests/conformance)::

    def test_something(fhir_validator):
        report = fhir_validator.validate_now({"study": study_dict, "patient": patient_dict})
        assert not [i for i in report["study"] if i.is_error]
        fhir_validator.assert_valid({"patient": patient_dict})   # raises listing every error

Tests elsewhere use the root fixture ``collect_for_validation(name, resource)`` instead (or
``fhir_validator.submit``, the same thing); the final test validates all of it in one batch.

The jar is built on first use by conformance/validator/build.sh (a no-op when up to date; CI
pre-builds it). Missing Java or Maven, a failed build or a validator that cannot load its
definitions fail the tests that need it: they never skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

REPO = Path(__file__).resolve().parents[2]
VALIDATOR_DIR = REPO / "conformance" / "validator"
BUILD_SCRIPT = VALIDATOR_DIR / "build.sh"
PROFILES_DIR = REPO / "conformance" / "profiles"
FHIR_VERSION = "4.0.1"

# C1 JIT and the serial collector: ~40% less wall time and a third of the memory for this
# short-lived, single-threaded job (measured: 100 files 14 s instead of 21-25 s).
JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
BUILD_TIMEOUT_S = 1800.0  # a cold ~/.m2 downloads ~190 MB
START_TIMEOUT_S = 180.0
BATCH_TIMEOUT_S = 120.0
PER_FILE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Issue:
    """One validation message, as HAPI reported it."""

    severity: str  # "error" | "warning" | "information"
    location: str
    message: str
    message_id: str | None = None
    line: int | None = None
    col: int | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        return f"{self.severity}: {self.location}: {self.message}"


class ValidatorUnavailable(RuntimeError):
    """Java, Maven, the build or the validator's start-up failed."""


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise ValidatorUnavailable(
            "Java 17+ is not installed (no JAVA_HOME, no `java` on PATH): the FHIR validator "
            "harness cannot run. Install a JDK 17 and Maven 3.8+ (Debian: openjdk-17-jdk-headless "
            "maven)."
        )
    return found


def build_validator_jar() -> Path:
    """Runs build.sh (a no-op when the jar is up to date) and returns the jar's path."""
    _java()
    try:
        done = subprocess.run(
            [shutil.which("bash") or "/bin/bash", str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ValidatorUnavailable(f"{BUILD_SCRIPT} took over {BUILD_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        raise ValidatorUnavailable(
            f"{BUILD_SCRIPT} failed (exit {done.returncode}):\n{_tail(done.stderr + done.stdout)}"
        )
    jar = Path(done.stdout.strip().splitlines()[-1])
    if not jar.is_file():
        raise ValidatorUnavailable(f"{BUILD_SCRIPT} reported {jar}, which does not exist")
    return jar


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _file_name(index: int, name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80] or "resource"
    return f"{index:05d}-{slug}.json"


class FhirValidator:
    """A running ``FolderValidator --serve``: each batch is one folder of JSON files."""

    def __init__(self, jar: Path, workdir: Path, collector: Any) -> None:
        self._workdir = workdir
        self._collector = collector
        self._batches = 0
        self.summary: list[str] = []  # lines printed after the run (pytest_terminal_summary)
        self._stderr_path = workdir / "validator-stderr.log"
        self._stderr: IO[bytes] = self._stderr_path.open("wb")
        command = [_java(), *JVM_OPTIONS, "-jar", str(jar), "--serve"]
        if PROFILES_DIR.is_dir():
            command.append(str(PROFILES_DIR))
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                text=True,
                encoding="utf-8",
            )
        except OSError as exc:
            self._stderr.close()
            raise ValidatorUnavailable(f"cannot start {command[0]}: {exc}") from exc
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        ready = self._next_message(START_TIMEOUT_S, "start")
        if not ready.get("ready"):
            self.close()
            raise ValidatorUnavailable(f"unexpected first line from the validator: {ready}")
        self.info: dict[str, Any] = ready["validator"]
        if self.info.get("fhirVersion") != FHIR_VERSION:
            self.close()
            raise ValidatorUnavailable(f"validator claims FHIR {self.info.get('fhirVersion')}")

    def _read_stdout(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        for line in stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next_message(self, timeout: float, doing: str) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise ValidatorUnavailable(
                f"the validator did not {doing} within {timeout:.0f} s\n{self._stderr_tail()}"
            ) from None
        if line is None:
            code = self._process.wait(timeout=30)
            self.close()
            raise ValidatorUnavailable(
                f"the validator exited (code {code}) instead of answering ({doing})\n"
                f"{self._stderr_tail()}"
            )
        try:
            message: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            self.close()
            raise ValidatorUnavailable(
                f"the validator printed something other than JSON ({doing}): {line[:500]!r}"
            ) from None
        return message

    def _stderr_tail(self) -> str:
        self._stderr.flush()
        text = self._stderr_path.read_text(encoding="utf-8", errors="replace")
        return _tail(text) if text.strip() else "(nothing on stderr)"

    def validate_now(self, resources: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Issue]]:
        """Validates ``{name: resource}`` in one batch; returns every issue, by name."""
        if self._process.poll() is not None:
            raise ValidatorUnavailable("the validator process is no longer running")
        self._batches += 1
        batch = self._workdir / f"batch-{self._batches:03d}"
        batch.mkdir()
        names: dict[str, str] = {}
        for index, (name, resource) in enumerate(resources.items()):
            file_name = _file_name(index, name)
            names[file_name] = name
            (batch / file_name).write_text(json.dumps(resource, indent=1), encoding="utf-8")
        if not names:
            return {}
        stdin = self._process.stdin
        assert stdin is not None
        stdin.write(f"{batch}\n")
        stdin.flush()
        timeout = BATCH_TIMEOUT_S + PER_FILE_TIMEOUT_S * len(names)
        report = self._next_message(timeout, f"validate {batch}")
        if "error" in report:
            raise ValidatorUnavailable(f"the validator failed on {batch}: {report['error']}")
        result: dict[str, list[Issue]] = {}
        for entry in report["files"]:
            name = names[entry["file"]]
            result[name] = [
                Issue(
                    severity=issue["severity"],
                    location=issue["location"] or "",
                    message=issue["message"] or "",
                    message_id=issue.get("messageId"),
                    line=issue.get("line"),
                    col=issue.get("col"),
                )
                for issue in entry["issues"]
            ]
        missing = sorted(set(names.values()) - set(result))
        if missing:
            raise ValidatorUnavailable(f"the validator skipped {missing} in {batch}")
        return result

    def assert_valid(self, resources: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Issue]]:
        """Validates the batch and raises ``AssertionError`` listing every error."""
        report = self.validate_now(resources)
        errors = [f"{name}: {i}" for name, issues in report.items() for i in issues if i.is_error]
        if errors:
            raise AssertionError(f"{len(errors)} FHIR validation error(s):\n" + "\n".join(errors))
        return report

    def submit(self, name: str, resource: Mapping[str, Any]) -> None:
        """Same as the ``collect_for_validation`` fixture: validated by the final test."""
        self._collector(name, resource)

    def close(self) -> None:
        if self._process.stdin and not self._process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=30)
        self._reader.join(timeout=10)
        if self._process.stdout:
            self._process.stdout.close()
        self._stderr.close()


_VALIDATOR = pytest.StashKey[FhirValidator]()


@pytest.fixture(scope="session")
def fhir_validator(
    pytestconfig: pytest.Config,
    tmp_path_factory: pytest.TempPathFactory,
    collect_for_validation: Any,
) -> Iterator[FhirValidator]:
    try:
        jar = build_validator_jar()
        workdir = tmp_path_factory.mktemp("fhir-validation")
        validator = FhirValidator(jar, workdir, collect_for_validation)
    except ValidatorUnavailable as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:  # outside the except block, so the report shows only the message
        pytest.fail(f"FHIR validator harness unavailable: {problem}", pytrace=False)
    pytestconfig.stash[_VALIDATOR] = validator
    yield validator
    validator.close()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    validator = config.stash.get(_VALIDATOR, None)
    if validator is not None and validator.summary:
        terminalreporter.section("FHIR validation (HAPI validator)")
        for line in validator.summary:
            terminalreporter.write_line(line)
