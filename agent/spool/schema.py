"""The spool database's tables, shared by the writer (the agent) and the reader (``status``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["COUNTERS", "SCHEMA", "SCHEMA_VERSION", "SpoolCounters", "counters_from"]

SCHEMA_VERSION = 1

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
    last_puback_ms  INTEGER
);
CREATE TABLE IF NOT EXISTS spool (
    pos       INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    is_gap    INTEGER NOT NULL DEFAULT 0,
    relayed   INTEGER NOT NULL DEFAULT 0,
    envelope  BLOB    NOT NULL
);
"""

#: The ``state`` columns that are totals.
COUNTERS = ("signed", "relayed", "published", "dropped", "dropped_relayed", "gap_records")


@dataclass(slots=True)
class SpoolCounters:
    """Totals since the spool was created (they persist across restarts)."""

    signed: int = 0
    relayed: int = 0
    published: int = 0
    dropped: int = 0
    dropped_relayed: int = 0
    gap_records: int = 0
    last_puback_ms: int | None = None


def counters_from(values: Sequence[Any]) -> SpoolCounters:
    """Counters from the ``state`` columns ``COUNTERS`` followed by ``last_puback_ms``."""
    totals = dict(zip(COUNTERS, values[:len(COUNTERS)], strict=True))
    return SpoolCounters(**totals, last_puback_ms=values[len(COUNTERS)])
