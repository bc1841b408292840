"""SQLite schema of the ledger, as numbered migrations recorded in ``schema_migrations``.

A migration runs once, in its own transaction together with the row that records it, so a crash
half-way leaves the database at the previous version. Never edit a released migration; append.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

# (version, name, SQL). Readings carry only what queries need beside the envelope; every column
# is re-checked against the signed envelope by `audit`.
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial ledger", """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE device_keys (
    kid           BLOB PRIMARY KEY,         -- SHA-256 of the DER SubjectPublicKeyInfo
    device_id     TEXT NOT NULL,
    public_key    BLOB NOT NULL,            -- DER SubjectPublicKeyInfo
    enrolled_ms   INTEGER NOT NULL,
    revoked_ms    INTEGER,                  -- effective time: device time >= this is refused
    revoke_reason TEXT
);
CREATE INDEX device_keys_by_device ON device_keys(device_id);

-- One row per accepted reading, id dense and in arrival order (= leaf order in blocks).
CREATE TABLE readings (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    boot        INTEGER NOT NULL,
    time_ms     INTEGER NOT NULL,           -- device time (signed)
    received_ms INTEGER NOT NULL,           -- collector time of arrival
    kind        TEXT NOT NULL,
    envelope    BLOB NOT NULL               -- COSE_Sign1 bytes exactly as received
);
CREATE UNIQUE INDEX readings_by_device_seq ON readings(device_id, seq);

-- Block h holds readings first_reading_id .. first_reading_id + leaf_count - 1.
CREATE TABLE blocks (
    height           INTEGER PRIMARY KEY,
    hash             BLOB NOT NULL UNIQUE,  -- SHA-256 of header
    header           BLOB NOT NULL,         -- collector-signed COSE_Sign1 block header
    first_reading_id INTEGER NOT NULL,
    leaf_count       INTEGER NOT NULL,
    sealed_ms        INTEGER NOT NULL
);

CREATE TABLE quarantine (
    id           INTEGER PRIMARY KEY,
    raw_sha256   BLOB NOT NULL,             -- of the whole message
    reason       TEXT NOT NULL,
    detail       TEXT NOT NULL,
    topic        TEXT NOT NULL,
    topic_device TEXT,
    device_id    TEXT,                      -- signed device id, when the signature held
    seq          INTEGER,
    size         INTEGER NOT NULL,          -- length of the whole message
    raw          BLOB NOT NULL,             -- the message, or its first bytes if oversized
    first_ms     INTEGER NOT NULL,
    last_ms      INTEGER NOT NULL,
    times_seen   INTEGER NOT NULL DEFAULT 1,
    UNIQUE (raw_sha256, reason)
);
CREATE INDEX quarantine_by_device ON quarantine(device_id, reason);

CREATE TABLE device_state (
    device_id        TEXT PRIMARY KEY,
    first_seq        INTEGER NOT NULL,
    last_seq         INTEGER NOT NULL,
    last_hash        BLOB NOT NULL,
    last_boot        INTEGER NOT NULL,
    last_time_ms     INTEGER NOT NULL,
    last_received_ms INTEGER NOT NULL,
    accepted         INTEGER NOT NULL,
    duplicates       INTEGER NOT NULL,
    equivocations    INTEGER NOT NULL,
    chain_breaks     INTEGER NOT NULL,
    chain_restarts   INTEGER NOT NULL,
    reboots          INTEGER NOT NULL,
    boot_resets      INTEGER NOT NULL,
    out_of_order     INTEGER NOT NULL,
    delayed          INTEGER NOT NULL,
    last_skew_ms     INTEGER NOT NULL,
    max_ahead_ms     INTEGER NOT NULL
);

CREATE TABLE gaps (
    device_id    TEXT NOT NULL,
    first_seq    INTEGER NOT NULL,
    last_seq     INTEGER NOT NULL,
    detected_ms  INTEGER NOT NULL,
    explained_by INTEGER,                   -- seq of the device's signed gap record
    PRIMARY KEY (device_id, first_seq)
);

INSERT INTO meta(key, value) VALUES ('registry_version', 0);
"""),
    (2, "one log tree and checkpoints", """
