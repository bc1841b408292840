"""The SQLite ledger store (aiosqlite): one file, WAL, one writer, durable commits.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``, so every COMMIT fsyncs the WAL
before it returns. (``NORMAL`` in WAL mode may lose the last transactions on power loss; the
collector acknowledges messages right after a commit, so a lost commit would be a lost reading.)
Commits are batched by the pipeline, so the fsync cost is paid once per batch, not per reading.

Transactions are explicit (``BEGIN IMMEDIATE`` ... ``COMMIT``): the writer takes the write lock
at the start, so a concurrent ``ledger-collector devices add`` waits (``busy_timeout``) rather
than failing half-way. Readers (audit, export) use WAL snapshots and never block the writer.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from collector import faults
from collector.admission.gaps import SeqGap
from collector.admission.registry import DeviceKey
from collector.errors import NotFoundError, StoreError
from collector.ledger.records import (
    SEQ_SUMMARIES,
    BatchWrite,
    BlockRecord,
    CheckpointRecord,
    DeviceState,
    PendingLeaf,
    QuarantineRecord,
    ReadingRecord,
    SeqSummary,
)
from collector.ledger.sqlite_keys import KeyTables
from collector.ledger.sqlite_log import LogTables
from collector.ledger.sqlite_registry import RegistryTables
from collector.ledger.sqlite_schema import MIGRATIONS
from collector.ledger.sqlite_witness import CosignatureTables
from collector.ledger.statement_index import (
    IndexRow,
    index_row,
    index_rows_query,
    statement_kid,
    statement_terms,
    statement_type,
    statements_query,
)
from collector.ledger.table_reads import QUARANTINE_COLUMNS, quarantine_row, reading_filter
from provenance.compact import Node
from provenance.merkle import RFC9162_SHA256

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION = MIGRATIONS[-1][0]
_BUSY_TIMEOUT_MS = 15_000
_READING_COLUMNS = "id, device_id, seq, boot, time_ms, received_ms, kind, envelope"
_INSERT_READINGS = (f"INSERT INTO readings({_READING_COLUMNS}, statement_type, statement_kid) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?)")
_STATE_COLUMNS = (
    "device_id, first_seq, last_seq, last_hash, last_boot, last_time_ms, last_received_ms, "
    "accepted, duplicates, equivocations, chain_breaks, chain_restarts, reboots, boot_resets, "
    "out_of_order, delayed, last_skew_ms, max_ahead_ms"
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _reading_rows(readings: Iterable[ReadingRecord]) -> list[tuple[Any, ...]]:
    """``readings`` rows to insert: the record, then a statement's index terms."""
    return [(*r, *statement_terms(r.device_id, r.envelope)) for r in readings]


