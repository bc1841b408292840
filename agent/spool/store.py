"""The spool's storage: rows, acknowledgements and depth in SQLite (through aiosqlite).

Contract (docs/agent.md, "Spool contract"):

* **One writer, durable.** WAL with ``synchronous=FULL``: a committed row survives SIGKILL and
  power loss. The chain head (next seq, hash of the last envelope), the boot counter, the
  overflow state and the counters live beside the rows, in the ``state`` table, and change in
  the same transactions: :meth:`Spool.transaction` is the one way to write a batch (the intake
  signs and spools in it, :mod:`agent.intake.sign_and_spool`).
* **Leaves only after PUBACK.** The publisher reads rows in ``pos`` order and calls
  :meth:`Spool.ack` with the positions the broker acknowledged; they are deleted in the next
  transaction (batched, so the publisher never waits for a disk flush). ``pos`` is
  AUTOINCREMENT so a position is never reused, and an ack for a row that was dropped
  meanwhile is a no-op. A crash between PUBACK and delete re-sends those rows once more.
* **Depth** counts the readings (own and relayed) in the spool; gap records are not counted.
  Which readings make room when the spool is full is the overflow plan's decision
  (:mod:`agent.spool.overflow`); the store only carries it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from provenance.receipt import SignedReceipt

from ..errors import SpoolError, SpoolLockedError, SpoolMismatchError
from ..outbox.interface import Row
from ..signer import ChainHead, Entry
from .overflow import Held
from .receipt_rows import RETURNING, apply_receipt
from .schema import (
    COUNTERS,
    MIGRATE_1_TO_2,
    SCHEMA,
    SCHEMA_VERSION,
    SpoolCounters,
    counters_from,
)

log = logging.getLogger(__name__)

__all__ = ["BatchTotals", "Delivery", "Settled", "Spool", "SpoolTransaction"]

#: "receipts": a row leaves when a collector receipt covers it (or refuses it for good);
#: "puback": a row leaves at the broker's PUBACK (for collectors that send no receipts).
Delivery = Literal["receipts", "puback"]

#: How long acknowledged rows wait to be deleted together.
ACK_FLUSH_S = 0.05
MAX_BOOT = 2**32 - 1

# One statement text for any number of positions (a JSON array parameter): an IN list of
# "?, ?, ..." would be a new prepared statement for every length, and the sqlite3 module
# caches up to 128 of them, each the size of its list, which showed as MBs of resident memory.
_DELETE_POSITIONS = "DELETE FROM spool WHERE pos IN (SELECT value FROM json_each(?))"
_IN_POSITIONS = "pos IN (SELECT value FROM json_each(?))"


@dataclass(frozen=True, slots=True)
class Settled:
    """What one receipt did to the spool."""

    released: int  # rows a receipt stated sealed
    refused_final: int  # rows let go after a final refusal (the collector holds their bytes)
    refused_kept: int  # rows marked with a refusal that may pass later, kept and re-sent


@dataclass(frozen=True, slots=True)
class BatchTotals:
    """What one batch adds to the spool's counters."""

    signed: int = 0
    relayed: int = 0
    dropped: int = 0
    dropped_relayed: int = 0
    gap_records: int = 0


@dataclass(frozen=True, slots=True)
class _Written:
    head: ChainHead
    gap: tuple[int, int] | None
    depth: int
    totals: BatchTotals


