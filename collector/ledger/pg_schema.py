"""PostgreSQL schema of the ledger, as numbered migrations recorded in ``schema_migrations``.

The same tables as the SQLite schema (:mod:`collector.ledger.sqlite_schema`, versions 1 and 2)
in one first migration, with what several collectors on one database need besides:

* ``readings.row_id`` (bigserial) orders rows as they are inserted; ``readings.id`` (the leaf
  index + 1) is assigned by the sealer, in one transaction under the log-head lock, so ids are
  dense and in commit order even when inserts commit out of sequence order. A row with no id
  yet is committed but unsealed.
* ``log_head``: one row per log; the sealer locks it (``SELECT ... FOR UPDATE``) and updates it
  with a compare-and-swap on the previous tree size and root.
* ``device_locks``: one row per device, locked by the admission transaction, so the
  per-device checks of one device run one collector at a time.

Migration 3 writes each reading once: the rows (``reading_rows``) are never updated, the
sealer numbers them by inserting into the narrow ``leaves`` table (leaf id, row), and
``readings`` is a view joining the two, so every query by id reads as before. The sealer finds
the committed rows without a leaf above a horizon of transaction ids (``reading_rows.xid``,
``log_head.unsealed_xid``; see :mod:`collector.ledger.pg_cluster`).

A migration runs once, in its own transaction together with the row that records it. Never
edit a released migration; append.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial ledger, one log tree, checkpoints and the log head", """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE device_keys (
    kid           BYTEA PRIMARY KEY,
    device_id     TEXT NOT NULL,
    public_key    BYTEA NOT NULL,
    enrolled_ms   BIGINT NOT NULL,
    revoked_ms    BIGINT,
    revoke_reason TEXT
);
CREATE INDEX device_keys_by_device ON device_keys(device_id);

CREATE TABLE readings (
    row_id      BIGSERIAL PRIMARY KEY,
    id          BIGINT UNIQUE,              -- leaf index + 1, set when sealed
    device_id   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    boot        BIGINT NOT NULL,
    time_ms     BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    envelope    BYTEA NOT NULL,
    UNIQUE (device_id, seq)
);
CREATE INDEX readings_unsealed ON readings(row_id) WHERE id IS NULL;

CREATE TABLE blocks (
    height           BIGINT PRIMARY KEY,
    hash             BYTEA NOT NULL UNIQUE,
    header           BYTEA NOT NULL,
    first_reading_id BIGINT NOT NULL UNIQUE,
    leaf_count       BIGINT NOT NULL,
    sealed_ms        BIGINT NOT NULL
);

CREATE TABLE quarantine (
    id           BIGSERIAL PRIMARY KEY,
    raw_sha256   BYTEA NOT NULL,
    reason       TEXT NOT NULL,
    detail       TEXT NOT NULL,
    topic        TEXT NOT NULL,
    topic_device TEXT,
    device_id    TEXT,
    seq          BIGINT,
    size         BIGINT NOT NULL,
    raw          BYTEA NOT NULL,
    first_ms     BIGINT NOT NULL,
    last_ms      BIGINT NOT NULL,
    times_seen   BIGINT NOT NULL DEFAULT 1,
    UNIQUE (raw_sha256, reason)
);
CREATE INDEX quarantine_by_device ON quarantine(device_id, reason);

CREATE TABLE device_locks (
    device_id TEXT PRIMARY KEY
);

CREATE TABLE device_state (
    device_id        TEXT PRIMARY KEY,
    first_seq        BIGINT NOT NULL,
    last_seq         BIGINT NOT NULL,
    last_hash        BYTEA NOT NULL,
    last_boot        BIGINT NOT NULL,
    last_time_ms     BIGINT NOT NULL,
    last_received_ms BIGINT NOT NULL,
    accepted         BIGINT NOT NULL,
    duplicates       BIGINT NOT NULL,
    equivocations    BIGINT NOT NULL,
    chain_breaks     BIGINT NOT NULL,
    chain_restarts   BIGINT NOT NULL,
    reboots          BIGINT NOT NULL,
    boot_resets      BIGINT NOT NULL,
    out_of_order     BIGINT NOT NULL,
    delayed          BIGINT NOT NULL,
    last_skew_ms     BIGINT NOT NULL,
    max_ahead_ms     BIGINT NOT NULL
);

CREATE TABLE gaps (
    device_id    TEXT NOT NULL,
    first_seq    BIGINT NOT NULL,
    last_seq     BIGINT NOT NULL,
    detected_ms  BIGINT NOT NULL,
    explained_by BIGINT,
    PRIMARY KEY (device_id, first_seq)
);

