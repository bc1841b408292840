"""The PostgreSQL ledger's writes of readings: each reading written once, as a row of
``reading_rows``; its leaf id, when it has one, as a row of ``leaves``; a private reading's
sealed values and grants beside it (see :mod:`collector.ledger.pg_schema`, migration 3, and
:mod:`collector.ledger.pg_cluster` for the sealer that numbers the rows of a cluster)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from collector.ledger.records import PrivateRecord, ReadingRecord
from collector.ledger.statement_index import statement_terms

__all__ = ["UNSEALED_ROWS", "write_leaves", "write_private", "write_readings"]

_ROW_COLUMNS = ("device_id, seq, boot, time_ms, received_ms, kind, envelope, "  # reading_rows
                "statement_type, statement_kid")
#: The rows with no leaf yet (a ``FROM`` clause, alias ``r``; its parameter: the sealer's
#: horizon, from :meth:`PostgresStore.unsealed_horizon`): every row of a transaction older
#: than the horizon has its leaf (see :mod:`collector.ledger.pg_cluster`). The horizon goes in
#: as a value and the statement is not prepared, so the planner sees how few rows are above it
#: and walks ``reading_rows_by_xid``.
UNSEALED_ROWS = (
    "FROM reading_rows r WHERE r.xid >= %s::text::xid8 "
    "AND NOT EXISTS (SELECT 1 FROM leaves l WHERE l.row_id = r.row_id)"
)

_ROW_TYPES = ["text", "int8", "int8", "int8", "int8", "text", "bytea", "text", "bytea"]


def _row(r: ReadingRecord) -> tuple[Any, ...]:
    """A reading's ``reading_rows`` columns (``_ROW_COLUMNS``): a statement's type and key id
    beside it (:mod:`collector.ledger.statement_index`)."""
    return (*r[1:], *statement_terms(r.device_id, r.envelope))


async def write_readings(cur: psycopg.AsyncCursor[Any], readings: Sequence[ReadingRecord], *,
                         row_ids: bool = False) -> list[int]:
    """Inside a transaction: insert ``readings`` (binary COPY, one statement) and the leaf rows
    of those that carry an id; the row ids given, in order, or [] when none was asked for
    (``row_ids`` false and no reading with an id: the rows are numbered by ``reading_rows``'
    own sequence as they are copied)."""
    numbered = row_ids or any(r.id for r in readings)
    given: list[int] = []
    columns = _ROW_COLUMNS
    if numbered:
        await cur.execute("SELECT nextval('readings_row_id_seq') FROM generate_series(1, %s)",
                          (len(readings),))
        given = [int(row[0]) for row in await cur.fetchall()]
        columns = "row_id, " + columns
    async with cur.copy(f"COPY reading_rows({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        if numbered:
            copy.set_types(["int8", *_ROW_TYPES])
            for row_id, r in zip(given, readings, strict=True):
                await copy.write_row((row_id, *_row(r)))
        else:
            copy.set_types(_ROW_TYPES)
            for r in readings:
                await copy.write_row(_row(r))
    leaves = ([(r.id, row_id) for r, row_id in zip(readings, given, strict=True) if r.id]
              if numbered else [])
    if leaves:
        await write_leaves(cur, leaves)
    return given


async def write_private(cur: psycopg.AsyncCursor[Any], readings: Sequence[ReadingRecord],
                        row_ids: Sequence[int], private: Sequence[PrivateRecord]) -> None:
    """Inside the transaction of ``readings`` (stored as rows ``row_ids``): the sealed values
    and grants of the private ones, each found by its device and seq."""
    rows = {(r.device_id, r.seq): row_id for r, row_id in zip(readings, row_ids, strict=True)}
    await cur.executemany(
        "INSERT INTO private_values(row_id, subject, data_kid, sealed) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING",
        [(rows[(p.device_id, p.seq)], p.subject, p.data_kid, p.sealed) for p in private])
    grants = [(p.data_kid, reader, p.subject, grant) for p in private for reader, grant in p.grants]
    if grants:
        await cur.executemany(
            "INSERT INTO private_grants(data_kid, reader_kid, subject, key_grant) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", grants)


async def write_leaves(cur: psycopg.AsyncCursor[Any], leaves: Sequence[tuple[int, int]]) -> None:
    """Inside a transaction: number rows, (leaf id, row id) pairs; a row or an id numbered
    already fails the transaction (both are unique)."""
    async with cur.copy("COPY leaves(id, row_id) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "int8"])
        for pair in leaves:
            await copy.write_row(pair)