class SpoolTransaction:
    """One write transaction, begun with acknowledged rows already deleted."""

    def __init__(self, db: aiosqlite.Connection, depth: int, gap: tuple[int, int] | None) -> None:
        self._db = db
        self.awaiting_removed = 0
        #: Readings in the spool now, and the open overflow episode.
        self.depth = depth
        self.gap = gap
        self.written: _Written | None = None

    async def oldest(self, count: int) -> list[Held]:
        """The ``count`` oldest readings (gap records excluded): what overflow may push out."""
        if count <= 0:
            return []
        rows = await self._db.execute_fetchall(
            "SELECT pos, seq, relayed FROM spool WHERE is_gap = 0 ORDER BY pos LIMIT ?",
            (count,))
        return [Held(pos, seq, bool(relayed)) for pos, seq, relayed in rows]

    async def write(
        self, entries: Sequence[Entry], *, delete: Sequence[int], head: ChainHead,
        gap: tuple[int, int] | None, depth: int, totals: BatchTotals,
    ) -> None:
        """Delete the pushed-out positions, insert the entries, store the new head and state."""
        db = self._db
        if delete:
            cursor = await db.execute(_DELETE_POSITIONS + RETURNING, (json.dumps(list(delete)),))
            self.awaiting_removed += sum(int(w) for _, w in await cursor.fetchall())
        await db.executemany(
            "INSERT INTO spool (device_id, seq, is_gap, relayed, envelope) VALUES (?, ?, ?, ?, ?)",
            [(e.device_id, e.seq, int(e.is_gap), int(e.relayed), e.envelope) for e in entries])
        await db.execute(
            "UPDATE state SET next_seq = ?, head = ?, gap_first = ?, gap_last = ?, "
            "signed = signed + ?, relayed = relayed + ?, dropped = dropped + ?, "
            "dropped_relayed = dropped_relayed + ?, gap_records = gap_records + ? WHERE id = 1",
            (head.next_seq, head.prev, gap[0] if gap else None, gap[1] if gap else None,
             totals.signed, totals.relayed, totals.dropped, totals.dropped_relayed,
             totals.gap_records),
        )
        self.written = _Written(head, gap, depth, totals)


