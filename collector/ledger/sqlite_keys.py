"""The SQLite store's record of collector key rotations (rows of ``meta``; the records and
their JSON are :mod:`collector.ledger.key_records`, shared with PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from collector.ledger.key_records import (
    HISTORY,
    PENDING,
    PendingRotation,
    RetiredKey,
    history_from_json,
    rotated_meta,
)
from collector.ledger.sqlite_base import SQLiteConnection
from provenance.keys import PublicKey

__all__ = ["KeyTables"]


class KeyTables(SQLiteConnection):
    """Pending rotation and the history of retired collector keys."""

    async def pending_key_rotation(self) -> PendingRotation | None:
        row = await self._one("SELECT value FROM meta WHERE key = ?", (PENDING,))
        return PendingRotation.from_json(str(row[0])) if row else None

    async def record_key_rotation(self, pending: PendingRotation) -> None:
        async with self._write() as db:
            await db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                             (PENDING, pending.to_json()))

    async def key_history(self) -> list[RetiredKey]:
        """Retired collector keys, oldest first."""
        row = await self._one("SELECT value FROM meta WHERE key = ?", (HISTORY,))
        return history_from_json(str(row[0]) if row else None)

    @asynccontextmanager
    async def rotation_claim(self) -> AsyncIterator[None]:
        """Completing a rotation: nothing to take, the caller holds the ledger's writer lock
        (one collector per SQLite ledger), and each step commits on its own."""
        yield

    async def running_collectors(self) -> list[str]:
        """None that the writer lock (taken by ``key rotate``) has not refused already."""
        return []

    async def finish_key_rotation(self, new_key: PublicKey, new_vkeys: Sequence[str],
                                  retired: RetiredKey) -> None:
        """One transaction: the new key becomes the ledger's, the old one is history."""
        rows = rotated_meta(await self.key_history(), new_key, new_vkeys, retired)
        async with self._write() as db:
            await db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", rows)
            await db.execute("DELETE FROM meta WHERE key = ?", (PENDING,))
