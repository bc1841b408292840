"""The view's access to the ledger: the store protocol plus the few reads a public view needs
that ingest and audit do not, and its SQLite form opened read-only.

:class:`ViewStore` is :class:`collector.ledger.store.LedgerStore` with a keyset-paginated,
index-backed read of one device's readings by time. :class:`ReadOnlySQLiteStore` opens the file
with ``mode=ro``: it applies no migration, sets no pragma that writes, and any write it were
asked to make fails in SQLite itself. A pool of them (:class:`StorePool`) lets concurrent
requests each hold their own snapshot.

:class:`ReadOnlyPostgresStore` is the same view of a PostgreSQL ledger (a ``postgresql://``
URL): every connection of its pool is opened with ``default_transaction_read_only=on``, so
PostgreSQL itself refuses any write, and each request runs in one REPEATABLE READ, READ ONLY
snapshot. It sees sealed readings only (those with an ``id``); a cluster's unsealed rows appear
once the sealer has numbered them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import aiosqlite
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from collector.errors import NotFoundError, StoreError
from collector.ledger.pg_base import RECONNECT_WINDOW_S, is_postgres_url, redact, start_over
from collector.ledger.pg_store import SCHEMA_VERSION as PG_SCHEMA_VERSION
from collector.ledger.pg_store import PostgresStore
from collector.ledger.pg_writes import UNSEALED_ROWS
from collector.ledger.records import ReadingRecord
from collector.ledger.sqlite_store import SCHEMA_VERSION, SQLiteStore
from collector.ledger.store import LedgerStore

__all__ = ["POSTGRES", "SQLITE", "VIEW_QUERIES", "Dialect", "ReadOnlyPostgresStore",
           "ReadOnlySQLiteStore", "StorePool", "ViewStore", "device_readings_sql",
           "open_view_store", "pg_device_count_sql", "pg_device_readings_sql"]

_READING_COLUMNS = "id, device_id, seq, boot, time_ms, received_ms, kind, envelope"
_TIME_INDEX = "readings_by_device_time"

#: The view's own queries, once for both databases: ``?`` marks a parameter, ``{sealed}`` the
#: condition that leaves out readings with no leaf index yet (a cluster's unsealed rows),
#: ``{after}`` a page's keyset condition. :class:`Dialect` spells them for one database.
VIEW_QUERIES: dict[str, str] = {
    # a range scan of readings_by_device_time, already in order
    "page": "SELECT {columns} FROM readings WHERE device_id = ? AND time_ms >= ? "
            "AND time_ms < ?{sealed}{after} ORDER BY time_ms, seq LIMIT ?",
    "count": "SELECT COUNT(*) FROM readings WHERE device_id = ? AND time_ms >= ? "
             "AND time_ms < ?{sealed}",
    "first time": "SELECT time_ms FROM readings WHERE device_id = ?{sealed} "
                  "ORDER BY time_ms LIMIT 1",
    "last time": "SELECT time_ms FROM readings WHERE device_id = ?{sealed} "
                 "ORDER BY time_ms DESC LIMIT 1",
    # (device_id, seq) is the unique key's index, scanned backwards
    "kind": "SELECT kind FROM readings WHERE device_id = ? AND kind <> 'gap'{sealed} "
            "ORDER BY seq DESC LIMIT 1",
    "by id": "SELECT {columns} FROM readings WHERE id = ?",
    "cosignatures": "SELECT witness, line, cosigned_s FROM cosignatures WHERE size = ? "
                    "ORDER BY witness",
}
_AFTER = " AND (time_ms, seq) > (?, ?)"


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database spells :data:`VIEW_QUERIES` and asks for a plan."""

    mark: str  # the parameter placeholder
    sealed: str  # the condition on sealed rows ("" where every row is sealed)
    explain: str  # the statement that shows a plan
    plan_column: int  # the column of a plan row that describes the step

    def sql(self, name: str, *, after: bool = False) -> str:
        text = VIEW_QUERIES[name].format(columns=_READING_COLUMNS, sealed=self.sealed,
                                         after=_AFTER if after else "")
        return text.replace("?", self.mark)


