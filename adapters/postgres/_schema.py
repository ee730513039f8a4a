"""The PostgreSQL schema, version 1 (``schema_info.version``), created when an engine opens.

    resource       one row per (type, id): current version number, whether it is deleted.
    version        every version (FHIR R4 http.html#history): the exact served JSON bytes, NULL for
                   a tombstone. Bytes rather than JSONB: JSONB reorders keys and respaces, and
                   ``StoredResource.data`` must be the bytes written; searches use the index tables.
    change         the change feed; ``seq`` is drawn from ``change_seq`` under a transaction-level
                   advisory lock taken just before commit, so it increases in commit order.
    cursor         each projector's last processed seq.
    type_count     live resources per type, updated under the same lock (no hot-row waits).
    param          (resource type, parameter name) -> pid, a hash of both (``_db.param_id``), so
                   any process computes it without a lookup; rows only answer "which types have
                   this parameter" (system-level searches, ``_revinclude=T:*``).
    idx_*          search index entries (``hub.search.model``), keyed (res_pk, pid, ord), with value
                   indexes led by pid (``SEARCH_INDEXES``). Unbounded text is indexed by its first
                   200 characters (``KEY_COLUMNS``) so no index row can outgrow a btree page;
                   queries compare that prefix, then the value. ``ord`` numbers a resource's
                   entries of one parameter from 0 (rows written by earlier versions number them
                   per table: ``ord > 0`` is then merely more often true, which date windows
                   tolerate).
    dicom_*        the DICOM instance index (``dicom_store``).

Every text column is ``COLLATE "C"``: byte order, as SQLite sorts, and prefix ranges work on
any database locale. Dates are ms since the epoch (UTC); open range ends are -2^62 / 2^62.
"""

from __future__ import annotations

from hub.imaging.instance_rows import INDEXED_NAMES, INDEXES
from hub.search.matching import DATE_MAX, DATE_MIN

SCHEMA_VERSION = 1
KEY = 200  # characters of a long text value that its index holds

_T = 'text COLLATE "C"'

