"""The checkpoint and quarantine reads, written once for SQLite and PostgreSQL.

A store's connection class says how to run a query (``_one``, ``_all``) and which parameter
placeholder its driver takes (``_placeholder``: ``?`` for sqlite3, ``%s`` for psycopg); the
mixins here build their SQL with that placeholder, in the words both databases read alike. The
quarantine's column list and the row a :class:`QuarantineRecord` is written as live here too,
for both stores' writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from collector.ledger.records import CheckpointRecord, QuarantineEntry, QuarantineRecord

__all__ = ["CHECKPOINT_COLUMNS", "QUARANTINE_COLUMNS", "CheckpointReads", "QuarantineReads",
           "quarantine_entry", "quarantine_row", "reading_filter"]

CHECKPOINT_COLUMNS = "size, root, note, block_height, signed_ms"
QUARANTINE_COLUMNS = (
    "raw_sha256, reason, detail, topic, topic_device, device_id, seq, size, raw, first_ms, last_ms"
)


def reading_filter(placeholder: str, device_id: str | None, since_ms: int | None,
                   until_ms: int | None) -> tuple[list[str], list[Any]]:
    """The conditions and parameters of ``query_readings``: one device's, signed at or after
    ``since_ms`` and before ``until_ms`` (each when given)."""
    where: list[str] = []
    params: list[Any] = []
    for condition, value in (("device_id =", device_id), ("time_ms >=", since_ms),
                             ("time_ms <", until_ms)):
        if value is not None:
            where.append(f"{condition} {placeholder}")
            params.append(value)
    return where, params


class _Rows(Protocol):
    """What the mixins need of a store's connection class."""

    @property
    def _placeholder(self) -> str: ...

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


class CheckpointReads:
    """Mixin: the signed checkpoints of the log tree, by size."""

    async def checkpoint(self: _Rows, size: int | None = None) -> CheckpointRecord | None:
        """The checkpoint at ``size``, or the latest one."""
        if size is None:
            row = await self._one(f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints "
                                  "ORDER BY size DESC LIMIT 1")
        else:
            row = await self._one(f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints "
                                  f"WHERE size = {self._placeholder}", (size,))
        return CheckpointRecord(*row) if row else None

    async def checkpoint_at_least(self: _Rows, size: int) -> CheckpointRecord | None:
        """The smallest checkpoint covering ``size`` leaves."""
        row = await self._one(f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints "
                              f"WHERE size >= {self._placeholder} ORDER BY size LIMIT 1", (size,))
        return CheckpointRecord(*row) if row else None

    async def iter_checkpoints(self: _Rows,
                               chunk: int = 1024) -> AsyncIterator[list[CheckpointRecord]]:
        """Every checkpoint, by size, a chunk at a time (a year of 1 s blocks has 31 million)."""
        p = self._placeholder
        after = -1
        while True:
            rows = await self._all(f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints "
                                   f"WHERE size > {p} ORDER BY size LIMIT {p}", (after, chunk))
            if not rows:
                return
            yield [CheckpointRecord(*row) for row in rows]
            after = rows[-1][0]

    async def checkpoints(self: _Rows) -> list[CheckpointRecord]:
        rows = await self._all(f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY size")
        return [CheckpointRecord(*row) for row in rows]


class QuarantineReads:
    """Mixin: what was kept out of the ledger, listed and counted."""

    async def quarantine_entries(self: _Rows, *, reason: str | None = None,
                                 device_id: str | None = None,
                                 limit: int = 100) -> list[QuarantineEntry]:
        """Quarantine rows in the order they were first stored (``limit`` below 0: all)."""
        p = self._placeholder
        where: list[str] = []
        params: list[Any] = []
        if reason is not None:
            where.append(f"reason = {p}")
            params.append(reason)
        if device_id is not None:
            where.append(f"COALESCE(device_id, topic_device) = {p}")
            params.append(device_id)
        sql = f"SELECT id, {QUARANTINE_COLUMNS}, times_seen FROM quarantine"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        if limit >= 0:
            sql += f" LIMIT {p}"
            params.append(limit)
        return [quarantine_entry(row) for row in await self._all(sql, params)]

    async def quarantine_counts(self: _Rows) -> dict[tuple[str, str], int]:
        """Messages seen, by (device or topic device, reason)."""
        rows = await self._all(
            "SELECT COALESCE(device_id, topic_device, '?'), reason, SUM(times_seen) "
            "FROM quarantine GROUP BY 1, 2")
        return {(row[0], row[1]): int(row[2]) for row in rows}


def quarantine_entry(row: Sequence[Any]) -> QuarantineEntry:
    """A quarantine row read as ``id, QUARANTINE_COLUMNS, times_seen``."""
    return QuarantineEntry(
        id=row[0],
        record=QuarantineRecord(
            raw_sha256=bytes(row[1]), reason=row[2], detail=row[3], topic=row[4],
            topic_device=row[5], device_id=row[6], seq=row[7], size=row[8], raw=bytes(row[9]),
            received_ms=row[10]),
        last_ms=row[11],
        times_seen=row[12],
    )


def quarantine_row(q: QuarantineRecord) -> tuple[Any, ...]:
    """The values of ``QUARANTINE_COLUMNS`` for a record seen for the first time."""
    return (q.raw_sha256, q.reason, q.detail, q.topic, q.topic_device, q.device_id, q.seq,
            q.size, q.raw, q.received_ms, q.received_ms)
