"""Rows of the SQL DICOM instance index (``hub.ports.DicomInstanceStore``), the same on every SQL
engine: ``dicom_instance`` (one row per SOP Instance UID, DICOM PS3.4 B.2), the kept earlier
versions in ``dicom_instance_version``, and the pending-study rows with the replacements (JSON)
the study aggregator turns into a ``Provenance``.

Pure: column lists, parameter tuples and row decoding; no driver here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import orjson

from hub.ports import DicomInstanceRecord, PendingStudy, Replacement

__all__ = [
    "CHANGE_TYPE",
    "COLUMNS",
    "KEPT_COLUMNS",
    "PENDING_COLUMNS",
    "instance_params",
    "instance_record",
    "kept_params",
    "pending_study",
    "stored_record",
    "with_replacement",
]

CHANGE_TYPE = "DicomInstance"  # the change feed's resource type for stored instances

COLUMNS = (
    "sop_uid, study_uid, series_uid, sop_class, ts_uid, blob_key, sha256, size, version,"
    " received, source, summary"
)
KEPT_COLUMNS = "sop_uid, version, blob_key, sha256, size, received, source"
PENDING_COLUMNS = "study_uid, generation, quiet_since_ms, flush_requested, replacements"


def instance_record(row: Sequence[Any]) -> DicomInstanceRecord:
    """A ``dicom_instance`` row (``COLUMNS``) as a record."""
    sop, study, series, sop_class, ts, key, sha, size, version, received, source, summary = row
    return DicomInstanceRecord(
        sop_instance_uid=sop,
        study_instance_uid=study,
        series_instance_uid=series,
        sop_class_uid=sop_class,
        transfer_syntax_uid=ts,
        blob_key=key,
        sha256=sha,
        size=int(size),
        summary=orjson.loads(summary),
        source=source,
        version=int(version),
        received=received,
    )


def instance_params(r: DicomInstanceRecord, version: int, received: str) -> tuple[object, ...]:
    """The ``COLUMNS`` values that store ``r`` as ``version``, received at ``received``."""
    return (
        r.sop_instance_uid,
        r.study_instance_uid,
        r.series_instance_uid,
        r.sop_class_uid,
        r.transfer_syntax_uid,
        r.blob_key,
        r.sha256,
        r.size,
        version,
        received,
        r.source,
        orjson.dumps(r.summary),
    )


def stored_record(r: DicomInstanceRecord, version: int, received: str) -> DicomInstanceRecord:
    """``r`` as ``instance_params`` stored it."""
    return dataclasses.replace(r, version=version, received=received)


def kept_params(previous: DicomInstanceRecord) -> tuple[object, ...]:
    """The ``KEPT_COLUMNS`` values that keep ``previous`` as an earlier version."""
    return (
        previous.sop_instance_uid,
        previous.version,
        previous.blob_key,
        previous.sha256,
        previous.size,
        previous.received,
        previous.source,
    )


def with_replacement(
    known: bytes | str | None,
    r: DicomInstanceRecord,
    previous: DicomInstanceRecord,
    version: int,
    received: str,
) -> bytes:
    """The study's pending ``replacements`` (JSON, ``known`` so far) with ``previous``
    replaced by ``r`` as ``version`` appended."""
    found: list[dict[str, Any]] = orjson.loads(known) if known else []
    found.append(
        {
            "sop": r.sop_instance_uid,
            "old": previous.version,
            "new": version,
            "old_sha256": previous.sha256,
            "new_sha256": r.sha256,
            "source": r.source,
            "received": received,
        }
    )
    return orjson.dumps(found)


def _replacement(data: dict[str, Any]) -> Replacement:
    return Replacement(
        sop_instance_uid=str(data["sop"]),
        old_version=int(data["old"]),
        new_version=int(data["new"]),
        old_sha256=str(data["old_sha256"]),
        new_sha256=str(data["new_sha256"]),
        source=str(data.get("source", "")),
        received=str(data.get("received", "")),
    )


def pending_study(row: Sequence[Any]) -> PendingStudy:
    """A ``dicom_study_pending`` row (``PENDING_COLUMNS``) as a ``PendingStudy``."""
    uid, gen, ms, flush, reps = row
    return PendingStudy(
        study_instance_uid=uid,
        generation=int(gen),
        quiet_since=int(ms) / 1000,
        flush_requested=bool(flush),
        replacements=tuple(_replacement(r) for r in orjson.loads(reps)) if reps else (),
    )
