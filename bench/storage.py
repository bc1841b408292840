"""Issue item 6: what the ledger costs on disk per reading, against the envelope's own size.

Measured on the ledger the ingest benchmark's collector wrote (so every row, index and block is
what ``ledger-collector run`` produces), after the collector stopped cleanly: SQLite then has
checkpointed its WAL into the main file. ``dbstat`` gives the split by table and index.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .context import RunContext
from .results import BenchResult, Target

__all__ = ["ledger_bytes", "run_storage"]

TARGET_RATIO = 2.5


def ledger_bytes(db: Path) -> int:
    """The database and any WAL or shared-memory file beside it."""
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())


def _breakdown(db: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name "
                           "ORDER BY 2 DESC").fetchall()
    except sqlite3.OperationalError:  # SQLite built without the dbstat table
        return {}
    finally:
        con.close()
    return {name: int(size) for name, size in rows}


def run_storage(ctx: RunContext) -> BenchResult:
    result = BenchResult("storage", "Ledger bytes per reading vs envelope size")
    db = Path(ctx.results["ingest"].params["ledger_db"])
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        readings, envelope_total = con.execute(
            "SELECT COUNT(*), SUM(LENGTH(envelope)) FROM readings "
            "WHERE device_id != '@collector'").fetchone()
    finally:
        con.close()
    size = ledger_bytes(db)
    per_reading = size / readings
    envelope = envelope_total / readings
    result.add("bytes_per_reading", "ledger bytes per reading", per_reading, "B")
    result.add("envelope_bytes", "envelope size (mean)", envelope, "B")
    result.add("ratio", "ledger bytes ÷ envelope bytes", per_reading / envelope, "×",
               Target("<=", TARGET_RATIO))
    result.params = {"readings": readings, "ledger_bytes": size,
                     "by_table_bytes": _breakdown(db)}
    return result
