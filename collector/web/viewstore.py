"""The view's access to the ledger: the store protocol plus the few reads a public view needs
that ingest and audit do not, and its SQLite form opened read-only.

:class:`ViewStore` is :class:`collector.ledger.store.LedgerStore` with a keyset-paginated,
index-backed read of one device's readings by time. :class:`ReadOnlySQLiteStore` opens the file
with ``mode=ro``: it applies no migration, sets no pragma that writes, and any write it were
asked to make fails in SQLite itself. A pool of them (:class:`StorePool`) lets concurrent
requests each hold their own snapshot.
"""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

import aiosqlite

from collector.errors import NotFoundError, StoreError
from collector.ledger.records import ReadingRecord
from collector.ledger.sqlite_store import SQLiteStore
from collector.ledger.store import LedgerStore

__all__ = ["ReadOnlySQLiteStore", "StorePool", "ViewStore", "device_readings_sql"]

_READING_COLUMNS = "id, device_id, seq, boot, time_ms, received_ms, kind, envelope"
_TIME_INDEX = "readings_by_device_time"


class ViewStore(LedgerStore, Protocol):
    async def device_readings(self, device_id: str, since_ms: int, until_ms: int, *,
                              after: tuple[int, int] | None, limit: int,
                              ) -> list[ReadingRecord]:
        """Up to ``limit`` readings of ``device_id`` with ``since_ms <= time < until_ms``,
        ordered by (time, seq), strictly after the (time, seq) ``after`` when given."""
        ...

    async def device_reading_count(self, device_id: str, since_ms: int, until_ms: int) -> int:
        ...

    async def device_time_span(self, device_id: str) -> tuple[int, int] | None:
        """The earliest and latest device time of the device's readings."""
        ...

    async def device_kind(self, device_id: str) -> str | None:
        """The kind of the device's latest reading that is not a gap record."""
        ...

    async def reading_by_id(self, reading_id: int) -> ReadingRecord | None: ...

    async def cosignature_times(self, size: int) -> list[tuple[str, str, int]]:
        """Witness cosignatures of the checkpoint of ``size``, as (witness verifier key,
        signature line, cosignature time in seconds); none on a ledger without witnesses."""
        ...


def device_readings_sql(after: bool) -> str:
    """The page query: a range scan of ``readings_by_device_time``, already in order."""
    return (f"SELECT {_READING_COLUMNS} FROM readings WHERE device_id = ? "
            "AND time_ms >= ? AND time_ms < ?"
            + (" AND (time_ms, seq) > (?, ?)" if after else "")
            + " ORDER BY time_ms, seq LIMIT ?")


class ReadOnlySQLiteStore(SQLiteStore):
    """A SQLite ledger opened ``mode=ro``: the store's reads and the view's."""

    has_time_index: bool = False
    has_cosignatures: bool = False

    @classmethod
    async def open_readonly(cls, path: str | Path) -> ReadOnlySQLiteStore:
        p = Path(path).resolve()
        if not p.is_file():
            raise NotFoundError(f"ledger database {p} does not exist")
        uri = f"file:{urllib.parse.quote(str(p))}?mode=ro"
        try:
            db = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open ledger database {p} read-only: {exc}") from None
        store = cls(db, p)
        try:
            await db.execute("PRAGMA busy_timeout = 15000")
            if await store.schema_version() == 0:
                raise NotFoundError(f"{p} holds no ledger")
            row = await store._one("SELECT 1 FROM sqlite_master WHERE type = 'index' "
                                   "AND name = ?", (_TIME_INDEX,))
            store.has_time_index = row is not None
            row = await store._one("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                   "AND name = 'cosignatures'")
            store.has_cosignatures = row is not None
        except sqlite3.DatabaseError as exc:
            await db.close()
            raise StoreError(f"{p} is not a usable ledger database: {exc}") from None
        except BaseException:
            await db.close()
            raise
        return store

    async def device_readings(self, device_id: str, since_ms: int, until_ms: int, *,
                              after: tuple[int, int] | None, limit: int,
                              ) -> list[ReadingRecord]:
        params: list[object] = [device_id, since_ms, until_ms]
        if after is not None:
            params += list(after)
        params.append(limit)
        return [ReadingRecord(*row)
                for row in await self._all(device_readings_sql(after is not None), params)]

    async def device_reading_count(self, device_id: str, since_ms: int, until_ms: int) -> int:
        row = await self._one("SELECT COUNT(*) FROM readings WHERE device_id = ? "
                              "AND time_ms >= ? AND time_ms < ?", (device_id, since_ms, until_ms))
        return int(row[0])

    async def device_time_span(self, device_id: str) -> tuple[int, int] | None:
        first = await self._one("SELECT time_ms FROM readings WHERE device_id = ? "
                                "ORDER BY time_ms LIMIT 1", (device_id,))
        if first is None:
            return None
        last = await self._one("SELECT time_ms FROM readings WHERE device_id = ? "
                               "ORDER BY time_ms DESC LIMIT 1", (device_id,))
        return int(first[0]), int(last[0])

    async def device_kind(self, device_id: str) -> str | None:
        row = await self._one("SELECT kind FROM readings WHERE device_id = ? AND kind != 'gap' "
                              "ORDER BY seq DESC LIMIT 1", (device_id,))
        return str(row[0]) if row else None

    async def reading_by_id(self, reading_id: int) -> ReadingRecord | None:
        row = await self._one(f"SELECT {_READING_COLUMNS} FROM readings WHERE id = ?",
                              (reading_id,))
        return ReadingRecord(*row) if row else None

    async def cosignature_times(self, size: int) -> list[tuple[str, str, int]]:
        if not self.has_cosignatures:
            return []
        rows = await self._all("SELECT witness, line, cosigned_s FROM cosignatures "
                               "WHERE size = ? ORDER BY witness", (size,))
        return [(str(w), str(line), int(t)) for w, line, t in rows]

    async def explain(self, sql: str, params: Sequence[object] = ()) -> list[str]:
        """SQLite's query plan of ``sql``, one line per step (for the index tests)."""
        return [str(row[3]) for row in await self._all(f"EXPLAIN QUERY PLAN {sql}", params)]


class StorePool:
    """A few read-only connections; a request holds one for its whole duration, so its
    snapshot never mixes with another request's."""

    def __init__(self, stores: Sequence[ViewStore]) -> None:
        self._all = list(stores)
        self._free: asyncio.Queue[ViewStore] = asyncio.Queue()
        for s in stores:
            self._free.put_nowait(s)

    @classmethod
    async def open(cls, path: str | Path, size: int = 4) -> StorePool:
        stores: list[ViewStore] = []
        try:
            for _ in range(size):
                stores.append(await ReadOnlySQLiteStore.open_readonly(path))
        except BaseException:
            for s in stores:
                await s.close()
            raise
        return cls(stores)

    @property
    def first(self) -> ViewStore:
        return self._all[0]

    @asynccontextmanager
    async def store(self) -> AsyncIterator[ViewStore]:
        s = await self._free.get()
        try:
            yield s
        finally:
            self._free.put_nowait(s)

    async def close(self) -> None:
        for s in self._all:
            await s.close()