SQLITE = Dialect("?", "", "EXPLAIN QUERY PLAN", 3)
POSTGRES = Dialect("%s", " AND id IS NOT NULL", "EXPLAIN", 0)


def _reading(row: Sequence[Any]) -> ReadingRecord:
    # PostgreSQL hands a BYTEA column over as a memoryview; bytes() of bytes is the same object
    return ReadingRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bytes(row[7]))


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

    async def explain(self, sql: str, params: Sequence[object] = ()) -> list[str]:
        """The database's plan of ``sql``, one line per step (for the index tests)."""
        ...

    @property
    def has_time_index(self) -> bool: ...


def device_readings_sql(after: bool) -> str:
    """The page query on SQLite: a range scan of ``readings_by_device_time``, in order."""
    return SQLITE.sql("page", after=after)


def pg_device_count_sql() -> str:
    """A device's stored rows in a time range on PostgreSQL, sealed or not (the view subtracts
    the unsealed ones): the time index alone."""
    return ("SELECT COUNT(*) FROM reading_rows WHERE device_id = %s "
            "AND time_ms >= %s AND time_ms < %s")


def pg_device_readings_sql(after: bool) -> str:
    """The page query on PostgreSQL: a range scan of ``readings_by_device_time``."""
    return POSTGRES.sql("page", after=after)


class ViewReads:
    """:class:`ViewStore`'s reads, from :data:`VIEW_QUERIES` in the store's dialect."""

    dialect: ClassVar[Dialect]
    has_cosignatures: bool

    if TYPE_CHECKING:  # the store's own (SQLite or PostgreSQL)
        async def _one(self, sql: str, params: Sequence[Any] = (), *,
                       prepare: bool | None = None) -> Any: ...
        async def _all(self, sql: str, params: Sequence[Any] = (), *,
                       prepare: bool | None = None) -> list[Any]: ...

    async def device_readings(self, device_id: str, since_ms: int, until_ms: int, *,
                              after: tuple[int, int] | None, limit: int,
                              ) -> list[ReadingRecord]:
        params: list[object] = [device_id, since_ms, until_ms]
        if after is not None:
            params += list(after)
        params.append(limit)
        rows = await self._all(self.dialect.sql("page", after=after is not None), params)
        return [_reading(row) for row in rows]

    async def device_reading_count(self, device_id: str, since_ms: int, until_ms: int) -> int:
        row = await self._one(self.dialect.sql("count"), (device_id, since_ms, until_ms))
        return int(row[0])

    async def device_time_span(self, device_id: str) -> tuple[int, int] | None:
        first = await self._one(self.dialect.sql("first time"), (device_id,))
        if first is None:
            return None
        last = await self._one(self.dialect.sql("last time"), (device_id,))
        return int(first[0]), int(last[0])

    async def device_kind(self, device_id: str) -> str | None:
        row = await self._one(self.dialect.sql("kind"), (device_id,))
        return str(row[0]) if row else None

    async def reading_by_id(self, reading_id: int) -> ReadingRecord | None:
        row = await self._one(self.dialect.sql("by id"), (reading_id,))
        return _reading(row) if row else None

    async def cosignature_times(self, size: int) -> list[tuple[str, str, int]]:
        if not self.has_cosignatures:
            return []
        rows = await self._all(self.dialect.sql("cosignatures"), (size,))
        return [(str(w), str(line), int(t)) for w, line, t in rows]

    async def explain(self, sql: str, params: Sequence[object] = ()) -> list[str]:
        """The database's plan of ``sql`` (not run), one line per step (for the index tests)."""
        return [str(row[self.dialect.plan_column])
                for row in await self._all(f"{self.dialect.explain} {sql}", params)]