STATEMENTS: tuple[str, ...] = (
    f"""CREATE TABLE resource (
        pk              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        res_type        {_T} NOT NULL,
        res_id          {_T} NOT NULL,
        version         integer NOT NULL,
        last_updated_ms bigint  NOT NULL,
        deleted         boolean NOT NULL DEFAULT false,
        UNIQUE (res_type, res_id)
    )""",
    "CREATE INDEX resource_live_updated ON resource (res_type, last_updated_ms) WHERE NOT deleted",
    f"CREATE TABLE type_count (res_type {_T} PRIMARY KEY, live bigint NOT NULL)",
    f"""CREATE TABLE version (
        vid             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        res_pk          bigint  NOT NULL REFERENCES resource (pk),
        res_type        {_T} NOT NULL,
        version         integer NOT NULL,
        last_updated    text    NOT NULL,
        last_updated_ms bigint  NOT NULL,
        method          text    NOT NULL,
        data            bytea,
        UNIQUE (res_pk, version)
    )""",
    "CREATE INDEX version_type ON version (res_type, vid)",
    "CREATE SEQUENCE change_seq",
    f"""CREATE TABLE change (
        seq      bigint  PRIMARY KEY,
        res_type {_T} NOT NULL,
        res_id   {_T} NOT NULL,
        version  integer NOT NULL,
        op       text    NOT NULL
    )""",
    f"CREATE TABLE cursor (projector {_T} PRIMARY KEY, seq bigint NOT NULL)",
    f"""CREATE TABLE param (
        pid      bigint PRIMARY KEY,
        res_type {_T} NOT NULL,
        name     {_T} NOT NULL,
        UNIQUE (res_type, name)
    )""",
    "CREATE INDEX param_name ON param (name)",
    f"""CREATE TABLE idx_token (
        res_pk bigint NOT NULL, pid bigint NOT NULL, ord integer NOT NULL,
        system {_T}, code {_T}, text_norm {_T}, type_system {_T}, type_code {_T},
        grp integer NOT NULL, comp integer NOT NULL,
        PRIMARY KEY (res_pk, pid, ord)
    )""",
    f"""CREATE TABLE idx_string (
        res_pk bigint NOT NULL, pid bigint NOT NULL, ord integer NOT NULL,
        value {_T} NOT NULL, norm {_T} NOT NULL,
        grp integer NOT NULL, comp integer NOT NULL,
        PRIMARY KEY (res_pk, pid, ord)
    )""",
    """CREATE TABLE idx_date (
        res_pk bigint NOT NULL, pid bigint NOT NULL, ord integer NOT NULL,
        low bigint NOT NULL, high bigint NOT NULL,
        grp integer NOT NULL, comp integer NOT NULL,
        PRIMARY KEY (res_pk, pid, ord)
    )""",
    """CREATE TABLE idx_number (
        res_pk bigint NOT NULL, pid bigint NOT NULL, ord integer NOT NULL,
        value double precision NOT NULL, low double precision NOT NULL,
        high double precision NOT NULL,
        grp integer NOT NULL, comp integer NOT NULL,
        PRIMARY KEY (res_pk, pid, ord)
    )""",
    "CREATE INDEX idx_number_value ON idx_number (pid, value)",
    f"""CREATE TABLE idx_quantity (
        res_pk bigint NOT NULL, pid bigint NOT NULL, ord integer NOT NULL,
        value double precision NOT NULL, low double precision NOT NULL,
        high double precision NOT NULL, system {_T}, code {_T}, unit {_T},
        grp integer NOT NULL, comp integer NOT NULL,
        PRIMARY KEY (res_pk, pid, ord)
    )""",
    "CREATE INDEX idx_quantity_value ON idx_quantity (pid, value)",
    f"""CREATE TABLE idx_reference (
        res_pk bigint NOT NULL, pid bigint NOT NULL, ord integer NOT NULL,
        target_type {_T}, target_id {_T}, url {_T}, version {_T},
        identifier_system {_T}, identifier_value {_T},
        grp integer NOT NULL, comp integer NOT NULL,
        PRIMARY KEY (res_pk, pid, ord)
    )""",
    "CREATE INDEX idx_reference_back ON idx_reference (target_id, target_type)",
    f"CREATE INDEX idx_reference_url ON idx_reference (pid, left(url, {KEY}))"
    " WHERE url IS NOT NULL",
    f"CREATE INDEX idx_reference_identifier ON idx_reference (pid, left(identifier_value, {KEY}))"
    " WHERE identifier_value IS NOT NULL",
    f"""CREATE TABLE idx_uri (
        res_pk bigint NOT NULL, pid bigint NOT NULL, ord integer NOT NULL,
        value {_T} NOT NULL,
        grp integer NOT NULL, comp integer NOT NULL,
        PRIMARY KEY (res_pk, pid, ord)
    )""",
    f"CREATE INDEX idx_uri_value ON idx_uri (pid, left(value, {KEY}))",
    # The DICOM instance index (hub.ports.DicomInstanceStore).
    f"""CREATE TABLE dicom_instance (
        sop_uid    {_T} PRIMARY KEY,
        study_uid  {_T} NOT NULL,
        series_uid {_T} NOT NULL,
        sop_class  {_T} NOT NULL,
        ts_uid     {_T} NOT NULL,
        blob_key   text    NOT NULL,
        sha256     text    NOT NULL,
        size       bigint  NOT NULL,
        version    integer NOT NULL,
        received   text    NOT NULL,
        source     text    NOT NULL,
        summary    bytea   NOT NULL
    )""",
    "CREATE INDEX dicom_instance_study ON dicom_instance (study_uid)",
    f"""CREATE TABLE dicom_instance_version (
        sop_uid  {_T} NOT NULL,
        version  integer NOT NULL,
        blob_key text    NOT NULL,
        sha256   text    NOT NULL,
        size     bigint  NOT NULL,
        received text    NOT NULL,
        source   text    NOT NULL,
        PRIMARY KEY (sop_uid, version)
    )""",
    "CREATE SEQUENCE dicom_generation",
    f"""CREATE TABLE dicom_study_pending (
        study_uid       {_T} PRIMARY KEY,
        generation      bigint  NOT NULL,
        quiet_since_ms  bigint  NOT NULL,
        flush_requested boolean NOT NULL DEFAULT false,
        replacements    bytea
    )""",
    "CREATE INDEX dicom_study_pending_quiet ON dicom_study_pending (quiet_since_ms)",
)

