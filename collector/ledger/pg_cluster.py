"""Several collectors on one PostgreSQL ledger: admission under per-device row locks, sealing
under the log-head row lock with a compare-and-swap on the previous checkpoint.

**Admission.** A collector admits a batch of verified readings in one transaction that first
locks the ``device_locks`` row of every device in the batch (``SELECT ... FOR UPDATE``, in
device id order), then reads those devices' state and gaps, runs the per-device checks
(:class:`collector.admission.checks.DeviceChecks`, the very code one collector runs) against
them and the stored readings, and writes the readings, quarantine rows, states and gaps. The
lock makes the check-and-update of one device atomic across collectors: whichever collector
receives whichever reading, each decision is made on the state the previous decision left, as
one collector would. ``UNIQUE (device_id, seq)`` is the backstop: a second row for a
(device, seq) fails the transaction, which is then run again and finds a duplicate.

**Sealing.** Readings are inserted without a leaf index, and never updated. The sealer locks
the one ``log_head`` row (``FOR UPDATE SKIP LOCKED``: a collector that finds it locked leaves
the sealing to the holder), takes the oldest unsealed rows *that are committed* (never a
``row_id`` watermark, which would skip a row whose insert commits late), numbers them by
inserting (leaf id, row) pairs into ``leaves``, and in the same transaction writes the block,
the tree tiles, the checkpoint and the new head. The head ``UPDATE`` is a compare-and-swap on
the previous size and root: if it matches no row, something else moved the log and the
transaction is rolled back. A collector killed mid-seal leaves an aborted transaction: nothing
of the block exists, the row lock is released when its connection closes, and the next
collector's sealer takes over.

**Finding the unsealed rows** without a flag to clear: each row records the transaction that
inserted it (``reading_rows.xid``), and blocks take rows in (xid, row_id) order, the oldest
transactions' rows first, each transaction's in insert order (one collector's batches follow
each other, so on one collector this is admission order, as on SQLite). When the sealer
starts, every transaction older than the oldest one still running (``pg_snapshot_xmin``) has
committed or aborted, so its rows are all visible. After a block, the new horizon
(``log_head.unsealed_xid``) is that bound, or the block's last transaction if the block was
full: every row below the horizon has its leaf, and the sealer walks the rows at or above it in
order (``reading_rows_by_xid``), skipping those with a leaf. A long-running write transaction
holds the horizon back (the walk gets longer, never wrong).

A transaction's xid can be older than a transaction it waited for (it took its id, then a row
lock held by the other). Nothing relies on the order of two transactions that overlapped; what
must come first in the log (a collector statement before the readings its key admits) is
committed in a transaction of its own, before the transaction that relies on it starts.

Row locks and not advisory locks: a session advisory lock belongs to a connection, so behind a
transaction-pooling PgBouncer it is held by whichever client the connection serves next, and
it fences nothing the holder writes on another connection. A row lock lives and dies with the
transaction that writes the block.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.errors

from collector import faults
from collector.admission.checks import DeviceChecks, KnownReading
from collector.admission.gaps import SeqGap
from collector.admission.reasons import Reason
from collector.admission.registry import Registry
from collector.admission.replay import ReplayResult, replay_unknown_keys
from collector.errors import StoreError
from collector.ledger.pg_readings import READING_COLUMNS, STATE_COLUMNS
from collector.ledger.pg_store import PostgresStore
from collector.ledger.pg_writes import UNSEALED_ROWS, write_leaves
from collector.ledger.records import (
    BatchWrite,
    BlockRecord,
    DeviceState,
    PendingLeaf,
    ReadingRecord,
)
from collector.ledger.sealer import Sealer, TreeLog
from provenance.compact import CompactRange
from provenance.envelope import Envelope
from provenance.errors import ProvenanceError
from provenance.keys import PrivateKey
from provenance.merkle import RFC9162_SHA256
from provenance.note import NoteSigner
from provenance.statement import STATEMENT_DEVICE

__all__ = ["Admission", "ClusterLedger", "SealConflict", "SealOutcome"]

#: The unsealed rows a block may take, oldest first (parameters: horizon, size).
_WAITING = (f"SELECT r.row_id, r.received_ms {UNSEALED_ROWS} "
            "ORDER BY r.xid, r.row_id LIMIT %s")
_BLOCK = (f"SELECT r.row_id, r.envelope, r.time_ms, r.received_ms, r.xid::text::bigint "
          f"{UNSEALED_ROWS} ORDER BY r.xid, r.row_id LIMIT %s")


class SealConflict(StoreError):
    """The log head moved under a sealer that held its lock: the compare-and-swap failed."""

    code = "seal_conflict"


@dataclass(slots=True)
class Admission:
    """One admission transaction: the locked devices' states, and stored readings by seq."""

    conn: psycopg.AsyncConnection[Any]
    states: dict[str, DeviceState]
    registry_version: int  # read once the devices were locked
    async def lookup(self, device_id: str, seq: int) -> KnownReading | None:
        cur = await self.conn.execute(
            "SELECT COALESCE(id, 0), envelope FROM readings WHERE device_id = %s AND seq = %s",
            (device_id, seq))
        row = await cur.fetchone()
        if row is None:
            return None
        envelope = bytes(row[1])
        try:
            prev = Envelope.decode(envelope).reading().prev
        except ProvenanceError:
            prev = b""  # a damaged stored row never vouches for a neighbour; audit names it
        return KnownReading(int(row[0]), hashlib.sha256(envelope).digest(), prev, envelope)