class SQLiteStore(LogTables, RegistryTables, CosignatureTables, KeyTables):
    """:class:`collector.ledger.store.LedgerStore` on one SQLite file.

    The registry and quarantine tables are in :mod:`collector.ledger.sqlite_registry`, the log
    tree and checkpoints in :mod:`collector.ledger.sqlite_log`; the
    connection, transactions and snapshots in :mod:`collector.ledger.sqlite_base`.
    """

    # lifecycle -------------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, create: bool = False) -> SQLiteStore:
        """Open (and with ``create`` make) the ledger at ``path``, applying pending migrations."""
        p = Path(path)
        if not create and not p.exists():
            raise NotFoundError(
                f"ledger database {p} does not exist; create it with `ledger-collector init`"
            )
        try:
            if create:
                p.parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(p, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open ledger database {p}: {exc}") from None
        store = cls(db, p)
        try:
            await db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            # For migration 7, which indexes the statement rows already stored.
            await db.create_function("sl_statement_type", 2, statement_type, deterministic=True)
            await db.create_function("sl_statement_kid", 2, statement_kid, deterministic=True)
            if not create and await store.schema_version() == 0:
                # An empty or foreign file (a mistyped backup path): never write to it, nor
                # turn it into an empty ledger that then audits "OK".
                raise NotFoundError(f"{p} holds no ledger; create one with `ledger-collector init`")
            await store._pragma("journal_mode = WAL")
            await db.execute("PRAGMA synchronous = FULL")
            await store._migrate()
        except sqlite3.DatabaseError as exc:
            await db.close()
            raise StoreError(f"{p} is not a usable ledger database: {exc}") from None
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    async def schema_version(self) -> int:
        async with self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ) as cur:
            if await cur.fetchone() is None:
                return 0
        async with self._db.execute("SELECT MAX(version) FROM schema_migrations") as cur:
            row = await cur.fetchone()
        return int(row[0] or 0) if row else 0

    async def _migrate(self) -> None:
        await self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)"
        )
        current = await self.schema_version()
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {current}, newer than this collector "
                f"({SCHEMA_VERSION}); upgrade sensorledger"
            )
        for version, name, sql in MIGRATIONS:
            if version <= current:
                continue
            name_sql = name.replace("'", "''")
            try:
                await self._db.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\nINSERT INTO schema_migrations(version, name, "
                    f"applied_ms) VALUES ({version}, '{name_sql}', {_now_ms()});\nCOMMIT;"
                )
            except sqlite3.Error:
                if self._db.in_transaction:
                    await self._db.execute("ROLLBACK")
                raise

    # ingest ----------------------------------------------------------------------------------

    async def device_states(self) -> dict[str, DeviceState]:
        states = {
            row[0]: DeviceState(*row)
            for row in await self._all(f"SELECT {_STATE_COLUMNS} FROM device_state")
        }
        for device_id, first, last, detected, explained in await self._all(
            "SELECT device_id, first_seq, last_seq, detected_ms, explained_by FROM gaps "
            "ORDER BY device_id, first_seq"
        ):
            if device_id in states:
                states[device_id].gaps.append(SeqGap(first, last, detected, explained))
        return states

    async def next_reading_id(self) -> int:
        row = await self._one("SELECT MAX(id) FROM readings")
        return int(row[0] or 0) + 1

    async def last_block(self) -> BlockRecord | None:
        row = await self._one(
            "SELECT height, hash, header, first_reading_id, leaf_count, sealed_ms FROM blocks "
            "ORDER BY height DESC LIMIT 1"
        )
        return BlockRecord(*row) if row else None

    async def pending_leaves(self) -> list[PendingLeaf]:
        last = await self.last_block()
        start = last.end_reading_id if last else 1
        leaves: list[PendingLeaf] = []
        async with self._db.execute(
            "SELECT id, envelope, time_ms, received_ms FROM readings WHERE id >= ? ORDER BY id",
            (start,),
        ) as cur:
            async for rid, envelope, time_ms, received_ms in cur:
                leaves.append(PendingLeaf(rid, RFC9162_SHA256.hash_leaf(envelope), time_ms,
                                          received_ms))
        return leaves

    async def find_reading(self, device_id: str, seq: int) -> ReadingRecord | None:
        row = await self._one(
            f"SELECT {_READING_COLUMNS} FROM readings WHERE device_id = ? AND seq = ?",
            (device_id, seq),
        )
        return ReadingRecord(*row) if row else None

    async def statements_of(self, type_: str, kid: bytes | None = None) -> list[ReadingRecord]:
        rows = await self._all(*statements_query(_READING_COLUMNS, "?", "", type_, kid))
        return [ReadingRecord(*row) for row in rows]

    async def statement_index(self) -> list[IndexRow]:
        return [index_row(row) for row in await self._all(*index_rows_query("?", ""))]

    async def commit_batch(self, batch: BatchWrite) -> None:
        try:
            async with self._write() as db:
                if batch.readings:
                    await db.executemany(
                        _INSERT_READINGS, _reading_rows(batch.readings))
                if batch.private:
                    await _write_private(db, batch)
                if batch.quarantine:
                    await db.executemany(
                        f"INSERT INTO quarantine({QUARANTINE_COLUMNS}) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(raw_sha256, reason) DO UPDATE"
                        " SET times_seen = times_seen + 1, last_ms = excluded.last_ms",
                        [quarantine_row(q) for q in batch.quarantine],
                    )
                if batch.devices:
                    await db.executemany(
                        f"INSERT OR REPLACE INTO device_state({_STATE_COLUMNS}) "
                        f"VALUES ({','.join('?' * 18)})",
                        [_state_row(s) for s in batch.devices],
                    )
                    await self._write_gaps(db, [s for s in batch.devices if s.gaps_changed])
                faults.point("batch.before_commit")
        except sqlite3.Error as exc:
            raise StoreError(f"writing a batch to {self.path} failed: {exc}") from None

    async def _write_gaps(self, db: aiosqlite.Connection, states: Iterable[DeviceState]) -> None:
        for state in states:
            await db.execute("DELETE FROM gaps WHERE device_id = ?", (state.device_id,))
            await db.executemany(
                "INSERT INTO gaps(device_id, first_seq, last_seq, detected_ms, explained_by) "
                "VALUES (?, ?, ?, ?, ?)",
                [(state.device_id, g.first, g.last, g.detected_ms, g.explained_by)
                 for g in state.gaps],
            )

    async def commit_block(self, block: BlockRecord) -> None:
        try:
            async with self._write() as db:
                await db.execute(
                    "INSERT INTO blocks(height, hash, header, first_reading_id, leaf_count, "
                    "sealed_ms) VALUES (?, ?, ?, ?, ?, ?)",
                    (block.height, block.hash, block.header, block.first_reading_id,
                     block.leaf_count, block.sealed_ms),
                )
                await self._write_log(db, block)
                faults.point("seal.before_commit")
        except sqlite3.Error as exc:
            raise StoreError(f"sealing block {block.height} failed: {exc}") from None

    # receipts ------------------------------------------------------------------------------

    async def reading_seqs(self, first_id: int, end_id: int) -> dict[str, list[int]]:
        """Each device's seqs among readings ``first_id .. end_id - 1`` (a block's), ascending."""
        out: dict[str, list[int]] = {}
        for device_id, seq in await self._all(
                "SELECT device_id, seq FROM readings NOT INDEXED WHERE id >= ? AND id < ? "
                "ORDER BY device_id, seq", (first_id, end_id)):
            out.setdefault(device_id, []).append(seq)
        return out

    async def sealed_marks(self, device_ids: Sequence[str]) -> dict[str, int | None]:
        """Per device, the highest seq S such that every seq 0..S is sealed or stated dropped
        by a gap record the ledger holds (None: seq 0 is not). Devices without readings are
        left out. Cost: the unsealed readings plus, per device, its gap rows."""
        last = await self.last_block()
        end_id = last.end_reading_id if last else 1
        # NOT INDEXED: the unsealed readings are a range of ids at the end of the table; the
        # (device_id, seq) index would make this a scan of every reading.
        rows = await self._all(
            """
            WITH ids(device_id) AS (SELECT DISTINCT value FROM json_each(?))
            SELECT s.device_id, s.last_seq,
                   (SELECT MIN(g.first_seq) FROM gaps g
                    WHERE g.device_id = s.device_id AND g.explained_by IS NULL),
                   u.seq
            FROM ids JOIN device_state s ON s.device_id = ids.device_id
            LEFT JOIN (SELECT device_id, MIN(seq) AS seq FROM readings NOT INDEXED
                       WHERE id >= ? GROUP BY device_id) u
                   ON u.device_id = s.device_id
            """, (json.dumps(list(device_ids)), end_id))
        marks: dict[str, int | None] = {}
        for device_id, last_seq, gap_first, unsealed_first in rows:
            holes = [h for h in (gap_first, unsealed_first) if h is not None]
            through = min(holes) - 1 if holes else last_seq
            marks[device_id] = through if through >= 0 else None
        return marks

    async def commit_log_entries(self, readings: Sequence[ReadingRecord],
                                 keys: Sequence[DeviceKey], nodes: Sequence[Node], size: int,
                                 checkpoint: CheckpointRecord | None) -> None:
        """A mirror's step, atomically: log entries verified elsewhere (readings and collector
        statements, at their leaf positions), the device keys their statements enrolled or
        revoked (replacing the rows of the same kid), the tree nodes they complete, the new
        tree size and, at a checkpoint's size, that checkpoint."""
        try:
            async with self._write() as db:
                await db.executemany(
                    _INSERT_READINGS, _reading_rows(readings))
                if keys:
                    await db.executemany(
                        "INSERT OR REPLACE INTO device_keys(kid, device_id, public_key, "
                        "enrolled_ms, revoked_ms, revoke_reason) VALUES (?, ?, ?, ?, ?, ?)",
                        [(k.kid, k.device_id, k.public_key_der, k.enrolled_ms, k.revoked_ms,
                          k.revoke_reason) for k in keys])
                    await self._bump_registry(db)
                await self._write_nodes(db, nodes, size)
                if checkpoint is not None:
                    await self._write_checkpoint(db, checkpoint)
                faults.point("mirror.before_commit")
        except sqlite3.Error as exc:
            raise StoreError(f"writing mirrored entries to {self.path} failed: {exc}") from None

    # queries ---------------------------------------------------------------------------------

    _BLOCK_SELECT = ("SELECT height, hash, header, first_reading_id, leaf_count, sealed_ms "
                     "FROM blocks")

    async def block(self, height: int) -> BlockRecord | None:
        row = await self._one(f"{self._BLOCK_SELECT} WHERE height = ?", (height,))
        return BlockRecord(*row) if row else None

    async def blocks(self, start: int = 0, limit: int | None = None) -> list[BlockRecord]:
        rows = await self._all(
            f"{self._BLOCK_SELECT} WHERE height >= ? ORDER BY height LIMIT ?",
            (start, -1 if limit is None else limit),
        )
        return [BlockRecord(*row) for row in rows]

    async def block_of_reading(self, reading_id: int) -> BlockRecord | None:
        row = await self._one(
            f"{self._BLOCK_SELECT} WHERE first_reading_id <= ? "
            "ORDER BY first_reading_id DESC LIMIT 1",
            (reading_id,),
        )
        block = BlockRecord(*row) if row else None
        if block is None or reading_id >= block.end_reading_id:
            return None
        return block

    async def block_envelopes(self, block: BlockRecord) -> list[bytes]:
        rows = await self._all(
            "SELECT envelope FROM readings WHERE id >= ? AND id < ? ORDER BY id",
            (block.first_reading_id, block.end_reading_id),
        )
        return [row[0] for row in rows]

    async def iter_readings(self, start_id: int, end_id: int | None = None, *,
                            chunk: int = 4096) -> AsyncIterator[Sequence[ReadingRecord]]:
        sql = f"SELECT {_READING_COLUMNS} FROM readings WHERE id >= ?"
        params: tuple[int, ...] = (start_id,)
        if end_id is not None:
            sql += " AND id < ?"
            params += (end_id,)
        # The row is the record's tuple as it is (the audit reads every row: no call each).
        make = tuple.__new__
        async with self._db.execute(sql + " ORDER BY id", params) as cur:
            while rows := await cur.fetchmany(chunk):
                yield [make(ReadingRecord, row) for row in rows]

    async def query_readings(self, *, device_id: str | None = None,
                             since_ms: int | None = None,
                             until_ms: int | None = None) -> AsyncIterator[ReadingRecord]:
        where, params = reading_filter("?", device_id, since_ms, until_ms)
        order = "device_id, seq" if device_id is not None else "id"
        sql = f"SELECT {_READING_COLUMNS} FROM readings"
        if where:
            sql += " WHERE " + " AND ".join(where)
        async with self._db.execute(f"{sql} ORDER BY {order}", params) as cur:
            while rows := await cur.fetchmany(4096):
                for row in rows:
                    yield ReadingRecord(*row)

    async def device_sequences(self) -> AsyncIterator[tuple[str, list[int]]]:
        device: str | None = None
        seqs: list[int] = []
        async with self._db.execute(
            "SELECT device_id, seq FROM readings ORDER BY device_id, seq"
        ) as cur:
            while rows := await cur.fetchmany(8192):
                for dev, seq in rows:
                    if dev != device:
                        if device is not None:
                            yield device, seqs
                        device, seqs = dev, []
                    seqs.append(seq)
        if device is not None:
            yield device, seqs

    async def reading_count(self, device_id: str | None = None) -> int:
        if device_id is None:
            row = await self._one("SELECT COUNT(*) FROM readings")
        else:  # counted in the (device_id, seq) index
            row = await self._one("SELECT COUNT(*) FROM readings WHERE device_id = ?",
                                  (device_id,))
        return int(row[0])

    async def gaps(self, device_id: str) -> list[SeqGap]:
        rows = await self._all(
            "SELECT first_seq, last_seq, detected_ms, explained_by FROM gaps "
            "WHERE device_id = ? ORDER BY first_seq",
            (device_id,),
        )
        return [SeqGap(*row) for row in rows]

    async def device_seq_summaries(self) -> list[SeqSummary]:
        return [SeqSummary(*row) for row in await self._all(SEQ_SUMMARIES)]

    async def device_seq_ids(self, device_id: str) -> list[tuple[int, int]]:
        return [(seq, rid) for seq, rid in await self._all(
            "SELECT seq, id FROM readings WHERE device_id = ? ORDER BY seq", (device_id,))]

    async def commit_replay(self, batch: BatchWrite,
                            quarantine: Sequence[tuple[int, QuarantineRecord | None]]) -> None:
        """Replayed readings with their device state, and what became of each quarantine row
        (None: it left the quarantine; a record: quarantined again under another reason), in
        one transaction."""
        try:
            async with self._write() as db:
                await db.executemany(
                    _INSERT_READINGS, _reading_rows(batch.readings))
                if batch.private:
                    await _write_private(db, batch)
                for row_id, record in quarantine:
                    if record is not None:
                        await db.execute(
                            f"INSERT INTO quarantine({QUARANTINE_COLUMNS}, times_seen) "
                            "SELECT ?,?,?,?,?,?,?,?,?, first_ms, last_ms, times_seen "
                            "FROM quarantine WHERE id = ? ON CONFLICT(raw_sha256, reason) "
                            "DO UPDATE SET times_seen = quarantine.times_seen "
                            "+ excluded.times_seen",
                            (*quarantine_row(record)[:9], row_id),
                        )
                    await db.execute("DELETE FROM quarantine WHERE id = ?", (row_id,))
                await db.executemany(
                    f"INSERT OR REPLACE INTO device_state({_STATE_COLUMNS}) "
                    f"VALUES ({','.join('?' * 18)})",
                    [_state_row(s) for s in batch.devices],
                )
                await self._write_gaps(db, [s for s in batch.devices if s.gaps_changed])
        except sqlite3.Error as exc:
            raise StoreError(f"writing replayed readings to {self.path} failed: {exc}") from None


async def _write_private(db: aiosqlite.Connection, batch: BatchWrite) -> None:
    """Private readings' sealed values and grants, beside (never in) the log."""
    await db.executemany(
        "INSERT OR IGNORE INTO private_values(reading_id, subject, data_kid, sealed) "
        "VALUES (?,?,?,?)",
        [(p.reading_id, p.subject, p.data_kid, p.sealed) for p in batch.private])
    await db.executemany(
        "INSERT OR IGNORE INTO private_grants(data_kid, reader_kid, subject, grant) "
        "VALUES (?,?,?,?)",
        [(p.data_kid, reader, p.subject, grant) for p in batch.private
         for reader, grant in p.grants])


def _state_row(s: DeviceState) -> tuple[Any, ...]:
    return (s.device_id, s.first_seq, s.last_seq, s.last_hash, s.last_boot, s.last_time_ms,
            s.last_received_ms, s.accepted, s.duplicates, s.equivocations, s.chain_breaks,
            s.chain_restarts, s.reboots, s.boot_resets, s.out_of_order, s.delayed,
            s.last_skew_ms, s.max_ahead_ms)