# The first KEY characters of long text, stored beside it: value indexes on plain columns, so a
# search reads them alone (an index-only scan; never one on an index of an expression, such as
# ``left(code, 200)``, whose column the planner insists on fetching from the table).
KEY_COLUMNS: dict[str, dict[str, str]] = {
    "idx_token": {"k_code": "code", "k_system": "system", "k_text": "text_norm"},
    "idx_string": {"k_norm": "norm"},
}
# The value indexes, led by pid, each holding ``res_pk`` (``INCLUDE``) so the pks of a value
# range are read from the index alone: what searches read as sets (``hub.search.sql``), the widest
# finite date range of a parameter and the resources with several entries of it (date windows),
# the distinct displays of a token parameter (``:text``).
SEARCH_INDEXES: dict[str, str] = {
    "idx_token_key": "ON idx_token (pid, k_code, k_system) INCLUDE (res_pk)",
    "idx_token_text_key": "ON idx_token (pid, k_text) INCLUDE (res_pk) WHERE k_text IS NOT NULL",
    "idx_string_key": "ON idx_string (pid, k_norm) INCLUDE (res_pk)",
    "idx_date_from": "ON idx_date (pid, low, high) INCLUDE (res_pk)",
    "idx_date_to": "ON idx_date (pid, high, low) INCLUDE (res_pk)",
    "idx_date_span": f"ON idx_date (pid, (high - low))"
    f" WHERE low > {DATE_MIN} AND high < {DATE_MAX}",
    "idx_date_several": "ON idx_date (pid, res_pk) WHERE ord > 0",
    "idx_reference_to": "ON idx_reference (pid, target_id, target_type) INCLUDE (res_pk)",
}
# Indexes of earlier versions that SEARCH_INDEXES replace.
REPLACED_INDEXES = (
    "idx_token_code",
    "idx_string_norm",
    "idx_date_low",
    "idx_date_high",
    "idx_reference_target",
)


def search_upgrade(columns: set[tuple[str, str]], relations: set[str]) -> list[str]:
    """What a database with these ``(table, column)`` pairs and relation names lacks of
    ``KEY_COLUMNS`` and ``SEARCH_INDEXES``, and the replaced indexes it still has: run whenever
    an engine opens, so a database made by an earlier version gains them in place (adding a
    stored column rewrites its table, once)."""
    out = [
        f"ALTER TABLE {table} ADD COLUMN {name} {_T}"
        f" GENERATED ALWAYS AS (left({source}, {KEY})) STORED"
        for table, keys in KEY_COLUMNS.items()
        for name, source in keys.items()
        if (table, name) not in columns
    ]
    out += [f"CREATE INDEX {n} {d}" for n, d in SEARCH_INDEXES.items() if n not in relations]
    out += [f"DROP INDEX {name}" for name in REPLACED_INDEXES if name in relations]
    return out


# The widest finite date range of the pids bound as an array (``hub.search.sql.DateSpan``), one
# descent of ``idx_date_span`` per pid.
DATE_SPAN = (
    "SELECT max(w) FROM unnest(%s::bigint[]) AS p(pid), LATERAL (SELECT max(high - low) AS w"
    f" FROM idx_date x WHERE x.pid = p.pid AND low > {DATE_MIN} AND high < {DATE_MAX}) AS s"
)

# Added after version 1, idempotent, run by ``PostgresDicomStore`` whenever it opens (so existing
# databases gain them in place): the DICOM query keys beside the summary, and their indexes
# (``hub.imaging.instance_rows.INDEXED_COLUMNS``), so C-FIND filters on indexes.
DICOM_QUERY_UPGRADE: tuple[str, ...] = (
    *(
        f"ALTER TABLE dicom_instance ADD COLUMN IF NOT EXISTS {name} {_T} NOT NULL DEFAULT ''"
        for name in INDEXED_NAMES
    ),
    *(
        f"CREATE INDEX IF NOT EXISTS {name} ON dicom_instance ({columns})"
        for name, columns in INDEXES
    ),
)