@dataclass(frozen=True, slots=True)
class SealOutcome:
    block: BlockRecord
    leaves: int


class ClusterLedger:
    """The cluster operations on one :class:`PostgresStore`."""

    #: How the sealer takes the log head: its row lock, skipped if another sealer holds it.
    head_lock = "FOR UPDATE SKIP LOCKED"

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    @asynccontextmanager
    async def admission(self, devices: Sequence[str]) -> AsyncIterator[Admission]:
        """Lock ``devices`` and load their state; commit what :meth:`write` wrote on exit."""
        ordered = sorted(set(devices))
        async with self.store._write("admitting readings to") as conn:
            locked, states, version = await self._lock(conn, ordered)
            if locked < len(ordered):  # devices seen for the first time: lock rows, again
                await conn.execute(
                    "INSERT INTO device_locks(device_id) SELECT unnest(%s::text[]) "
                    "ON CONFLICT DO NOTHING", (ordered,))
                locked, states, version = await self._lock(conn, ordered)
            yield Admission(conn, states, version)

    @staticmethod
    async def _lock(conn: psycopg.AsyncConnection[Any], ordered: list[str],
                    ) -> tuple[int, dict[str, DeviceState], int]:
        """Lock the ``device_locks`` rows of ``ordered`` (in that order), then read their
        states and gaps and the registry version: how many rows were locked, the states, the
        version. One round trip (a pipeline); each read is a statement after the lock, so
        it sees what the transaction the lock waited for committed (a join in the locking
        statement would read the joined rows as they were before the wait)."""
        async with conn.pipeline():
            lock = await conn.execute(
                "SELECT device_id FROM device_locks WHERE device_id = ANY(%s) "
                "ORDER BY device_id FOR UPDATE", (ordered,))
            state = await conn.execute(
                f"SELECT {STATE_COLUMNS} FROM device_state WHERE device_id = ANY(%s)",
                (ordered,))
            gaps = await conn.execute(
                "SELECT device_id, first_seq, last_seq, detected_ms, explained_by FROM gaps "
                "WHERE device_id = ANY(%s) ORDER BY device_id, first_seq", (ordered,))
            registry = await conn.execute(
                "SELECT value FROM meta WHERE key = 'registry_version'")
        locked = len(await lock.fetchall())
        states: dict[str, DeviceState] = {}
        for row in await state.fetchall():
            st = DeviceState(*row)
            st.last_hash = bytes(st.last_hash)
            states[st.device_id] = st
        for device_id, first, last, detected, explained in await gaps.fetchall():
            if device_id in states:
                states[device_id].gaps.append(SeqGap(first, last, detected, explained))
        version = await registry.fetchone()
        return locked, states, int(version[0]) if version else 0

    async def write(self, admission: Admission, batch: BatchWrite) -> None:
        """Inside :meth:`admission`: the batch's readings (no leaf index yet), quarantine rows
        and the states of the devices it changed."""
        await self.store.write_batch(admission.conn, batch)
        faults.point("batch.before_commit")

    async def statement_rows(self, admission: Admission) -> list[ReadingRecord]:
        """Inside an admission holding the ``@collector`` row's lock: every collector statement
        row, sealed or not, in seq order (what the next statement's seq follows)."""
        cur = await admission.conn.execute(
            f"SELECT {READING_COLUMNS} FROM readings WHERE device_id = %s ORDER BY seq",
            (STATEMENT_DEVICE,))
        return [ReadingRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                              bytes(row[7])) for row in await cur.fetchall()]

    async def replay(self, registry: Registry, max_future_ms: int) -> ReplayResult:
        """Replay quarantined unknown_key readings (see :mod:`collector.admission.replay`) in
        one transaction holding the locks of the devices they name."""
        rows = await self.store._all(
            "SELECT DISTINCT COALESCE(device_id, topic_device) FROM quarantine "
            "WHERE reason = %s", (Reason.UNKNOWN_KEY,))
        devices = [r[0] for r in rows if r[0] is not None]
        if not rows:
            return ReplayResult()
        async with self.admission(devices) as admission:
            checks = DeviceChecks(admission.states, admission.lookup, max_skew_ms=max_future_ms)
            return await replay_unknown_keys(self.store, checks, registry, 0, max_future_ms,
                                             assign_ids=False)

    async def unsealed(self) -> tuple[int, int | None]:
        """How many committed readings wait for a block, and the oldest one's arrival time."""
        horizon = await self.store.unsealed_horizon()
        row = await self.store._one(f"SELECT COUNT(*), MIN(r.received_ms) {UNSEALED_ROWS}",
                                    (horizon,), prepare=False)
        return (int(row[0]), row[1]) if row else (0, None)

    async def seal(self, key: PrivateKey, origin: str, signers: Sequence[NoteSigner], *,
                   size: int, age_ms: int, now_ms: Callable[[], int],
                   force: bool = False,
                   pause: Callable[[], Awaitable[None]] | None = None) -> SealOutcome | None:
        """Seal the next block if one is due (``size`` readings wait, or the oldest waited
        ``age_ms``; ``force``: whatever waits) and no other collector is sealing right now.
        None when there was nothing to do or the head was locked. ``pause`` (tests) is awaited
        once the block is signed, before anything is written."""
        store = self.store
        async with store._write("sealing a block in") as conn:
            # The snapshot's xmin is taken before any look at the rows: every transaction
            # older than it has ended, so all its rows are visible to the looks below.
            cur = await conn.execute(
                "SELECT size, root, height, block_hash, sealed_ms, unsealed_xid::text::bigint, "
                "pg_snapshot_xmin(pg_current_snapshot())::text::bigint FROM log_head "
                "WHERE id = 1 " + self.head_lock)
            head = await cur.fetchone()
            if head is None:
                return None  # another collector is sealing
            tree_size, tree_root, height, block_hash, sealed_ms, horizon, settled = head
            # Whether a block is due, from the small columns; then the envelopes of that block.
            cur = await conn.execute(_WAITING, (horizon, size), prepare=False)
            waiting = await cur.fetchall()
            if not waiting:
                return None
            oldest = min(r[1] for r in waiting)
            if not force and len(waiting) < size and now_ms() < oldest + age_ms:
                return None
            # (READ COMMITTED: this look may see more rows committed since; it decides.)
            cur = await conn.execute(_BLOCK, (horizon, size), prepare=False)
            rows = await cur.fetchall()
            if not rows:
                return None
            # Every row of a transaction older than ``settled`` is visible: a block that took
            # all it found leaves none of them behind; a full one leaves rows at and after its
            # last transaction.
            next_horizon = max(horizon, min(settled, rows[-1][4]) if len(rows) == size
                               else settled)
            tree = await store.compact_range(tree_size)
            if tree_size and tree.root() != bytes(tree_root):
                raise StoreError(f"the log head says root {bytes(tree_root).hex()} at size "
                                 f"{tree_size}, the stored tree gives {tree.root().hex()}; run "
                                 "`ledger-collector audit`")
            last = None if height < 0 else BlockRecord(height, bytes(block_hash), b"",
                                                       0, 0, sealed_ms)
            hash_leaf = RFC9162_SHA256.hash_leaf
            leaves = [PendingLeaf(tree_size + 1 + i, hash_leaf(env), t, r)
                      for i, (_, env, t, r, _) in enumerate(rows)]
            sealer = Sealer(key, last, leaves, size=size, age_ms=age_ms,
                            log=TreeLog(origin, signers, CompactRange(tree.size, tree.hashes)))
            block = sealer.seal(now_ms())
            assert block.checkpoint is not None and block.leaf_count == len(rows)
            if pause is not None:
                await pause()
            # The second fence, first of the writes: the head must still be the checkpoint
            # this block extends (a READ COMMITTED UPDATE re-checks its WHERE on the newest row).
            cur = await conn.execute(
                "UPDATE log_head SET size = %s, root = %s, height = %s, block_hash = %s, "
                "sealed_ms = %s, unsealed_xid = %s::text::xid8 "
                "WHERE id = 1 AND size = %s AND root = %s AND height = %s",
                (block.checkpoint.size, block.checkpoint.root, block.height, block.hash,
                 block.sealed_ms, next_horizon, tree_size, tree_root, height))
            if cur.rowcount != 1:
                raise SealConflict(f"the log head moved while block {block.height} was sealed; "
                                   "nothing was written")
            try:
                async with conn.cursor() as leaf_cur:
                    await write_leaves(leaf_cur, [(leaf.reading_id, row[0]) for leaf, row
                                                  in zip(leaves, rows, strict=True)])
            except psycopg.errors.UniqueViolation:
                raise SealConflict(f"readings of block {block.height} were sealed meanwhile; "
                                   "nothing was written") from None
            faults.point("cluster.seal_ids_assigned")
            await conn.execute(
                "INSERT INTO blocks(height, hash, header, first_reading_id, leaf_count, "
                "sealed_ms) VALUES (%s, %s, %s, %s, %s, %s)",
                (block.height, block.hash, block.header, block.first_reading_id,
                 block.leaf_count, block.sealed_ms))
            await store.write_nodes(conn, block.nodes, block.checkpoint.size)
            await conn.execute(
                "INSERT INTO checkpoints(size, root, note, block_height, signed_ms) "
                "VALUES (%s, %s, %s, %s, %s)",
                (block.checkpoint.size, block.checkpoint.root, block.checkpoint.note,
                 block.height, block.checkpoint.signed_ms))
            faults.point("seal.before_commit")
        return SealOutcome(block, len(rows))
