"""The spool as ``sensor-agent status`` shows it, read without the agent (WAL readers)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpoolError
from .schema import COUNTERS, SpoolCounters, counters_from

__all__ = ["SpoolReport", "read_report"]


@dataclass(frozen=True, slots=True)
class SpoolReport:
    """What ``sensor-agent status`` shows from the spool, read without the agent."""

    path: str
    device_id: str
    boot: int
    next_seq: int
    head: str
    open_gap: tuple[int, int] | None
    depth: int
    gap_rows: int
    oldest_seq: int | None
    newest_seq: int | None
    counters: SpoolCounters
    awaiting_receipt: int = 0  # acknowledged by the broker, not yet covered by a receipt
    sealed_through: int | None = None
    receipt_tree: int | None = None
    receipt_ms: int | None = None
    held_refused: dict[str, int] | None = None  # rows kept after a refusal, by reason
    refusals: dict[str, int] | None = None  # refusals heard, by reason (totals)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "device_id": self.device_id, "boot": self.boot,
            "next_seq": self.next_seq, "head": self.head,
            "open_gap": list(self.open_gap) if self.open_gap else None,
            "depth": self.depth, "gap_records_waiting": self.gap_rows,
            "oldest_seq": self.oldest_seq, "newest_seq": self.newest_seq,
            "totals": {name: getattr(self.counters, name) for name in COUNTERS},
            "last_puback_ms": self.counters.last_puback_ms,
            "awaiting_receipt": self.awaiting_receipt, "sealed_through": self.sealed_through,
            "receipt_tree_size": self.receipt_tree, "receipt_ms": self.receipt_ms,
            "held_refused": self.held_refused or {}, "refusals": self.refusals or {},
        }


def read_report(path: Path) -> SpoolReport:
    """Read the spool's state without writing (safe while the agent runs: WAL readers)."""
    if not path.exists():
        raise SpoolError(f"spool {path} does not exist (has the agent run yet?)")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise SpoolError(f"cannot open spool {path} read-only: {exc}") from exc
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version < 2:
            raise SpoolError(f"spool {path} has schema version {version}; start the agent "
                             "once to update it")
        row = db.execute("SELECT device_id, boot, next_seq, head, gap_first, gap_last, "
                         + ", ".join(COUNTERS) + ", last_puback_ms, sealed_through, "
                         "receipt_tree, receipt_ms FROM state").fetchone()
        if row is None:
            raise SpoolError(f"spool {path} has no state yet")
        depth, gap_rows = db.execute(
            "SELECT COALESCE(SUM(is_gap = 0), 0), COALESCE(SUM(is_gap), 0) FROM spool"
        ).fetchone()
        oldest, newest = db.execute(
            "SELECT MIN(seq), MAX(seq) FROM spool WHERE relayed = 0").fetchone()
        (awaiting,) = db.execute(
            "SELECT COUNT(*) FROM spool WHERE is_gap = 0 AND sent_ms IS NOT NULL").fetchone()
        held = dict(db.execute("SELECT refused, COUNT(*) FROM spool WHERE refused IS NOT NULL "
                               "GROUP BY refused ORDER BY refused").fetchall())
        refusals = dict(db.execute("SELECT reason, count FROM refusals ORDER BY reason")
                        .fetchall())
    except sqlite3.Error as exc:
        raise SpoolError(f"cannot read spool {path}: {exc}") from exc
    finally:
        db.close()
    device_id, boot, next_seq, head, gap_first, gap_last = row[:6]
    counters = counters_from(row[6:-3])
    sealed_through, receipt_tree, receipt_ms = row[-3:]
    return SpoolReport(
        path=str(path), device_id=device_id, boot=boot, next_seq=next_seq, head=bytes(head).hex(),
        open_gap=(gap_first, gap_last) if gap_first is not None else None,
        depth=depth, gap_rows=gap_rows, oldest_seq=oldest, newest_seq=newest, counters=counters,
        awaiting_receipt=awaiting, sealed_through=sealed_through, receipt_tree=receipt_tree,
        receipt_ms=receipt_ms, held_refused=held, refusals=refusals,
    )