class ReadOnlySQLiteStore(ViewReads, SQLiteStore):
    """A SQLite ledger opened ``mode=ro``: the store's reads and the view's."""

    dialect = SQLITE

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
            version = await store.schema_version()
            if version == 0:
                raise NotFoundError(f"{p} holds no ledger")
            if version != SCHEMA_VERSION:
                # Read-only, the view cannot migrate; every query assumes this schema.
                raise StoreError(
                    f"{p} has schema version {version}, this view reads version "
                    f"{SCHEMA_VERSION}: " + ("upgrade sensorledger" if version > SCHEMA_VERSION
                                             else "let the collector open it once (`ledger-"
                                             "collector run`, or any ledger-collector command "
                                             "on it) to apply the migrations"))
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


class ReadOnlyPostgresStore(ViewReads, PostgresStore):
    """A PostgreSQL ledger through connections that are read-only in PostgreSQL itself."""

    dialect = POSTGRES

    has_time_index: bool = False
    has_cosignatures: bool = True

    async def device_reading_count(self, device_id: str, since_ms: int, until_ms: int) -> int:
        # The device's rows in the range (the time index alone) less those not sealed yet (the
        # few above the sealer's horizon): no join of every row with its leaf.
        horizon = await self.unsealed_horizon()
        row = await self._one(
            f"SELECT ({pg_device_count_sql()}) - (SELECT COUNT(*) {UNSEALED_ROWS} "
            "AND r.device_id = %s AND r.time_ms >= %s AND r.time_ms < %s)",
            (device_id, since_ms, until_ms, horizon, device_id, since_ms, until_ms),
            prepare=False)
        return int(row[0])

    @classmethod
    async def open_readonly(cls, url: str, *, pool_size: int = 4,
                            timeout: float = 30.0) -> ReadOnlyPostgresStore:
        """Open the ledger at ``url`` for reading; no migration is applied (the collector
        applies them), and a schema other than this version's is refused."""
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            url, min_size=1, max_size=max(1, pool_size), open=False, timeout=timeout,
            kwargs={"autocommit": True, "options": "-c default_transaction_read_only=on"},
            check=AsyncConnectionPool.check_connection, reconnect_timeout=RECONNECT_WINDOW_S,
            reconnect_failed=start_over, name="sensorledger-view")
        try:
            await pool.open(wait=True, timeout=timeout)
        except (psycopg.Error, PoolTimeout) as exc:
            await pool.close()
            raise StoreError(f"cannot open ledger database {redact(url)}: {exc}") from None
        store = cls(pool, url)
        try:
            version = await store.schema_version()
            if version == 0:
                raise NotFoundError(f"{store.path} holds no ledger")
            if version != PG_SCHEMA_VERSION:
                raise StoreError(
                    f"{store.path} has schema version {version}, this view reads version "
                    f"{PG_SCHEMA_VERSION}: " + (
                        "upgrade sensorledger" if version > PG_SCHEMA_VERSION else
                        "let the collector open it once (any ledger-collector command on it "
                        "applies the migrations)"))
            row = await store._one("SELECT to_regclass(%s) IS NOT NULL", (_TIME_INDEX,))
            store.has_time_index = bool(row and row[0])
        except BaseException:
            await pool.close()
            raise
        return store


async def open_view_store(database: str | Path, *, pool_size: int = 1) -> ViewStore:
    """The read-only view store of ``database``: a SQLite path or a ``postgresql://`` URL."""
    if is_postgres_url(str(database)):
        return await ReadOnlyPostgresStore.open_readonly(str(database), pool_size=pool_size)
    return await ReadOnlySQLiteStore.open_readonly(database)


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
        if is_postgres_url(str(path)):
            return PostgresStorePool(
                await ReadOnlyPostgresStore.open_readonly(str(path), pool_size=size))
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


class PostgresStorePool(StorePool):
    """One read-only PostgreSQL store whose own pool holds the connections; a request runs in
    one REPEATABLE READ, READ ONLY transaction on one of them, so it reads one snapshot."""

    def __init__(self, store: ReadOnlyPostgresStore) -> None:
        super().__init__([store])
        self._pg = store

    @asynccontextmanager
    async def store(self) -> AsyncIterator[ViewStore]:
        async with self._pg.snapshot():
            yield self._pg

    async def close(self) -> None:
        await self._pg.close()
