"""The PostgreSQL store's ``meta`` rows, and its record of collector key rotations (the records
and their JSON are :mod:`collector.ledger.key_records`, shared with SQLite).

Completing a rotation on PostgreSQL is one transaction that first locks the pending row
(:meth:`PgKeyTables.rotation_claim`): the statement, the blocks that seal it and the switch to
the new key commit together or not at all, and a second collector started meanwhile waits on
the row, then finds the rotation done.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from collector.ledger.key_records import (
    HISTORY,
    PENDING,
    PendingRotation,
    RetiredKey,
    history_from_json,
    rotated_meta,
)
from collector.ledger.pg_base import PostgresConnection
from provenance.keys import PublicKey

__all__ = ["COLLECTOR_APPLICATION", "PgKeyTables"]

#: The ``application_name`` of a running collector's connections (``ledger-collector run``),
#: by which ``key rotate`` finds collectors still connected to the ledger.
COLLECTOR_APPLICATION = "ledger-collector run"


class PgKeyTables(PostgresConnection):
    """``meta`` values, the pending rotation and the history of retired collector keys."""

    async def _meta(self, key: str) -> str | None:
        row = await self._one("SELECT value FROM meta WHERE key = %s", (key,))
        return str(row[0]) if row else None

    async def _set_meta(self, conn: psycopg.AsyncConnection[Any],
                        items: Iterable[tuple[str, str]]) -> None:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO meta(key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", list(items))

    async def pending_key_rotation(self) -> PendingRotation | None:
        value = await self._meta(PENDING)
        return PendingRotation.from_json(value) if value is not None else None

    async def record_key_rotation(self, pending: PendingRotation) -> None:
        async with self._write("recording the key rotation in") as conn:
            await self._set_meta(conn, [(PENDING, pending.to_json())])

    async def key_history(self) -> list[RetiredKey]:
        """Retired collector keys, oldest first."""
        return history_from_json(await self._meta(HISTORY))

    @asynccontextmanager
    async def rotation_claim(self) -> AsyncIterator[None]:
        """One transaction for the whole completion, holding the pending row's lock: every
        store call of this task inside it joins it (:mod:`collector.ledger.pg_base`)."""
        async with self._write("completing the key rotation in") as conn:
            await conn.execute("SELECT value FROM meta WHERE key = %s FOR UPDATE", (PENDING,))
            yield

    async def running_collectors(self) -> list[str]:
        """The collectors connected to this database now (their ``application_name`` and
        address), as PostgreSQL sees them; behind a transaction pooler it may see none."""
        rows = await self._all(
            "SELECT application_name, COALESCE(host(client_addr), 'local socket') "
            "FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND application_name LIKE %s "
            "ORDER BY application_name", (COLLECTOR_APPLICATION + "%",))
        return [f"{name} ({addr})" for name, addr in rows]

    async def finish_key_rotation(self, new_key: PublicKey, new_vkeys: Sequence[str],
                                  retired: RetiredKey) -> None:
        """One transaction: the new key becomes the ledger's, the old one is history."""
        async with self._write("completing the key rotation in") as conn:
            rows = rotated_meta(await self.key_history(), new_key, new_vkeys, retired)
            await self._set_meta(conn, rows)
            await conn.execute("DELETE FROM meta WHERE key = %s", (PENDING,))