CREATE TABLE tree_tiles (
    level  INTEGER NOT NULL,
    idx    BIGINT NOT NULL,
    hashes BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE checkpoints (
    size         BIGINT PRIMARY KEY,
    root         BYTEA NOT NULL,
    note         BYTEA NOT NULL,
    block_height BIGINT,
    signed_ms    BIGINT NOT NULL
);

-- The head of the one log: tree size and root, and the last block (height -1: none).
CREATE TABLE log_head (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    size        BIGINT NOT NULL,
    root        BYTEA NOT NULL,
    height      BIGINT NOT NULL,
    block_hash  BYTEA NOT NULL,
    sealed_ms   BIGINT NOT NULL
);
INSERT INTO log_head VALUES (1, 0, ''::bytea, -1, ''::bytea, 0);

INSERT INTO meta(key, value) VALUES ('registry_version', '0');
"""),
    (2, "witness cosignatures; readings by device and time", """
-- SQLite migrations 3 and 4.
CREATE TABLE cosignatures (
    size        BIGINT NOT NULL,
    witness     TEXT NOT NULL,
    line        TEXT NOT NULL,
    cosigned_s  BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    PRIMARY KEY (size, witness)
);
CREATE INDEX cosignatures_by_witness ON cosignatures(witness, size);
CREATE INDEX readings_by_device_time ON readings(device_id, time_ms, seq);
"""),
    (3, "readings written once: leaf numbering in its own table, unsealed rows by xid; "
        "private readings' sealed values, grants and erasures", """
-- The sealer numbers readings by inserting (leaf id, row) pairs; it never updates a reading.
ALTER TABLE readings RENAME TO reading_rows;
CREATE TABLE leaves (
    id     BIGINT CONSTRAINT leaves_pkey PRIMARY KEY,          -- leaf index + 1
    row_id BIGINT NOT NULL CONSTRAINT leaves_row_id_key UNIQUE -- reading_rows.row_id
);
INSERT INTO leaves(id, row_id) SELECT id, row_id FROM reading_rows WHERE id IS NOT NULL;
DROP INDEX readings_unsealed;
ALTER TABLE reading_rows DROP COLUMN id;
-- The inserting transaction's id: every row of a transaction older than the oldest one still
-- running is visible, so the sealer looks for rows without a leaf at and above a horizon
-- (log_head.unsealed_xid) only. Rows stored before this migration count as transaction 0.
ALTER TABLE reading_rows ADD COLUMN xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE reading_rows ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
-- Blocks take rows in (xid, row_id) order: the oldest transactions' rows first, each one's in
-- insert order; this index walks them in that order from the horizon.
CREATE INDEX reading_rows_by_xid ON reading_rows(xid, row_id);
ALTER TABLE log_head ADD COLUMN unsealed_xid xid8 NOT NULL DEFAULT '0';
-- What every query reads: a reading and its id (NULL until sealed).
CREATE VIEW readings AS
    SELECT l.id, r.row_id, r.device_id, r.seq, r.boot, r.time_ms, r.received_ms, r.kind,
           r.envelope
    FROM reading_rows r LEFT JOIN leaves l ON l.row_id = r.row_id;

-- Private readings (SQLite migration 5): sealed values beside the log, never in it, by the
-- row of the reading (its id is given when sealed); the data keys wrapped for each reader.
CREATE TABLE private_values (
    row_id   BIGINT PRIMARY KEY,            -- reading_rows.row_id of the private reading
    subject  TEXT NOT NULL,
    data_kid BYTEA NOT NULL,
    sealed   BYTEA NOT NULL
);
CREATE INDEX private_values_by_subject ON private_values(subject);
CREATE TABLE private_grants (
    data_kid   BYTEA NOT NULL,
    reader_kid BYTEA NOT NULL,
    subject    TEXT NOT NULL,
    key_grant  BYTEA NOT NULL,              -- SQLite's `grant` (a reserved word here)
    PRIMARY KEY (data_kid, reader_kid)
);
CREATE INDEX private_grants_by_subject ON private_grants(subject);
-- Erasures (SQLite migrations 5 and 6): the erase statement is the row `statement_row` of
-- reading_rows (its id: once sealed).
CREATE TABLE erasures (
    id            BIGSERIAL PRIMARY KEY,
    subject       TEXT,                     -- cleared once the erasure is done
    authority     TEXT NOT NULL,
    requested_ms  BIGINT NOT NULL,
    erased_ms     BIGINT,
    readings      BIGINT,
    statement_row BIGINT,
    record        BYTEA
);
"""),
    (4, "collector statements indexed by type and key", """
-- SQLite migration 7: a collector statement row's type and the key id it is about, so a proof
-- finds the statements it carries by index. The store fills the existing statement rows in
-- the same transaction (collector/ledger/statement_index.py).
ALTER TABLE reading_rows ADD COLUMN statement_type TEXT, ADD COLUMN statement_kid BYTEA;
CREATE INDEX readings_by_statement ON reading_rows(statement_type, statement_kid)
 WHERE statement_type IS NOT NULL;
CREATE OR REPLACE VIEW readings AS
    SELECT l.id, r.row_id, r.device_id, r.seq, r.boot, r.time_ms, r.received_ms, r.kind,
           r.envelope, r.statement_type, r.statement_kid
    FROM reading_rows r LEFT JOIN leaves l ON l.row_id = r.row_id;
"""),
]
