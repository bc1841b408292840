"""The PostgreSQL ledger store (psycopg 3, async, pooled): the same ledger as the SQLite file,
for several collectors on several machines.

It implements :class:`collector.ledger.store.LedgerStore` as the SQLite store does, so every
command, audit, proof and export runs on it unchanged. Durability is PostgreSQL's: a COMMIT
returns once the WAL is flushed (``synchronous_commit = on``, the default; with a synchronous
standby, once the standby has it too). Multi-collector admission and sealing, which take row
locks, are in :mod:`collector.ledger.pg_cluster`; the registry, the collector key and witness
cosignatures in :mod:`collector.ledger.pg_registry`, key rotations and ``meta`` in
:mod:`collector.ledger.pg_keys`.

Reading ids: ``readings.id`` is the leaf index + 1. Each reading is written once, as a row of
``reading_rows``; its id is a row of ``leaves`` (id, row), and ``readings`` is the view that joins
them (id NULL: not sealed yet). A single writer (``commit_batch``, the format 1 migration, a copy
from SQLite) gives ids itself, with the rows; in a cluster the sealer inserts them
(``reading_rows.row_id`` orders what is not sealed yet). Queries by id see sealed readings only.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from collector import faults
from collector.admission.gaps import SeqGap
from collector.errors import NotFoundError, StoreError
from collector.ledger.pg_base import redact, store_error
from collector.ledger.pg_keys import COLLECTOR_APPLICATION
from collector.ledger.pg_registry import PgRegistryTables
from collector.ledger.pg_schema import MIGRATIONS
from collector.ledger.pg_writes import UNSEALED_ROWS, write_private, write_readings
from collector.ledger.records import (
    BatchWrite,
    BlockRecord,
    CheckpointRecord,
    DeviceState,
    PendingLeaf,
    QuarantineEntry,
    QuarantineRecord,
    ReadingRecord,
)
from collector.ledger.statement_index import (
    IndexRow,
    index_row,
    index_rows_query,
    statement_terms,
    statements_query,
)
from collector.ledger.tree_reads import TreeReads, tile_leaves
from provenance.compact import (
    Node,
    tile_entries,
)
from provenance.merkle import HASH_SIZE, RFC9162_SHA256
from provenance.statement import STATEMENT_DEVICE

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

SCHEMA_VERSION = MIGRATIONS[-1][0]
READING_COLUMNS = "id, device_id, seq, boot, time_ms, received_ms, kind, envelope"
STATE_COLUMNS = (
    "device_id, first_seq, last_seq, last_hash, last_boot, last_time_ms, last_received_ms, "
    "accepted, duplicates, equivocations, chain_breaks, chain_restarts, reboots, boot_resets, "
    "out_of_order, delayed, last_skew_ms, max_ahead_ms"
)
QUARANTINE_COLUMNS = (
    "raw_sha256, reason, detail, topic, topic_device, device_id, seq, size, raw, first_ms, last_ms"
)
_CHECKPOINT_COLUMNS = "size, root, note, block_height, signed_ms"
_BLOCK_SELECT = "SELECT height, hash, header, first_reading_id, leaf_count, sealed_ms FROM blocks"
_STATE_UPSERT = (
    f"INSERT INTO device_state({STATE_COLUMNS}) VALUES ({','.join(['%s'] * 18)}) "
    "ON CONFLICT (device_id) DO UPDATE SET "
    + ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in STATE_COLUMNS.split(",")[1:])
)
_QUARANTINE_UPSERT = (
    f"INSERT INTO quarantine({QUARANTINE_COLUMNS}) VALUES ({','.join(['%s'] * 11)}) "
    "ON CONFLICT (raw_sha256, reason) DO UPDATE "
    "SET times_seen = quarantine.times_seen + 1, last_ms = excluded.last_ms"
)


_SEALED = " AND id IS NOT NULL"  # a row the sealer has given its leaf index
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


def _reading(row: Sequence[Any]) -> ReadingRecord:
    return ReadingRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bytes(row[7]))


def state_row(s: DeviceState) -> tuple[Any, ...]:
    return (s.device_id, s.first_seq, s.last_seq, s.last_hash, s.last_boot, s.last_time_ms,
            s.last_received_ms, s.accepted, s.duplicates, s.equivocations, s.chain_breaks,
            s.chain_restarts, s.reboots, s.boot_resets, s.out_of_order, s.delayed,
            s.last_skew_ms, s.max_ahead_ms)


def quarantine_row(q: QuarantineRecord) -> tuple[Any, ...]:
    return (q.raw_sha256, q.reason, q.detail, q.topic, q.topic_device, q.device_id, q.seq,
            q.size, q.raw, q.received_ms, q.received_ms)


class PostgresStore(TreeReads, PgRegistryTables):
    """:class:`collector.ledger.store.LedgerStore` on one PostgreSQL database."""

    # lifecycle -------------------------------------------------------------------------------

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
            reconnect_timeout=3600.0, name="sensorledger")
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

    # the log: identity, tree, checkpoints ----------------------------------------------------

    async def log_origin(self) -> str | None:
        return await self._meta("log_origin")

    async def log_vkeys(self) -> list[str]:
        value = await self._meta("log_vkeys")
        return [v for v in value.split("\n") if v] if value else []

    async def set_log_identity(self, origin: str, vkeys: Sequence[str]) -> None:
        async with self._write() as conn:
            await self._set_meta(conn, [("log_origin", origin), ("log_vkeys", "\n".join(vkeys))])

    async def tree_size(self) -> int:
        row = await self._one("SELECT size FROM log_head WHERE id = 1")
        return int(row[0]) if row else 0

    async def _tile(self, level: int, index: int) -> bytes:
        row = await self._one("SELECT hashes FROM tree_tiles WHERE level = %s AND idx = %s",
                              (level, index))
        return bytes(row[0]) if row else b""

    async def leaf_hashes(self, begin: int, end: int) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        if end <= begin:
            return out
        rows = await self._all(
            "SELECT idx, hashes FROM tree_tiles WHERE level = 0 AND idx >= %s AND idx <= %s",
            (begin >> 8, (end - 1) >> 8))
        for tile_index, tile in rows:
            out.update(tile_leaves(tile_index, bytes(tile), begin, end))
        return out

    async def checkpoint(self, size: int | None = None) -> CheckpointRecord | None:
        if size is None:
            row = await self._one(f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints "
                                  "ORDER BY size DESC LIMIT 1")
        else:
            row = await self._one(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE size = %s", (size,))
        return CheckpointRecord(*row) if row else None

    async def checkpoint_at_least(self, size: int) -> CheckpointRecord | None:
        row = await self._one(f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE size >= %s "
                              "ORDER BY size LIMIT 1", (size,))
        return CheckpointRecord(*row) if row else None

    async def iter_checkpoints(self, chunk: int = 1024) -> AsyncIterator[list[CheckpointRecord]]:
        after = -1
        while True:
            rows = await self._all(f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints "
                                   "WHERE size > %s ORDER BY size LIMIT %s", (after, chunk))
            if not rows:
                return
            yield [CheckpointRecord(*row) for row in rows]
            after = rows[-1][0]

    async def checkpoints(self) -> list[CheckpointRecord]:
        rows = await self._all(f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY size")
        return [CheckpointRecord(*row) for row in rows]

    async def write_nodes(self, conn: psycopg.AsyncConnection[Any], nodes: Sequence[Node],
                          size: int) -> None:
        """Inside a transaction: add ``nodes`` to their tiles and set the tree size."""
        rows = []
        for (level, index), entries in tile_entries(nodes).items():
            tile = await self._tile(level, index) if entries[0][0] else b""
            if len(tile) != entries[0][0] * HASH_SIZE or any(
                entry != entries[0][0] + k for k, (entry, _) in enumerate(entries)
            ):
                raise StoreError(f"tile {level}/{index} of the log tree holds "
                                 f"{len(tile) // HASH_SIZE} hashes, the next to add is entry "
                                 f"{entries[0][0]}; run `ledger-collector audit`")
            rows.append((level, index, tile + b"".join(h for _, h in entries)))
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO tree_tiles(level, idx, hashes) VALUES (%s, %s, %s) "
                "ON CONFLICT (level, idx) DO UPDATE SET hashes = excluded.hashes", rows)
        await conn.execute("UPDATE log_head SET size = %s WHERE id = 1", (size,))

    async def write_checkpoint(self, conn: psycopg.AsyncConnection[Any],
                               cp: CheckpointRecord) -> None:
        # A plain INSERT: a second checkpoint for a size fails the whole transaction.
        await conn.execute(
            f"INSERT INTO checkpoints({_CHECKPOINT_COLUMNS}) VALUES (%s, %s, %s, %s, %s)",
            (cp.size, cp.root, cp.note, cp.block_height, cp.signed_ms))
        await conn.execute("UPDATE log_head SET root = %s WHERE id = 1 AND size = %s",
                           (cp.root, cp.size))

    async def commit_tree(self, nodes: Sequence[Node], size: int) -> None:
        async with self._write("writing tree nodes to") as conn:
            await self.write_nodes(conn, nodes, size)
            faults.point("migrate.before_commit")

    async def commit_checkpoint(self, cp: CheckpointRecord) -> None:
        async with self._write(f"storing the checkpoint of size {cp.size} in") as conn:
            await self.write_checkpoint(conn, cp)
            faults.point("checkpoint.before_commit")

    # ingest ----------------------------------------------------------------------------------

    async def device_states(self) -> dict[str, DeviceState]:
        async with self.snapshot():
            states = {row[0]: DeviceState(*row) for row in
                      await self._all(f"SELECT {STATE_COLUMNS} FROM device_state")}
            for device_id, first, last, detected, explained in await self._all(
                "SELECT device_id, first_seq, last_seq, detected_ms, explained_by FROM gaps "
                "ORDER BY device_id, first_seq"
            ):
                if device_id in states:
                    states[device_id].gaps.append(SeqGap(first, last, detected, explained))
        for state in states.values():
            state.last_hash = bytes(state.last_hash)
        return states

    async def next_reading_id(self) -> int:
        row = await self._one("SELECT MAX(id) FROM leaves")
        return int(row[0] or 0) + 1

    async def unsealed_horizon(self) -> int:
        """The sealer's horizon (a transaction id): rows of older transactions are sealed."""
        row = await self._one("SELECT unsealed_xid::text::bigint FROM log_head WHERE id = 1")
        return int(row[0]) if row else 0

    async def last_block(self) -> BlockRecord | None:
        row = await self._one(f"{_BLOCK_SELECT} ORDER BY height DESC LIMIT 1")
        return BlockRecord(*row) if row else None

    async def pending_leaves(self) -> list[PendingLeaf]:
        last = await self.last_block()
        start = last.end_reading_id if last else 1
        rows = await self._all("SELECT id, envelope, time_ms, received_ms FROM readings "
                               "WHERE id >= %s ORDER BY id", (start,))
        return [PendingLeaf(rid, RFC9162_SHA256.hash_leaf(env), t, r) for rid, env, t, r in rows]

    async def find_reading(self, device_id: str, seq: int) -> ReadingRecord | None:
        row = await self._one(f"SELECT {READING_COLUMNS} FROM readings "
                              "WHERE device_id = %s AND seq = %s", (device_id, seq))
        return _reading(row) if row else None

    async def statements_of(self, type_: str, kid: bytes | None = None) -> list[ReadingRecord]:
        rows = await self._all(*statements_query(READING_COLUMNS, "%s", _SEALED, type_, kid))
        return [_reading(row) for row in rows]

    async def statement_index(self) -> list[IndexRow]:
        return [index_row(row) for row in await self._all(*index_rows_query("%s", _SEALED))]

    async def write_batch(self, conn: psycopg.AsyncConnection[Any], batch: BatchWrite) -> None:
        """Inside a transaction: the batch's readings, quarantine rows, device states and
        changed gaps, and the private readings' sealed values. A reading with an id (one
        writer: ``copy``, a command logging a statement) gets its leaf row with it; one with
        id 0 (a reading, statement or private reading a cluster admits) waits for the
        cluster's sealer."""
        async with conn.cursor() as cur:
            if batch.readings:
                row_ids = await write_readings(cur, batch.readings,
                                               row_ids=bool(batch.private))
                if batch.private:
                    await write_private(cur, batch.readings, row_ids, batch.private)
            if batch.quarantine:
                await cur.executemany(_QUARANTINE_UPSERT,
                                      [quarantine_row(q) for q in batch.quarantine])
            if batch.devices:
                await cur.executemany(_STATE_UPSERT, [state_row(s) for s in batch.devices])
                changed = [s for s in batch.devices if s.gaps_changed]
                if changed:
                    await cur.execute("DELETE FROM gaps WHERE device_id = ANY(%s)",
                                      ([s.device_id for s in changed],))
                    rows = [(s.device_id, g.first, g.last, g.detected_ms, g.explained_by)
                            for s in changed for g in s.gaps]
                    if rows:
                        await cur.executemany(
                            "INSERT INTO gaps(device_id, first_seq, last_seq, detected_ms, "
                            "explained_by) VALUES (%s, %s, %s, %s, %s)", rows)

    async def commit_batch(self, batch: BatchWrite) -> None:
        async with self._write("writing a batch to") as conn:
            await self.write_batch(conn, batch)
            faults.point("batch.before_commit")

    async def commit_block(self, block: BlockRecord) -> None:
        async with self._write(f"sealing block {block.height} in") as conn:
            await self.write_block(conn, block)
            faults.point("seal.before_commit")

    async def write_block(self, conn: psycopg.AsyncConnection[Any], block: BlockRecord) -> None:
        """Inside a transaction: the block, its tree nodes and checkpoint, and the log head."""
        await conn.execute(
            "INSERT INTO blocks(height, hash, header, first_reading_id, leaf_count, sealed_ms) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (block.height, block.hash, block.header, block.first_reading_id, block.leaf_count,
             block.sealed_ms))
        await conn.execute(
            "UPDATE log_head SET height = %s, block_hash = %s, sealed_ms = %s WHERE id = 1",
            (block.height, block.hash, block.sealed_ms))
        if block.checkpoint is not None:
            await self.write_nodes(conn, block.nodes, block.checkpoint.size)
            faults.point("seal.nodes_written")
            await self.write_checkpoint(conn, block.checkpoint)

    # queries ---------------------------------------------------------------------------------

    async def block(self, height: int) -> BlockRecord | None:
        row = await self._one(f"{_BLOCK_SELECT} WHERE height = %s", (height,))
        return BlockRecord(*row) if row else None

    async def blocks(self, start: int = 0, limit: int | None = None) -> list[BlockRecord]:
        rows = await self._all(f"{_BLOCK_SELECT} WHERE height >= %s ORDER BY height LIMIT %s",
                               (start, limit))
        return [BlockRecord(*row) for row in rows]

    async def block_of_reading(self, reading_id: int) -> BlockRecord | None:
        row = await self._one(f"{_BLOCK_SELECT} WHERE first_reading_id <= %s "
                              "ORDER BY first_reading_id DESC LIMIT 1", (reading_id,))
        block = BlockRecord(*row) if row else None
        if block is None or reading_id >= block.end_reading_id:
            return None
        return block

    async def block_envelopes(self, block: BlockRecord) -> list[bytes]:
        rows = await self._all("SELECT envelope FROM readings WHERE id >= %s AND id < %s "
                               "ORDER BY id", (block.first_reading_id, block.end_reading_id))
        return [bytes(row[0]) for row in rows]

    async def iter_readings(self, start_id: int, end_id: int | None = None, *,
                            chunk: int = 4096) -> AsyncIterator[Sequence[ReadingRecord]]:
        after = start_id - 1
        while True:
            sql = f"SELECT {READING_COLUMNS} FROM readings WHERE id > %s"
            params: tuple[int, ...] = (after,)
            if end_id is not None:
                sql += " AND id < %s"
                params += (end_id,)
            rows = await self._all(f"{sql} ORDER BY id LIMIT {int(chunk)}", params)
            if not rows:
                return
            yield [_reading(row) for row in rows]
            after = rows[-1][0]

    async def query_readings(self, *, device_id: str | None = None,
                             since_ms: int | None = None,
                             until_ms: int | None = None) -> AsyncIterator[ReadingRecord]:
        where = ["id IS NOT NULL"]
        params: list[Any] = []
        if device_id is not None:
            where.append("device_id = %s")
            params.append(device_id)
        if since_ms is not None:
            where.append("time_ms >= %s")
            params.append(since_ms)
        if until_ms is not None:
            where.append("time_ms < %s")
            params.append(until_ms)
        key = "seq" if device_id is not None else "id"
        after: int | None = None
        while True:
            page = list(where)
            page_params = list(params)
            if after is not None:
                page.append(f"{key} > %s")
                page_params.append(after)
            rows = await self._all(f"SELECT {READING_COLUMNS} FROM readings WHERE "
                                   f"{' AND '.join(page)} ORDER BY {key} LIMIT 4096",
                                   page_params)
            if not rows:
                return
            for row in rows:
                yield _reading(row)
            after = rows[-1][2] if device_id is not None else rows[-1][0]

    async def device_sequences(self) -> AsyncIterator[tuple[str, list[int]]]:
        async for device, pairs in self.device_seq_ids():
            yield device, [seq for seq, _ in pairs]

    async def device_seq_ids(self) -> AsyncIterator[tuple[str, list[tuple[int, int]]]]:
        devices = [row[0] for row in
                   await self._all("SELECT DISTINCT device_id FROM readings ORDER BY device_id")]
        for device in devices:
            rows = await self._all("SELECT seq, id FROM readings WHERE device_id = %s "
                                   "ORDER BY seq", (device,))
            yield device, [(seq, rid if rid is not None else 0) for seq, rid in rows]

    async def reading_count(self, device_id: str | None = None) -> int:
        if device_id is None:
            row = await self._one("SELECT COUNT(*) FROM readings")
        else:  # counted in the (device_id, seq) index
            row = await self._one("SELECT COUNT(*) FROM readings WHERE device_id = %s",
                                  (device_id,))
        return int(row[0])

    async def quarantine_entries(self, *, reason: str | None = None,
                                 device_id: str | None = None,
                                 limit: int = 100) -> list[QuarantineEntry]:
        where: list[str] = []
        params: list[Any] = []
        if reason is not None:
            where.append("reason = %s")
            params.append(reason)
        if device_id is not None:
            where.append("COALESCE(device_id, topic_device) = %s")
            params.append(device_id)
        sql = f"SELECT id, {QUARANTINE_COLUMNS}, times_seen FROM quarantine"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._all(f"{sql} ORDER BY id LIMIT %s",
                               (*params, limit if limit >= 0 else None))
        return [
            QuarantineEntry(
                id=row[0],
                record=QuarantineRecord(
                    raw_sha256=bytes(row[1]), reason=row[2], detail=row[3], topic=row[4],
                    topic_device=row[5], device_id=row[6], seq=row[7], size=row[8],
                    raw=bytes(row[9]), received_ms=row[10]),
                last_ms=row[11],
                times_seen=row[12],
            )
            for row in rows
        ]

    async def quarantine_counts(self) -> dict[tuple[str, str], int]:
        rows = await self._all(
            "SELECT COALESCE(device_id, topic_device, '?'), reason, SUM(times_seen) "
            "FROM quarantine GROUP BY 1, 2")
        return {(row[0], row[1]): int(row[2]) for row in rows}

    async def reading_seqs(self, first_id: int, end_id: int) -> dict[str, list[int]]:
        """Each device's seqs among readings ``first_id .. end_id - 1`` (a block's), ascending."""
        out: dict[str, list[int]] = {}
        for device_id, seq in await self._all(
                "SELECT device_id, seq FROM readings WHERE id >= %s AND id < %s "
                "ORDER BY device_id, seq", (first_id, end_id)):
            out.setdefault(device_id, []).append(seq)
        return out

    async def sealed_marks(self, device_ids: Sequence[str]) -> dict[str, int | None]:
        """As :meth:`SQLiteStore.sealed_marks`: per device, the highest seq S such that every
        seq 0..S is sealed or stated dropped by a held gap record (None: seq 0 is not). The
        unsealed readings are found by index: ids past the last block, or none yet (a
        cluster gives ids when it seals: the rows without a leaf above the sealer's horizon)."""
        last = await self.last_block()
        end_id = last.end_reading_id if last else 1
        horizon = await self.unsealed_horizon()
        rows = await self._all(
            f"""
            SELECT s.device_id, s.last_seq,
                   (SELECT MIN(g.first_seq) FROM gaps g
                    WHERE g.device_id = s.device_id AND g.explained_by IS NULL),
                   u.seq
            FROM device_state s
            LEFT JOIN (SELECT device_id, MIN(seq) AS seq FROM (
                           SELECT device_id, seq FROM readings WHERE id >= %s
                           UNION ALL
                           SELECT r.device_id, r.seq {UNSEALED_ROWS}) n
                       GROUP BY device_id) u
                   ON u.device_id = s.device_id
            WHERE s.device_id = ANY(%s)
            """, (end_id, horizon, list(dict.fromkeys(device_ids))), prepare=False)
        marks: dict[str, int | None] = {}
        for device_id, last_seq, gap_first, unsealed_first in rows:
            holes = [int(h) for h in (gap_first, unsealed_first) if h is not None]
            through = min(holes) - 1 if holes else int(last_seq)
            marks[str(device_id)] = through if through >= 0 else None
        return marks

    async def gaps(self, device_id: str) -> list[SeqGap]:
        rows = await self._all("SELECT first_seq, last_seq, detected_ms, explained_by FROM gaps "
                               "WHERE device_id = %s ORDER BY first_seq", (device_id,))
        return [SeqGap(*row) for row in rows]

    async def commit_replay(self, batch: BatchWrite,
                            quarantine: Sequence[tuple[int, QuarantineRecord | None]]) -> None:
        async with self._write("writing replayed readings to") as conn:
            await self.write_replay(conn, batch, quarantine)

    async def write_replay(self, conn: psycopg.AsyncConnection[Any], batch: BatchWrite,
                           quarantine: Sequence[tuple[int, QuarantineRecord | None]]) -> None:
        for row_id, record in quarantine:
            if record is not None:
                await conn.execute(
                    f"INSERT INTO quarantine({QUARANTINE_COLUMNS}, times_seen) "
                    "SELECT %s,%s,%s,%s,%s,%s,%s,%s,%s, first_ms, last_ms, times_seen "
                    "FROM quarantine WHERE id = %s ON CONFLICT (raw_sha256, reason) "
                    "DO UPDATE SET times_seen = quarantine.times_seen + excluded.times_seen",
                    (*quarantine_row(record)[:9], row_id))
            await conn.execute("DELETE FROM quarantine WHERE id = %s", (row_id,))
        await self.write_batch(conn, batch)


def convert(exc: BaseException, what: str) -> StoreError:
    """A psycopg error as the store's error (for callers outside this module)."""
    return store_error(exc, what)
