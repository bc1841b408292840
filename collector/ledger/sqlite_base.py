"""The SQLite store's connection: one aiosqlite connection, write transactions, snapshots.

The parts every table group of :class:`collector.ledger.sqlite_store.SQLiteStore` shares.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from collector.errors import StoreError

__all__ = ["SQLiteConnection"]


class SQLiteConnection:
    """One open ledger file; the table groups build on it."""

    #: sqlite3's parameter placeholder (the shared reads build their SQL with it).
    _placeholder = "?"

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._snapshots = 0  # snapshots open on this connection (they nest: one transaction)

    async def _pragma(self, statement: str) -> Any:
        async with self._db.execute(f"PRAGMA {statement}") as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction; rolled back on any error."""
        try:
            await self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot start a write transaction on {self.path}: {exc}") from None
        try:
            yield self._db
        except BaseException:
            if self._db.in_transaction:
                await self._db.execute("ROLLBACK")
            raise
        try:
            await self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                await self._db.execute("ROLLBACK")
            raise StoreError(f"commit to {self.path} failed: {exc}") from None

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        """Run the reads inside one consistent snapshot (a deferred read transaction).

        A snapshot taken while one is open (by this task or another, as the audit's two
        passes run side by side) is that same snapshot; the outermost one ends it."""
        if self._snapshots:
            self._snapshots += 1
            try:
                yield
            finally:
                self._snapshots -= 1
            return
        await self._db.execute("BEGIN")
        self._snapshots = 1
        try:
            yield
        finally:
            self._snapshots = 0
            if self._db.in_transaction:
                await self._db.execute("COMMIT")

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        async with self._db.execute(sql, params) as cur:
            return await cur.fetchone()

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._db.execute(sql, params) as cur:
            return list(await cur.fetchall())
