"""A collector ledger ready for a benchmark, and read-only looks into it while the collector runs.

The ledger is created by ``ledger-collector init`` (the real path, key file included); the
backlog's devices are enrolled through the collector's store interface in one process, because
a hundred ``devices add`` invocations would cost more than the benchmark measures.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from collector.ledger.sqlite_store import SQLiteStore
from provenance.keys import PublicKey
from provenance.statement import STATEMENT_DEVICE

__all__ = ["LedgerFiles", "LedgerTotals", "collector_cli", "enrol", "init_ledger", "installed_cli",
           "totals"]


def installed_cli(script: str, module: str) -> list[str]:
    """The argv that runs ``script`` as installed with this interpreter's environment (else on
    PATH, else ``python -m module``)."""
    beside = Path(sys.executable).parent / script
    if beside.exists():
        return [str(beside)]
    exe = shutil.which(script)
    return [exe] if exe else [sys.executable, "-m", module]


def collector_cli() -> list[str]:
    """The installed ``ledger-collector`` script of this interpreter's environment."""
    return installed_cli("ledger-collector", "collector")


@dataclass(frozen=True, slots=True)
class LedgerFiles:
    db: Path
    key: Path

    @property
    def public_key(self) -> Path:
        return self.key.with_name(self.key.stem + ".pub.pem")


def init_ledger(workdir: Path) -> LedgerFiles:
    files = LedgerFiles(workdir / "ledger.db", workdir / "collector-key.pem")
    subprocess.run([*collector_cli(), "init", "--db", str(files.db), "--key", str(files.key)],
                   check=True, capture_output=True)
    return files


def enrol(db: Path, devices: Iterable[tuple[str, PublicKey]]) -> None:
    async def go() -> None:
        store = await SQLiteStore.open(db)
        try:
            now_ms = time.time_ns() // 1_000_000
            for device_id, key in devices:
                await store.enrol(device_id, key, now_ms)
        finally:
            await store.close()

    asyncio.run(go())


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    # Device readings only: the collector's statements (one per enrolment, logged when the
    # collector starts) are leaves of the tree too, but no benchmark sent them.
    readings: int
    sealed: int  # device readings inside sealed blocks
    blocks: int
    quarantined: int
    first_received_ms: int | None
    last_sealed_ms: int | None


def totals(db: Path) -> LedgerTotals:
    """Counts read through a separate read-only connection (WAL: never blocks the writer)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        # Device readings only: the log also holds the collector's statements (enrolments).
        readings, first = con.execute(
            "SELECT COUNT(*), MIN(received_ms) FROM readings WHERE device_id != ?",
            (STATEMENT_DEVICE,)).fetchone()
        leaves, blocks, last = con.execute(
            "SELECT COALESCE(SUM(leaf_count), 0), COUNT(*), MAX(sealed_ms) FROM blocks"
        ).fetchone()
        # Blocks tile reading ids 1..leaves, in order.
        (sealed,) = con.execute("SELECT COUNT(*) FROM readings WHERE id <= ? AND device_id != ?",
                                (leaves, STATEMENT_DEVICE)).fetchone()
        (quarantined,) = con.execute("SELECT COUNT(*) FROM quarantine").fetchone()
    finally:
        con.close()
    return LedgerTotals(readings, sealed, blocks, quarantined, first, last)
