"""The PostgreSQL ledger store (psycopg 3, async, pooled): the same ledger as the SQLite file,
for several collectors on several machines.

It implements :class:`collector.ledger.store.LedgerStore` as the SQLite store does, so every
command, audit, proof and export runs on it unchanged. Durability is PostgreSQL's: a COMMIT
returns once the WAL is flushed (``synchronous_commit = on``, the default; with a synchronous
standby, once the standby has it too). Multi-collector admission and sealing, which take row
locks, are in :mod:`collector.ledger.pg_cluster`; the registry, the collector key and witness
cosignatures in :mod:`collector.ledger.pg_registry`, key rotations and ``meta`` in
:mod:`collector.ledger.pg_keys`; the log's identity, tree, checkpoints and blocks in
:mod:`collector.ledger.pg_log`; the readings, statements, device states and quarantine, and the
batch writes, in :mod:`collector.ledger.pg_readings`. This module opens the ledger and migrates
its schema.

Reading ids: ``readings.id`` is the leaf index + 1. Each reading is written once, as a row of
``reading_rows``; its id is a row of ``leaves`` (id, row), and ``readings`` is the view that joins
them (id NULL: not sealed yet). A single writer (``commit_batch``, the format 1 migration, a copy
from SQLite) gives ids itself, with the rows; in a cluster the sealer inserts them
(``reading_rows.row_id`` orders what is not sealed yet). Queries by id see sealed readings only.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from collector.errors import NotFoundError, StoreError
from collector.ledger.pg_base import RECONNECT_WINDOW_S, redact, start_over, store_error
from collector.ledger.pg_keys import COLLECTOR_APPLICATION
from collector.ledger.pg_readings import PgReadingTables
from collector.ledger.pg_schema import MIGRATIONS
from collector.ledger.statement_index import statement_terms
from provenance.statement import STATEMENT_DEVICE

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

SCHEMA_VERSION = MIGRATIONS[-1][0]
_STATEMENT_INDEX = 4  # the migration that indexes statement rows (statement_index.py)


async def _index_statements(conn: psycopg.AsyncConnection[Any]) -> None:
    """Migration 4, in its transaction: the statement rows already stored get their terms."""
    cur = await conn.execute("SELECT row_id, device_id, envelope FROM readings "
                             "WHERE device_id = %s", (STATEMENT_DEVICE,))
    rows = [(*statement_terms(d, bytes(e)), r) for r, d, e in await cur.fetchall()]
    async with conn.cursor() as c:
        await c.executemany("UPDATE reading_rows SET statement_type = %s, statement_kid = %s "
                            "WHERE row_id = %s", rows)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class PostgresStore(PgReadingTables):
    """:class:`collector.ledger.store.LedgerStore` on one PostgreSQL database: its lifecycle
    and migrations here; the log's tables in :mod:`collector.ledger.pg_log`, the readings' in
    :mod:`collector.ledger.pg_readings`."""

    @classmethod
    async def open(cls, url: str, *, create: bool = False, pool_size: int = 4,
                   timeout: float = 30.0, collector: str | None = None) -> PostgresStore:
        """Open the ledger in the database at ``url`` (which must exist); with ``create``, an
        empty database becomes a ledger. Pending migrations are applied. ``collector``: the
        client id of the running collector these connections serve (their
        ``application_name`` says so)."""
        kwargs: dict[str, Any] = {"autocommit": True}
        if collector is not None:
            kwargs["application_name"] = f"{COLLECTOR_APPLICATION} {collector}"[:63]
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            url, min_size=1, max_size=max(2, pool_size), open=False, timeout=timeout,
            kwargs=kwargs, check=AsyncConnectionPool.check_connection,
            reconnect_timeout=RECONNECT_WINDOW_S, reconnect_failed=start_over,
            name="sensorledger")
        try:
            await pool.open(wait=True, timeout=timeout)
        except (psycopg.Error, PoolTimeout) as exc:
            await pool.close()
            raise StoreError(f"cannot open ledger database {redact(url)}: {exc}") from None
        store = cls(pool, url)
        try:
            if not create and await store.schema_version() == 0:
                raise NotFoundError(f"{store.path} holds no ledger; create one with "
                                    "`ledger-collector init`")
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    async def close(self) -> None:
        await self._pool.close()

    async def schema_version(self) -> int:
        row = await self._one("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not row or not row[0]:
            return 0
        row = await self._one("SELECT MAX(version) FROM schema_migrations")
        return int(row[0] or 0) if row else 0

    async def _migrate(self) -> None:
        async with self._write("migrating") as conn:
            # One migrator at a time when several collectors start together.
            await conn.execute("SELECT pg_advisory_xact_lock(7262011)")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_ms BIGINT NOT NULL)")
        current = await self.schema_version()
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {current}, newer than this collector "
                f"({SCHEMA_VERSION}); upgrade sensorledger")
        for version, name, sql in MIGRATIONS:
            if version <= current:
                continue
            async with self._write("migrating") as conn:
                await conn.execute("SELECT pg_advisory_xact_lock(7262011)")
                cur = await conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = %s", (version,))
                if await cur.fetchone():
                    continue  # another process applied it meanwhile
                await conn.execute(sql.encode())
                if version == _STATEMENT_INDEX:
                    await _index_statements(conn)
                await conn.execute(
                    "INSERT INTO schema_migrations(version, name, applied_ms) "
                    "VALUES (%s, %s, %s)", (version, name, _now_ms()))


def convert(exc: BaseException, what: str) -> StoreError:
    """A psycopg error as the store's error (for callers outside this module)."""
    return store_error(exc, what)
