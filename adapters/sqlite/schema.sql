-- PixelHub embedded store, schema version 1 (PRAGMA user_version = 1).
--
-- resource       one row per (type, id): the current version number and whether it is deleted.
-- version        every version (FHIR R4 http.html#history), tombstones with data NULL.
-- change         the change feed; seq strictly increases in commit order (one writer at a time).
-- cursor         each projector's last processed seq.
-- type_count     live (non-deleted) resources per type, kept by put/delete in the same
--                transaction, so counts and unfiltered totals need no scan.
-- param          (resource type, search parameter) -> small integer, so index rows stay narrow.
-- idx_*          search index entries (hub.search.model), one table per entry type, clustered by
--                resource (WITHOUT ROWID, primary key (res_pk, pid, ord)) for cheap replace/delete
--                and per-resource probes, plus covering secondary indexes for the search itself.
-- Dates are ms since the epoch (UTC); open ends of a range are stored as -2^62 / 2^62.

CREATE TABLE resource (
    pk              INTEGER PRIMARY KEY,
    res_type        TEXT    NOT NULL,
    res_id          TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    last_updated_ms INTEGER NOT NULL,
    deleted         INTEGER NOT NULL DEFAULT 0,
    UNIQUE (res_type, res_id)
);
CREATE INDEX resource_live ON resource (res_type) WHERE deleted = 0;
CREATE INDEX resource_live_updated ON resource (res_type, last_updated_ms) WHERE deleted = 0;

CREATE TABLE type_count (
    res_type TEXT    PRIMARY KEY,
    live     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE version (
    vid             INTEGER PRIMARY KEY,
    res_pk          INTEGER NOT NULL REFERENCES resource (pk),
    res_type        TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    last_updated    TEXT    NOT NULL,
    last_updated_ms INTEGER NOT NULL,
    method          TEXT    NOT NULL,
    data            BLOB,
    UNIQUE (res_pk, version)
);
CREATE INDEX version_type ON version (res_type, vid);

CREATE TABLE change (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    res_type TEXT    NOT NULL,
    res_id   TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    op       TEXT    NOT NULL
);

CREATE TABLE cursor (
    projector TEXT PRIMARY KEY,
    seq       INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE param (
    pid      INTEGER PRIMARY KEY,
    res_type TEXT NOT NULL,
    name     TEXT NOT NULL,
    UNIQUE (res_type, name)
);
CREATE INDEX param_name ON param (name);

CREATE TABLE idx_token (
    res_pk      INTEGER NOT NULL,
    pid         INTEGER NOT NULL,
    ord         INTEGER NOT NULL,
    system      TEXT,
    code        TEXT,
    text_norm   TEXT,
    type_system TEXT,
    type_code   TEXT,
    grp         INTEGER NOT NULL,
    comp        INTEGER NOT NULL,
    PRIMARY KEY (res_pk, pid, ord)
) WITHOUT ROWID;
CREATE INDEX idx_token_code ON idx_token (pid, code, system);

CREATE TABLE idx_string (
    res_pk INTEGER NOT NULL,
    pid    INTEGER NOT NULL,
    ord    INTEGER NOT NULL,
    value  TEXT    NOT NULL,
    norm   TEXT    NOT NULL,
    grp    INTEGER NOT NULL,
    comp   INTEGER NOT NULL,
    PRIMARY KEY (res_pk, pid, ord)
) WITHOUT ROWID;
CREATE INDEX idx_string_norm ON idx_string (pid, norm);

CREATE TABLE idx_date (
    res_pk INTEGER NOT NULL,
    pid    INTEGER NOT NULL,
    ord    INTEGER NOT NULL,
    low    INTEGER NOT NULL,
    high   INTEGER NOT NULL,
    grp    INTEGER NOT NULL,
    comp   INTEGER NOT NULL,
    PRIMARY KEY (res_pk, pid, ord)
) WITHOUT ROWID;
CREATE INDEX idx_date_low ON idx_date (pid, low, high);
CREATE INDEX idx_date_high ON idx_date (pid, high, low);

CREATE TABLE idx_number (
    res_pk INTEGER NOT NULL,
    pid    INTEGER NOT NULL,
    ord    INTEGER NOT NULL,
    value  REAL    NOT NULL,
    low    REAL    NOT NULL,
    high   REAL    NOT NULL,
    grp    INTEGER NOT NULL,
    comp   INTEGER NOT NULL,
    PRIMARY KEY (res_pk, pid, ord)
) WITHOUT ROWID;
CREATE INDEX idx_number_value ON idx_number (pid, value);

CREATE TABLE idx_quantity (
    res_pk INTEGER NOT NULL,
    pid    INTEGER NOT NULL,
    ord    INTEGER NOT NULL,
    value  REAL    NOT NULL,
    low    REAL    NOT NULL,
    high   REAL    NOT NULL,
    system TEXT,
    code   TEXT,
    unit   TEXT,
    grp    INTEGER NOT NULL,
    comp   INTEGER NOT NULL,
    PRIMARY KEY (res_pk, pid, ord)
) WITHOUT ROWID;
CREATE INDEX idx_quantity_value ON idx_quantity (pid, value);

CREATE TABLE idx_reference (
    res_pk            INTEGER NOT NULL,
    pid               INTEGER NOT NULL,
    ord               INTEGER NOT NULL,
    target_type       TEXT,
    target_id         TEXT,
    url               TEXT,
    version           TEXT,
    identifier_system TEXT,
    identifier_value  TEXT,
    grp               INTEGER NOT NULL,
    comp              INTEGER NOT NULL,
    PRIMARY KEY (res_pk, pid, ord)
) WITHOUT ROWID;
CREATE INDEX idx_reference_target ON idx_reference (pid, target_id, target_type);
CREATE INDEX idx_reference_url ON idx_reference (pid, url) WHERE url IS NOT NULL;
CREATE INDEX idx_reference_identifier ON idx_reference (pid, identifier_value)
    WHERE identifier_value IS NOT NULL;

CREATE TABLE idx_uri (
    res_pk INTEGER NOT NULL,
    pid    INTEGER NOT NULL,
    ord    INTEGER NOT NULL,
    value  TEXT    NOT NULL,
    grp    INTEGER NOT NULL,
    comp   INTEGER NOT NULL,
    PRIMARY KEY (res_pk, pid, ord)
) WITHOUT ROWID;
CREATE INDEX idx_uri_value ON idx_uri (pid, value);