-- The one RFC 9162 tree over every sealed reading (leaf index = reading id - 1), in tiles as
-- C2SP tlog-tiles lays them out: tile (level L, idx I) holds the hashes of the tree nodes of
-- level 8L numbered 256I .. 256I+255 (level 0: the leaf hashes), concatenated; the right-edge
-- tile of a level is partial and grows. Every other perfect node is hashed from one tile.
-- Written by the sealer in the transaction of the block that adds to them.
CREATE TABLE tree_tiles (
    level  INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    hashes BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

-- One signed C2SP checkpoint (a signed note) per tree size, never replaced.
CREATE TABLE checkpoints (
    size         INTEGER PRIMARY KEY,
    root         BLOB NOT NULL,
    note         BLOB NOT NULL,
    block_height INTEGER,                   -- the block that grew the tree to this size
    signed_ms    INTEGER NOT NULL
);

INSERT INTO meta(key, value) VALUES ('tree_size', 0);
"""),
    (3, "witness cosignatures", """
-- Cosignatures (C2SP cosignature/v1) of the log's checkpoints by its witnesses, as the witness
-- returned them; a checkpoint plus the lines of its size is the cosigned checkpoint.
CREATE TABLE cosignatures (
    size        INTEGER NOT NULL,           -- tree size of the checkpoint cosigned
    witness     TEXT NOT NULL,              -- the witness's verifier key (name+id+key)
    line        TEXT NOT NULL,              -- the note signature line, without its newline
    cosigned_s  INTEGER NOT NULL,           -- the timestamp inside the cosignature
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (size, witness)
) WITHOUT ROWID;
CREATE INDEX cosignatures_by_witness ON cosignatures(witness, size);
"""),
    (4, "readings by device and time", """
-- A device's readings over a time range, in time order, read through the index alone (the
-- read-only view's plots and its paginated API: keyset on (time_ms, seq)).
CREATE INDEX readings_by_device_time ON readings(device_id, time_ms, seq);
"""),
    (5, "private readings: sealed values, grants and erasures outside the log", """
-- The sealed values of private readings (COSE_Encrypt0 under the subject's data key), kept
-- beside the log, never in it: the log commits to the signed envelope only, whose payload
-- holds a salted commitment. `erase` deletes a subject's rows here (secure_delete).
CREATE TABLE private_values (
    reading_id INTEGER PRIMARY KEY,         -- readings.id of the private reading
    subject    TEXT NOT NULL,
    data_kid   BLOB NOT NULL,
    sealed     BLOB NOT NULL
);
CREATE INDEX private_values_by_subject ON private_values(subject);

-- One grant per data key and reader: the data key wrapped for the reader (COSE_Encrypt,
-- ECDH-ES + A256KW). Kept until the subject is erased or the reader's grants are dropped.
CREATE TABLE private_grants (
    data_kid   BLOB NOT NULL,
    reader_kid BLOB NOT NULL,
    subject    TEXT NOT NULL,
    grant      BLOB NOT NULL,
    PRIMARY KEY (data_kid, reader_kid)
) WITHOUT ROWID;
CREATE INDEX private_grants_by_subject ON private_grants(subject);

-- Erasures: requested (erased_ms NULL) and carried out, each with its record signed by the
-- collector key. The record names the erased readings and data keys, never the subject.
CREATE TABLE erasures (
    id           INTEGER PRIMARY KEY,
    subject      TEXT,                      -- cleared once the erasure is done
    authority    TEXT NOT NULL,
    requested_ms INTEGER NOT NULL,
    erased_ms    INTEGER,
    readings     INTEGER,
    record       BLOB                       -- COSE_Sign1 by the collector key
);
"""),
    (6, "erasure records logged as collector statements", """
-- An erasure's record is the `erase` collector statement it logged: the log row that holds it
-- (the same bytes are kept in `record`). NULL for an erasure recorded before statements were.
ALTER TABLE erasures ADD COLUMN statement_id INTEGER;
"""),
    (7, "collector statements indexed by type and key", """
-- A collector statement row's type and the key id it is about (an enrolment's key, a
-- revocation's, a key rotation's new collector key): a proof finds the statement it carries by
-- index (collector/ledger/statement_index.py). NULL for device readings. The existing
-- statement rows are filled by SQL functions the store defines on its connection.
ALTER TABLE readings ADD COLUMN statement_type TEXT;
ALTER TABLE readings ADD COLUMN statement_kid BLOB;
UPDATE readings SET statement_type = sl_statement_type(device_id, envelope),
                    statement_kid = sl_statement_kid(device_id, envelope)
 WHERE device_id = '@collector';
CREATE INDEX readings_by_statement ON readings(statement_type, statement_kid)
 WHERE statement_type IS NOT NULL;
"""),
]
