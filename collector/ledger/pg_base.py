"""The PostgreSQL store's connections: a psycopg 3 async pool, transactions, snapshots, errors.

psycopg 3 is PostgreSQL's maintained Python driver with a native asyncio API and a connection
pool (psycopg_pool) that drops broken connections and reconnects, which a collector needs to
ride out a database restart or failover. Every psycopg error leaves this layer as a
:class:`~collector.errors.StoreError`; the ones worth retrying (the connection went away, a
serialization failure, a deadlock, a lock timeout) as :class:`StoreRetry`.

A transaction or a snapshot binds its connection to the running task (a context variable), so
every query made inside it, by any method of the store, uses that one connection.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg.errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from collector.errors import StoreError

__all__ = ["RECONNECT_WINDOW_S", "PostgresConnection", "StoreRetry", "is_postgres_url",
           "redact", "start_over"]

_SCHEMES = ("postgresql://", "postgres://")

#: SQLSTATE classes and codes after which the whole transaction may simply run again.
_RETRY_STATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "25006"}


def is_postgres_url(text: str | object) -> bool:
    return isinstance(text, str) and text.startswith(_SCHEMES)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class StoreRetry(StoreError):
    """The database refused or lost a transaction that may simply be run again."""

    code = "store_retry"


def _retryable(exc: psycopg.Error) -> bool:
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return state in _RETRY_STATES or state.startswith("08")


def store_error(exc: BaseException, what: str) -> StoreError:
    if isinstance(exc, PoolTimeout):
        return StoreRetry(f"{what}: no database connection ({exc})")
    if isinstance(exc, psycopg.Error):
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        kind = StoreRetry if _retryable(exc) else StoreError
        return kind(f"{what}: {message}")
    return StoreError(f"{what}: {exc}")


#: The pool's ``reconnect_timeout``: how long one series of reconnection attempts lasts.
#: psycopg_pool doubles the pause between attempts (1, 2, 4 ... s) without a cap for as long as
#: the series lasts, so after a database outage of T seconds its next attempt could come up to
#: about T seconds after the database returned. A short series, started over by
#: :func:`start_over` when it runs out, caps the pause at a few seconds however long the
#: outage (attempts at 0, 1, 3, 7 and 10 s, then again from 0).
RECONNECT_WINDOW_S = 10.0


async def start_over(pool: AsyncConnectionPool[Any]) -> None:
    """The pool's ``reconnect_failed`` callback: a series of attempts ran out, start the next
    one now (``check()`` lets an empty pool grow), rather than waiting for a client to ask."""
    if not pool.closed:
        await pool.check()


_current: contextvars.ContextVar[psycopg.AsyncConnection[Any] | None] = contextvars.ContextVar(
    "sensorledger_pg_connection", default=None)


class PostgresConnection:
    """One ledger database; the table groups build on it."""

    #: psycopg's parameter placeholder (the shared reads build their SQL with it).
    _placeholder = "%s"

    def __init__(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]],
                 url: str) -> None:
        self._pool = pool
        self.url = url
        self.path = redact(url)  # how messages name the ledger

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """The connection of the transaction or snapshot in progress, else one from the pool."""
        current = _current.get()
        if current is not None:
            yield current
            return
        try:
            async with self._pool.connection() as conn:
                yield conn
        except (psycopg.Error, PoolTimeout) as exc:
            raise store_error(exc, f"reading {self.path}") from None

    @asynccontextmanager
    async def _write(self, what: str = "writing") -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """One write transaction (READ COMMITTED); rolled back on any error. Inside another
        transaction, that one (its commit or rollback covers this write too)."""
        current = _current.get()
        if current is not None:
            yield current
            return
        try:
            async with self._pool.connection() as conn, conn.transaction():
                token = _current.set(conn)
                try:
                    yield conn
                finally:
                    _current.reset(token)
        except (psycopg.Error, PoolTimeout) as exc:
            raise store_error(exc, f"{what} {self.path}") from None

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        """Run the reads inside one consistent snapshot (REPEATABLE READ, read only)."""
        if _current.get() is not None:
            yield
            return
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                token = _current.set(conn)
                try:
                    yield
                finally:
                    _current.reset(token)
        except (psycopg.Error, PoolTimeout) as exc:
            raise store_error(exc, f"reading {self.path}") from None

    async def _one(self, sql: str, params: Sequence[Any] = (), *,
                   prepare: bool | None = None) -> Any:
        async with self._conn() as conn:
            try:
                cur = await conn.execute(sql, params, prepare=prepare)
                return await cur.fetchone()
            except psycopg.Error as exc:
                raise store_error(exc, f"reading {self.path}") from None

    async def _all(self, sql: str, params: Sequence[Any] = (), *,
                   prepare: bool | None = None) -> list[Any]:
        async with self._conn() as conn:
            try:
                cur = await conn.execute(sql, params, prepare=prepare)
                return list(await cur.fetchall())
            except psycopg.Error as exc:
                raise store_error(exc, f"reading {self.path}") from None