class Spool:
    """The agent's one writer on the spool database. Use :meth:`open`, then :meth:`close`.

    It is the publisher's outbox (:class:`agent.outbox.interface.Outbox`).
    """

    def __init__(
        self, db: aiosqlite.Connection, lock_fd: int, path: Path, max_readings: int,
        device_id: str, boot: int, head: ChainHead, gap: tuple[int, int] | None,
        counters: SpoolCounters, depth: int, *, delivery: Delivery = "puback",
        awaiting: int = 0, sealed_through: int | None = None,
    ) -> None:
        self._db = db
        self.delivery = delivery
        # Readings the broker acknowledged that wait for a receipt (receipts mode).
        self.awaiting = awaiting
        self.sealed_through = sealed_through
        self._lock_fd = lock_fd
        self.path = path
        self.max_readings = max_readings
        self.device_id = device_id
        self.boot = boot
        self.head = head  # the committed chain head
        self.gap = gap
        self.counters = counters
        self.depth = depth  # readings (own and relayed) in the spool; gap records excluded
        self._new_rows = asyncio.Event()  # replaced at each commit that adds rows
        self._acked = asyncio.Event()
        self._write = asyncio.Lock()
        # Acknowledged positions not yet deleted, and the PUBACKs not yet counted on disk.
        self._pending_acks: list[int] = []
        self._pending_published = 0
        self._flush_wanted = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    @property
    def unsent(self) -> int:
        """Readings the broker has not acknowledged yet (what the recorder paces by)."""
        return self.depth - self.awaiting

    @classmethod
    async def open(cls, path: Path, device_id: str, max_readings: int,
                   delivery: Delivery = "puback") -> Spool:
        """Open (or create) the spool, take its lock, and count this start as a new boot."""
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock(path)
        try:
            db = await aiosqlite.connect(str(path), isolation_level=None)
        except sqlite3.Error as exc:
            os.close(lock_fd)
            raise SpoolError(f"cannot open spool {path}: {exc}") from exc
        try:
            return await cls._init(db, lock_fd, path, device_id, max_readings, delivery)
        except BaseException:
            await db.close()
            os.close(lock_fd)
            raise

    @classmethod
    async def _init(
        cls, db: aiosqlite.Connection, lock_fd: int, path: Path, device_id: str,
        max_readings: int, delivery: Delivery,
    ) -> Spool:
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on stable storage before the transaction returns; a reading
            # the agent considers spooled survives power loss, not just a process crash.
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA busy_timeout=5000")
            # The spool is a queue: the work happens at its two ends, so a small page cache
            # does (SQLite's default of 2 MB would only show up as resident memory).
            await db.execute("PRAGMA cache_size=-512")
            version = (await _one(db, "PRAGMA user_version"))[0]
            if version not in (0, 1, SCHEMA_VERSION):
                raise SpoolError(f"spool {path} has schema version {version}; this agent "
                                 f"understands version {SCHEMA_VERSION}")
            await db.execute("BEGIN IMMEDIATE")
            for statement in filter(None, (s.strip() for s in SCHEMA.split(";"))):
                await db.execute(statement)
            if version == 1:
                for statement in filter(None, (s.strip() for s in MIGRATE_1_TO_2.split(";"))):
                    await db.execute(statement)
            await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            state = await _maybe_one(db, "SELECT device_id, boot FROM state WHERE id = 1")
            if state is None:
                await db.execute(
                    "INSERT INTO state (id, device_id, boot, next_seq, head) "
                    "VALUES (1, ?, 0, ?, ?)",
                    (device_id, ChainHead().next_seq, ChainHead().prev),
                )
            elif state[0] != device_id:
                await db.execute("ROLLBACK")
                raise SpoolMismatchError(
                    f"spool {path} belongs to device {state[0]!r}, but the config says "
                    f"{device_id!r}; give this device its own spool.path"
                )
            elif state[1] >= MAX_BOOT:
                await db.execute("ROLLBACK")
                raise SpoolError(f"boot counter in {path} is exhausted ({MAX_BOOT})")
            # The boot counter counts starts: it is bumped and committed before any reading
            # of this run is signed.
            await db.execute("UPDATE state SET boot = boot + 1 WHERE id = 1")
            await db.execute("COMMIT")
            row = await _one(db, "SELECT boot, next_seq, head, gap_first, gap_last, "
                                 + ", ".join(COUNTERS) + ", last_puback_ms, sealed_through "
                                 "FROM state")
            depth, awaiting = await _one(
                db, "SELECT COUNT(*), COALESCE(SUM(sent_ms IS NOT NULL), 0) FROM spool "
                    "WHERE is_gap = 0")
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {path} is unusable: {exc}") from exc
        boot, next_seq, head, gap_first, gap_last = row[:5]
        counters = counters_from(row[5:-1])
        gap = (gap_first, gap_last) if gap_first is not None else None
        if delivery == "puback":
            awaiting = 0  # rows left from receipts mode are sent again and leave at PUBACK
        return cls(db, lock_fd, path, max_readings, device_id, boot,
                   ChainHead(next_seq, bytes(head)), gap, counters, depth, delivery=delivery,
                   awaiting=awaiting, sealed_through=row[-1])

    async def close(self) -> None:
        """Delete what was acknowledged, close the database, release the lock; idempotent."""
        if self._lock_fd < 0:
            return
        if self._flusher is not None:
            # Cancel it only between flushes (it flushes holding the write lock): cancelled
            # mid-flush, it would drop the acknowledgements it had taken, and those readings
            # would be sent once more at the next start.
            async with self._write:
                self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        try:
            with contextlib.suppress(SpoolError):
                await self.flush_acks()
            await self._db.close()
        finally:
            os.close(self._lock_fd)
            self._lock_fd = -1

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[SpoolTransaction]:
        """One write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``).

        Rows acknowledged since the last one are deleted first, so that they free room
        before overflow pushes anything out. On any error everything is rolled back (the
        acknowledgements are kept for the next try) and SQLite errors become SpoolError.
        """
        async with self._write:
            db = self._db
            acks, published = self._take_acks()
            try:
                await db.execute("BEGIN IMMEDIATE")
                depth, newly_awaiting = await self._delete_acked(acks, published)
                txn = SpoolTransaction(db, depth, self.gap)
                txn.awaiting_removed = -newly_awaiting
                yield txn
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                await _rollback(db)
                self._untake_acks(acks, published)
                raise SpoolError(f"cannot write spool {self.path}: {exc}") from exc
            except BaseException:
                await _rollback(db)
                self._untake_acks(acks, published)
                raise
            self.depth = txn.depth
            self.awaiting -= txn.awaiting_removed
            if acks:
                self._acked.set()
            if txn.written is not None:
                self._committed(txn.written)

    def _committed(self, written: _Written) -> None:
        self.head, self.gap, self.depth = written.head, written.gap, written.depth
        t, c = written.totals, self.counters
        c.signed += t.signed
        c.relayed += t.relayed
        c.dropped += t.dropped
        c.dropped_relayed += t.dropped_relayed
        c.gap_records += t.gap_records
        self._new_rows.set()
        self._new_rows = asyncio.Event()

    async def wait_for_new(self) -> None:
        """Return at the next commit that adds rows."""
        await self._new_rows.wait()

    async def fetch(self, after_pos: int, limit: int) -> list[Row]:
        """Up to ``limit`` rows after ``after_pos``, oldest first; in receipts mode only rows
        the broker has not acknowledged yet (the others wait for :meth:`due`)."""
        unsent = " AND sent_ms IS NULL" if self.delivery == "receipts" else ""
        # Under the write lock: the one connection would otherwise also show the rows of a
        # write transaction not committed yet, and a reading published before its commit is
        # signed again, other bytes under the same seq, if the agent dies before the commit.
        async with self._write:
            rows = await self._db.execute_fetchall(
                f"SELECT pos, device_id, seq, envelope FROM spool WHERE pos > ?{unsent} "
                "ORDER BY pos LIMIT ?",
                (after_pos, limit),
            )
        return [Row(pos, dev, seq, bytes(env)) for pos, dev, seq, env in rows]

    async def due(self, acked_before_ms: int, limit: int) -> list[Row]:
        """Receipts mode: up to ``limit`` rows the broker acknowledged before
        ``acked_before_ms`` that no receipt has covered since: to be published again."""
        if self.delivery != "receipts" or self.awaiting <= 0:
            return []
        async with self._write:  # committed rows only, as in fetch
            rows = await self._db.execute_fetchall(
                "SELECT pos, device_id, seq, envelope FROM spool WHERE sent_ms < ? "
                "ORDER BY pos LIMIT ?", (acked_before_ms, limit))
        return [Row(pos, dev, seq, bytes(env)) for pos, dev, seq, env in rows]

    async def settle(self, signed: SignedReceipt, now_ms: int) -> Settled:
        """Apply a collector receipt for this device: release the rows it states sealed,
        release rows refused for good (only the very bytes it refused), mark the rows it
        refused for a reason that may pass later, and keep the receipt."""
        r = signed.receipt
        if r.device_id != self.device_id:
            raise SpoolError(f"receipt for {r.device_id!r} given to the spool of "
                             f"{self.device_id!r}")
        async with self._write:
            db = self._db
            try:
                await db.execute("BEGIN IMMEDIATE")
                applied = await apply_receipt(db, self.device_id, signed, now_ms)
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                await _rollback(db)
                raise SpoolError(f"cannot write spool {self.path}: {exc}") from exc
        removed = applied.removed
        self.depth -= sum(int(reading) for reading, _ in removed)
        self.awaiting -= sum(int(waiting) for _, waiting in removed)
        self.counters.sealed += applied.released
        self.counters.refused_final += applied.final
        if r.sealed_through is not None:
            self.sealed_through = max(self.sealed_through or -1, r.sealed_through)
        if removed:
            self._acked.set()
        return Settled(applied.released, applied.final, applied.kept)

    def ack(self, positions: Sequence[int], now_ms: int) -> None:
        """Note rows the broker acknowledged (PUBACK); they are settled shortly after (deleted
        in puback mode, stamped to wait for a receipt in receipts mode).

        Deleting is deferred and batched (by a background flush, or by the next write
        transaction, whichever comes first) so that the publisher never waits for an fsync.
        A crash before the delete only means those readings are sent once more: duplicates
        with identical bytes, which the collector drops. Never the other way round.
        """
        if not positions:
            return
        self._pending_acks.extend(positions)
        self._pending_published += len(positions)
        self.counters.published += len(positions)
        self.counters.last_puback_ms = now_ms
        self._flush_wanted.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wanted.wait()
            await asyncio.sleep(ACK_FLUSH_S)  # let acks gather: one fsync for many
            self._flush_wanted.clear()
            try:
                await self.flush_acks()
            except SpoolError as exc:
                log.error("%s; will retry", exc)
                self._flush_wanted.set()
                await asyncio.sleep(1.0)

    async def flush_acks(self) -> None:
        """Delete acknowledged rows now (the publisher calls this before re-sending)."""
        async with self._write:
            acks, published = self._take_acks()
            if not acks:
                return
            db = self._db
            try:
                await db.execute("BEGIN IMMEDIATE")
                depth, newly_awaiting = await self._delete_acked(acks, published)
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                await _rollback(db)
                self._untake_acks(acks, published)
                raise SpoolError(f"cannot write spool {self.path}: {exc}") from exc
            self.depth = depth
            self.awaiting += newly_awaiting
            self._acked.set()

    async def drained_to(self, depth: int, timeout: float) -> None:
        """Return once acks bring the readings not yet acknowledged by the broker to ``depth``
        or below, or after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while self.unsent > depth:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._acked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait(), remaining)

    def _take_acks(self) -> tuple[list[int], int]:
        acks, published = self._pending_acks, self._pending_published
        self._pending_acks, self._pending_published = [], 0
        return acks, published

    def _untake_acks(self, acks: list[int], published: int) -> None:
        self._pending_acks[:0] = acks
        self._pending_published += published

    async def _delete_acked(self, acks: list[int], published: int) -> tuple[int, int]:
        """Inside a transaction: settle acknowledged rows (already-dropped ones are skipped)
        and count the PUBACKs; returns the depth afterwards and how many readings began to
        wait for a receipt.

        puback mode deletes the rows. receipts mode stamps them with the PUBACK time and keeps
        them for a receipt; relayed rows still leave here (their receipts go to the sensor's
        own topic, which this agent does not read)."""
        db = self._db
        removed: list[Any] = []
        newly_awaiting = 0
        if acks:
            positions = json.dumps(acks)
            if self.delivery == "puback":
                cursor = await db.execute(_DELETE_POSITIONS + " RETURNING is_gap", (positions,))
            else:
                cursor = await db.execute(
                    _DELETE_POSITIONS + " AND relayed = 1 RETURNING is_gap", (positions,))
            removed = list(await cursor.fetchall())
            if self.delivery == "receipts":
                (newly_awaiting,) = await _one(
                    db, f"SELECT COUNT(*) FROM spool WHERE {_IN_POSITIONS} AND is_gap = 0 "
                        "AND sent_ms IS NULL", (positions,))
                await db.execute(f"UPDATE spool SET sent_ms = ? WHERE {_IN_POSITIONS}",
                                 (self.counters.last_puback_ms, positions))
        if published:
            await db.execute(
                "UPDATE state SET published = published + ?, last_puback_ms = ? WHERE id = 1",
                (published, self.counters.last_puback_ms))
        return self.depth - sum(1 for (is_gap,) in removed if not is_gap), newly_awaiting


def _lock(path: Path) -> int:
    """Hold an exclusive lock beside the spool: two agents on one spool would reuse seqs."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SpoolLockedError(
            f"spool {path} is in use by another sensor-agent process; stop it first "
            "(two writers would reuse sequence numbers)"
        ) from None
    return fd


async def _one(db: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
    row = await _maybe_one(db, sql, params)
    assert row is not None
    return row


async def _maybe_one(db: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
    cursor = await db.execute(sql, params)
    return await cursor.fetchone()


async def _rollback(db: aiosqlite.Connection) -> None:
    try:
        if db.in_transaction:
            await db.execute("ROLLBACK")
    except sqlite3.Error:
        pass
