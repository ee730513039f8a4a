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

from hub.ports import DicomInstanceRecord, InstanceMatch, InstanceQuery, PendingStudy, Replacement

__all__ = [
    "CHANGE_TYPE",
    "COLUMNS",
    "INDEXED_COLUMNS",
    "INDEXED_NAMES",
    "INDEXES",
    "KEPT_COLUMNS",
    "PENDING_COLUMNS",
    "backfill_sql",
    "find_sql",
    "indexed_params",
    "instance_match",
    "instance_params",
    "instance_record",
    "kept_params",
    "pending_study",
    "stored_record",
    "upsert_sql",
    "with_replacement",
]

CHANGE_TYPE = "DicomInstance"  # the change feed's resource type for stored instances

COLUMNS = (
    "sop_uid, study_uid, series_uid, sop_class, ts_uid, blob_key, sha256, size, version,"
    " received, source, summary"
)
KEPT_COLUMNS = "sop_uid, version, blob_key, sha256, size, received, source"
PENDING_COLUMNS = "study_uid, generation, quiet_since_ms, flush_requested, replacements"

# Query keys (DICOM PS3.4 C.6) kept beside the summary so queries filter on indexes: written
# with every instance (``indexed_params``), added in place to existing tables. ``patient_name``
# is the alphabetic group of Patient Name in upper case, for name prefixes (``SMITH*``); engines
# compare it byte-wise (SQLite's BINARY, PostgreSQL's ``"C"`` collation).
INDEXED_NAMES = ("patient_id", "accession", "study_date", "modality", "patient_name")
INDEXED_COLUMNS = ", ".join(INDEXED_NAMES)
INDEXES = (
    ("dicom_instance_series", "series_uid"),
    ("dicom_instance_patient", "patient_id"),
    ("dicom_instance_accession", "accession"),
    ("dicom_instance_study_date", "study_date"),
    ("dicom_instance_modality", "modality, study_uid"),
    ("dicom_instance_patient_name", "patient_name"),
)
_GROUP_KEY = {"PATIENT": "patient_id", "STUDY": "study_uid", "SERIES": "series_uid"}


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


def upsert_sql(p: str) -> str:
    """Insert an instance row (``COLUMNS`` then ``INDEXED_COLUMNS``, placeholder ``p``) or
    replace every value of the row with that SOP Instance UID."""
    names = [c.strip() for c in COLUMNS.split(",")] + list(INDEXED_NAMES)
    updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != "sop_uid")
    values = ", ".join([p] * len(names))
    return (
        f"INSERT INTO dicom_instance ({', '.join(names)}) VALUES ({values})"
        f" ON CONFLICT (sop_uid) DO UPDATE SET {updates}"
    )


def backfill_sql(p: str) -> str:
    """Set the ``INDEXED_NAMES`` columns (then ``sop_uid``: ``indexed_params`` + the UID)."""
    sets = ", ".join(f"{n} = {p}" for n in INDEXED_NAMES)
    return f"UPDATE dicom_instance SET {sets} WHERE sop_uid = {p}"


def indexed_params(summary: dict[str, Any]) -> tuple[str, ...]:
    """The ``INDEXED_COLUMNS`` values of an instance, from its header summary."""
    date = "".join(ch for ch in str(summary.get("study_date") or "") if ch.isdigit())[:8]
    name = summary.get("patient_name")
    alphabetic = str(name.get("alphabetic") or "") if isinstance(name, dict) else ""
    return (
        str(summary.get("patient_id") or ""),
        str(summary.get("accession_number") or ""),
        date,
        str(summary.get("modality") or ""),
        alphabetic.upper(),
    )


def _any_of(column: str, values: tuple[str, ...], p: str, params: list[object]) -> str:
    params.extend(values)
    return f"{column} IN ({', '.join([p] * len(values))})"


def find_sql(
    query: InstanceQuery, after: str, limit: int, *, p: str, distinct_list: str
) -> tuple[str, list[object]]:
    """The SQL (placeholder ``p``) of one ``DicomInstanceStore.find`` page. Rows:
    ``key, summary, studies, series, instances, modalities, sop_classes`` (the last two
    comma-joined by ``distinct_list``, a format string such as ``group_concat(DISTINCT {})``).

    Filters apply to instance rows (indexed columns); a group (patient, study, series) is
    selected when any of its instances matches, then counted over all its instances."""
    params: list[object] = []
    where: list[str] = []
    for column, values in (
        ("patient_id", query.patient_ids),
        ("study_uid", query.study_uids),
        ("series_uid", query.series_uids),
        ("sop_uid", query.sop_uids),
        ("accession", query.accession_numbers),
        ("modality", query.modalities),
    ):
        if values:
            where.append(_any_of(column, values, p, params))
    if query.study_date_from or query.study_date_to:
        where.append("study_date <> ''")
    if query.study_date_from:
        where.append(f"study_date >= {p}")
        params.append(query.study_date_from)
    if query.study_date_to:
        where.append(f"study_date <= {p}")
        params.append(query.study_date_to)
    if query.patient_name_prefix:  # [prefix, prefix with its last character + 1)
        prefix = query.patient_name_prefix
        where.append(f"patient_name >= {p} AND patient_name < {p}")
        params.extend((prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)))
    if query.level == "IMAGE":
        if after:
            where.append(f"sop_uid > {p}")
            params.append(after)
        params.append(max(0, limit))
        clause = " AND ".join(where) or "1 = 1"
        return (
            "SELECT sop_uid, summary, 1, 1, 1, modality, sop_class FROM dicom_instance"
            f" WHERE {clause} ORDER BY sop_uid LIMIT {p}",
            params,
        )
    key = _GROUP_KEY[query.level]
    if query.level == "PATIENT":
        where.append("patient_id <> ''")
    if after:
        where.append(f"{key} > {p}")
        params.append(after)
    params.append(max(0, limit))
    clause = " AND ".join(where) or "1 = 1"
    mods = distinct_list.format("i.modality")
    classes = distinct_list.format("i.sop_class")
    sql = (
        f"WITH c AS (SELECT DISTINCT {key} AS k FROM dicom_instance WHERE {clause}"
        f" ORDER BY {key} LIMIT {p}),"
        f" g AS (SELECT i.{key} AS k, count(DISTINCT i.study_uid) AS ns,"
        f" count(DISTINCT i.series_uid) AS nr, count(*) AS ni, min(i.sop_uid) AS rep,"
        f" {mods} AS mods, {classes} AS classes"
        f" FROM dicom_instance i JOIN c ON i.{key} = c.k GROUP BY i.{key})"
        " SELECT g.k, d.summary, g.ns, g.nr, g.ni, g.mods, g.classes"
        " FROM g JOIN dicom_instance d ON d.sop_uid = g.rep ORDER BY g.k"
    )
    return sql, params


def _split(joined: object) -> tuple[str, ...]:
    if not joined:
        return ()
    return tuple(sorted({v for v in str(joined).split(",") if v}))


def instance_match(row: Sequence[Any]) -> InstanceMatch:
    """A ``find_sql`` row as an ``InstanceMatch``."""
    key, summary, studies, series, instances, mods, classes = row
    return InstanceMatch(
        key=str(key),
        summary=orjson.loads(summary),
        studies=int(studies),
        series=int(series),
        instances=int(instances),
        modalities=_split(mods),
        sop_classes=_split(classes),
    )
