"""``pixelhub import PATH...`` for DICOM: folders, DICOMDIR and zip files, through the same ingest
path as C-STORE (``adapters.dicom._ingest``), found by the CLI through the ``pixelhub.importers``
entry point ``dicom``.

- A folder is walked recursively in name order; a ``DICOMDIR`` in it is skipped (the files it
  references are in the folder anyway).
- A ``DICOMDIR`` given as a path imports the files its directory records reference
  (PS3.10 8.6, PS3.3 F.5 Referenced File ID (0004,1500)).
- A ``.zip`` file imports its members; each is spooled (memory, then a temporary file) so
  that it can be read more than once.
- Resumable: an instance already stored with identical bytes is skipped after hashing, before
  its header is even parsed; a different one replaces the stored version (versioned).
- At the end every study touched is flagged for aggregation at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread

from adapters.dicom._channel import make_ingest
from adapters.dicom._errors import PARSE_ERRORS, store_status
from adapters.dicom._ingest import DicomIngest, Received, digest
from adapters.dicom._part10 import NotPart10, file_meta, read_file_meta
from hub.channels import ChannelContext
from hub.importers import ImportItem, ImportOutcome

log = logging.getLogger("pixelhub.dicom.import")

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
SPOOL_IN_MEMORY = 8 * 1024 * 1024


def _is_dicomdir(path: Path) -> bool:
    return path.name.upper() == "DICOMDIR"


class DicomImporter:
    """The ``dicom`` importer (``hub.importers.Importer``)."""

    name = "dicom"

    def __init__(self, ingest: DicomIngest, spool_dir: str) -> None:
        self.ingest = ingest
        self.spool_dir = spool_dir
        self.studies: set[str] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ scanning

    def scan(self, paths: Sequence[Path]) -> list[ImportItem]:
        items: list[ImportItem] = []
        for path in paths:
            items.extend(self._scan_one(Path(path)))
        return items

    def _scan_one(self, path: Path) -> Iterator[ImportItem]:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    child = Path(root) / name
                    if _is_dicomdir(child):
                        continue
                    yield from self._scan_file(child)
        elif path.is_file() and _is_dicomdir(path):
            yield from self._scan_dicomdir(path)
        else:
            yield from self._scan_file(path)

    def _scan_file(self, path: Path) -> Iterator[ImportItem]:
        if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if info.is_dir() or Path(info.filename).name.upper() == "DICOMDIR":
                        continue
                    yield ImportItem(path, info.filename, info.file_size)
            return
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        yield ImportItem(path, None, size)

    def _scan_dicomdir(self, path: Path) -> Iterator[ImportItem]:
        try:
            directory = dcmread(path, stop_before_pixels=True)
            records = list(directory.get("DirectoryRecordSequence", []))
        except PARSE_ERRORS:
            yield ImportItem(path, None, 0)  # rejected with the parse error on import
            return
        seen: set[Path] = set()
        for record in records:
            parts = record.get("ReferencedFileID")
            if not parts:
                continue
            components = [parts] if isinstance(parts, str) else list(parts)
            target = path.parent.joinpath(*[str(c) for c in components])
            if target in seen:
                continue
            seen.add(target)
            if not target.exists():  # media written on a case-insensitive file system
                matches = [p for p in target.parent.glob("*") if p.name.upper() == target.name]
                target = matches[0] if matches else target
            yield from self._scan_file(target)

    # ------------------------------------------------------------------ importing

    @contextlib.contextmanager
    def _open(self, item: ImportItem) -> Iterator[BinaryIO]:
        if item.member is None:
            with open(item.path, "rb") as fp:
                yield fp
            return
        os.makedirs(self.spool_dir, exist_ok=True)
        with (
            tempfile.SpooledTemporaryFile(
                max_size=SPOOL_IN_MEMORY, dir=self.spool_dir, prefix="import-"
            ) as spool,
            zipfile.ZipFile(item.path) as archive,
            archive.open(item.member) as member,
        ):
            while chunk := member.read(1024 * 1024):
                spool.write(chunk)
            spool.seek(0)
            yield spool  # type: ignore[misc]

    def import_one(self, item: ImportItem) -> ImportOutcome:
        """Import one file or archive member; bad input is a ``rejected`` outcome."""
        try:
            with self._open(item) as fp:
                offset, meta = read_file_meta(fp)
                size = fp.seek(0, os.SEEK_END)
                sop_class = meta.get(0x0002, "")
                if sop_class == MEDIA_STORAGE_DIRECTORY:
                    return ImportOutcome(item, "skipped", "a DICOMDIR (media directory)")
                received = Received(
                    body=fp,
                    body_offset=offset,
                    body_end=size,
                    prefix=file_meta(sop_class, meta.get(0x0003, ""), meta[0x0010]),
                    transfer_syntax_uid=meta[0x0010],
                    sop_class_uid=sop_class,
                    sop_instance_uid=meta.get(0x0003, ""),
                    source=f"import:{item.label}"[:256],
                )
                existing = self.ingest.store.get(received.sop_instance_uid)
                if existing is not None and existing.sha256 == digest(received):
                    return ImportOutcome(item, "skipped", "already stored")
                result = self.ingest.ingest(received)
        except NotPart10 as exc:
            return ImportOutcome(item, "rejected", str(exc))
        except OSError as exc:
            return ImportOutcome(item, "rejected", f"cannot read: {exc.strerror or exc}")
        except zipfile.BadZipFile as exc:
            return ImportOutcome(item, "rejected", f"bad zip member: {exc}")
        except Exception as exc:
            status, text = store_status(exc)
            return ImportOutcome(item, "rejected", f"0x{status:04X} {text}")
        with self._lock:
            self.studies.add(result.record.study_instance_uid)
        if not result.stored:
            return ImportOutcome(item, "skipped", "already stored")
        return ImportOutcome(item, "replaced" if result.replaced else "accepted")

    def finish(self) -> None:
        """Have every study touched aggregated now."""
        with self._lock:
            studies, self.studies = sorted(self.studies), set()
        if studies:
            self.ingest.store.request_flush(studies)
            self.ingest.notify_change()


def create_importer(context: ChannelContext) -> DicomImporter:
    """The ``pixelhub.importers`` entry point ``dicom``."""
    return DicomImporter(make_ingest(context), str(Path(context.settings.data_dir) / "dicom-spool"))
