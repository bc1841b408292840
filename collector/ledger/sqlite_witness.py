"""The SQLite store's cosignature table: what the log's witnesses returned for its checkpoints,
and the freshest checkpoint that enough of them cosigned."""

from __future__ import annotations

import time

from collector.ledger.sqlite_base import SQLiteConnection

__all__ = ["CosignatureTables"]


class CosignatureTables(SQLiteConnection):
    async def add_cosignature(self, size: int, witness: str, line: str, cosigned_s: int) -> None:
        """Keep a witness's cosignature of the checkpoint of ``size`` (a newer one for the same
        size replaces the older: both say the same)."""
        async with self._write() as db:
            await db.execute(
                "INSERT OR REPLACE INTO cosignatures(size, witness, line, cosigned_s, "
                "received_ms) VALUES (?, ?, ?, ?, ?)",
                (size, witness, line, cosigned_s, time.time_ns() // 1_000_000))

    async def cosignatures(self, size: int) -> list[tuple[str, str]]:
        """(witness vkey, signature line) of every cosignature of the checkpoint of ``size``."""
        rows = await self._all("SELECT witness, line FROM cosignatures WHERE size = ? "
                               "ORDER BY witness", (size,))
        return [(str(w), str(line)) for w, line in rows]

    async def witness_size(self, witness: str) -> int | None:
        """The largest size ``witness`` cosigned for us, if any."""
        row = await self._one("SELECT MAX(size) FROM cosignatures WHERE witness = ?", (witness,))
        return int(row[0]) if row and row[0] is not None else None

    async def freshest_cosigned(self, quorum: int, at_least: int = 0) -> int | None:
        """The largest checkpoint size cosigned by ``quorum`` or more witnesses (and covering
        ``at_least`` leaves), if any."""
        row = await self._one(
            "SELECT size FROM cosignatures WHERE size >= ? GROUP BY size HAVING COUNT(*) >= ? "
            "ORDER BY size DESC LIMIT 1", (at_least, max(quorum, 1)))
        return int(row[0]) if row else None
