"""The spool database's tables, shared by the writer (the agent) and the reader (``status``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["COUNTERS", "MIGRATE_1_TO_2", "SCHEMA", "SCHEMA_VERSION", "SpoolCounters",
           "counters_from"]

#: 2 adds what receipts need: when the broker took each row (``sent_ms``), the refusal a
#: receipt reported for it, the device's sealed watermark and the last receipt itself.
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    device_id       TEXT    NOT NULL,
    boot            INTEGER NOT NULL,
    next_seq        INTEGER NOT NULL,
    head            BLOB    NOT NULL,
    gap_first       INTEGER,          -- open overflow episode, NULL when none
    gap_last        INTEGER,
    signed          INTEGER NOT NULL DEFAULT 0,
    relayed         INTEGER NOT NULL DEFAULT 0,
    published       INTEGER NOT NULL DEFAULT 0,
    dropped         INTEGER NOT NULL DEFAULT 0,
    dropped_relayed INTEGER NOT NULL DEFAULT 0,
    gap_records     INTEGER NOT NULL DEFAULT 0,
    last_puback_ms  INTEGER,
    sealed          INTEGER NOT NULL DEFAULT 0, -- rows a receipt released
    refused_final   INTEGER NOT NULL DEFAULT 0, -- rows released by a final refusal
    sealed_through  INTEGER,          -- the device's mark in the last receipt
    receipt_tree    INTEGER,          -- its tree size
    receipt_ms      INTEGER,          -- when it arrived (agent clock)
    receipt         BLOB              -- the signed receipt, as received: the collector's word
);
CREATE TABLE IF NOT EXISTS spool (
    pos       INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    is_gap    INTEGER NOT NULL DEFAULT 0,
    relayed   INTEGER NOT NULL DEFAULT 0,
    envelope  BLOB    NOT NULL,
    sent_ms   INTEGER,                -- last PUBACK (receipts mode), NULL: never acknowledged
    refused   TEXT                    -- reason of the last refusal a receipt named
);
CREATE TABLE IF NOT EXISTS refusals (
    reason    TEXT    PRIMARY KEY,
    count     INTEGER NOT NULL,       -- refusals heard for this reason (one per seq and receipt)
    last_seq  INTEGER NOT NULL,
    last_ms   INTEGER NOT NULL
);
"""

#: A version 1 spool gains the columns of version 2 (the CREATE TABLEs above add the rest).
MIGRATE_1_TO_2 = """
ALTER TABLE state ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE state ADD COLUMN refused_final INTEGER NOT NULL DEFAULT 0;
ALTER TABLE state ADD COLUMN sealed_through INTEGER;
ALTER TABLE state ADD COLUMN receipt_tree INTEGER;
ALTER TABLE state ADD COLUMN receipt_ms INTEGER;
ALTER TABLE state ADD COLUMN receipt BLOB;
ALTER TABLE spool ADD COLUMN sent_ms INTEGER;
ALTER TABLE spool ADD COLUMN refused TEXT
"""

#: The ``state`` columns that are totals.
COUNTERS = ("signed", "relayed", "published", "dropped", "dropped_relayed", "gap_records",
            "sealed", "refused_final")


@dataclass(slots=True)
class SpoolCounters:
    """Totals since the spool was created (they persist across restarts)."""

    signed: int = 0
    relayed: int = 0
    published: int = 0
    dropped: int = 0
    dropped_relayed: int = 0
    gap_records: int = 0
    sealed: int = 0
    refused_final: int = 0
    last_puback_ms: int | None = None


def counters_from(values: Sequence[Any]) -> SpoolCounters:
    """Counters from the ``state`` columns ``COUNTERS`` followed by ``last_puback_ms``."""
    totals = dict(zip(COUNTERS, values[:len(COUNTERS)], strict=True))
    return SpoolCounters(**totals, last_puback_ms=values[len(COUNTERS)])
