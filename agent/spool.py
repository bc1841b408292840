"""The durable, bounded spool between the signer and the broker (SQLite through aiosqlite).

Contract (docs/agent.md, "Spool contract"):

* **Sign and spool in one transaction.** :meth:`Spool.record` signs a batch of drafts and
  commits the envelopes, the new chain head (next seq, hash of the last envelope), the boot
  counter and the overflow state together. WAL with ``synchronous=FULL``: a committed reading
  survives SIGKILL and power loss, and after a restart the chain resumes from the committed
  head, so a sequence number is never reused.
* **Leaves only after PUBACK.** The publisher reads rows in ``pos`` order and calls
  :meth:`Spool.ack` with the positions the broker acknowledged; they are deleted in the next
  transaction (batched, so the publisher never waits for a disk flush). ``pos`` is
  AUTOINCREMENT so a position is never reused, and an ack for a row that was dropped
  meanwhile is a no-op. A crash between PUBACK and delete re-sends those rows once more.
* **Bounded.** At most ``max_readings`` readings (own and relayed) are kept. A reading that
  arrives at a full spool pushes out the oldest one. Gap records are never dropped and do not
  count towards the limit: they are how a loss is proven, and there is at most one per
  overflow episode.
* **Overflow episodes.** An episode opens at the first drop. While it is open, each further
  drop extends its range ``[first, last]`` (persisted with the drop, so it survives restarts).
  It closes, and its one gap record is signed (taking the next seq, chained normally, spooled
  like a reading), at the first reading that finds room in the spool again — i.e. once the
  publisher has made room. If a drop would not extend the range contiguously (a retained
  record sits between), the episode is closed first and a new one opens, so every gap
  record names exactly the seqs it dropped. Relayed envelopes belong to other devices'
  chains; their drops are counted (``dropped_relayed``) but cannot be signed for.
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
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from .errors import SpoolError, SpoolLockedError, SpoolMismatchError
from .signer import ChainHead, ChainSigner, Draft, Entry, Relay

log = logging.getLogger(__name__)

__all__ = ["Row", "Spool", "SpoolCounters", "SpoolReport", "read_report"]

SCHEMA_VERSION = 1
#: How long acknowledged rows wait to be deleted together.
ACK_FLUSH_S = 0.05
#: Batches up to this many readings are signed on the event loop, larger ones in a thread.
SIGN_ON_LOOP = 8
MAX_BOOT = 2**32 - 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    device_id       TEXT    NOT NULL,
    boot            INTEGER NOT NULL,
    next_seq        INTEGER NOT NULL,
    head            BLOB    NOT NULL,
    gap_first       INTEGER,          -- open overflow episode, NULL when none
    gap_last        INTEGER,
    signed          INTEGER NOT NULL DEFAULT 0,
    relayed         INTEGER NOT NULL DEFAULT 0,
    published       INTEGER NOT NULL DEFAULT 0,
    dropped         INTEGER NOT NULL DEFAULT 0,
    dropped_relayed INTEGER NOT NULL DEFAULT 0,
    gap_records     INTEGER NOT NULL DEFAULT 0,
    last_puback_ms  INTEGER
);
CREATE TABLE IF NOT EXISTS spool (
    pos       INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    is_gap    INTEGER NOT NULL DEFAULT 0,
    relayed   INTEGER NOT NULL DEFAULT 0,
    envelope  BLOB    NOT NULL
);
"""
# One statement text for any number of positions (a JSON array parameter): an IN list of
# "?, ?, ..." would be a new prepared statement for every length, and the sqlite3 module
# caches up to 128 of them, each the size of its list, which showed as MBs of resident memory.
_DELETE_POSITIONS = "DELETE FROM spool WHERE pos IN (SELECT value FROM json_each(?))"
_COUNTERS = ("signed", "relayed", "published", "dropped", "dropped_relayed", "gap_records")


@dataclass(frozen=True, slots=True)
class Row:
    """A spooled envelope as the publisher sees it."""

    pos: int
    device_id: str
    seq: int
    envelope: bytes


@dataclass(slots=True)
class SpoolCounters:
    """Totals since the spool was created (they persist across restarts)."""

    signed: int = 0
    relayed: int = 0
    published: int = 0
    dropped: int = 0
    dropped_relayed: int = 0
    gap_records: int = 0
    last_puback_ms: int | None = None


@dataclass(slots=True)
class _Candidate:
    """A row that may be pushed out: already on disk (pos) or new in this batch (index)."""

    seq: int
    relayed: bool
    pos: int | None = None
    index: int | None = None


@dataclass
class _Batch:
    entries: list[Entry | None] = field(default_factory=list)
    delete: list[int] = field(default_factory=list)
    signed: int = 0
    relayed: int = 0
    dropped: int = 0
    dropped_relayed: int = 0
    gap_records: int = 0


class Spool:
    """The agent's one writer on the spool database. Use :meth:`open`, then :meth:`close`."""

    def __init__(
        self, db: aiosqlite.Connection, lock_fd: int, path: Path, max_readings: int,
        device_id: str, boot: int, head: ChainHead, gap: tuple[int, int] | None,
        counters: SpoolCounters, depth: int, gap_rows: int,
    ) -> None:
        self._db = db
        self._lock_fd = lock_fd
        self.path = path
        self.max_readings = max_readings
        self.device_id = device_id
        self.boot = boot
        self.head = head
        self.gap = gap
        self.counters = counters
        self.depth = depth  # readings (own and relayed) in the spool; gap records excluded
        self.gap_rows = gap_rows
        self._listeners: list[Callable[[], None]] = []
        self._acked = asyncio.Event()
        self._write = asyncio.Lock()
        # Acknowledged positions not yet deleted, and the PUBACKs not yet counted on disk.
        self._pending_acks: list[int] = []
        self._pending_published = 0
        self._flush_wanted = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path, device_id: str, max_readings: int) -> Spool:
        """Open (or create) the spool, take its lock, and count this start as a new boot."""
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock(path)
        try:
            db = await aiosqlite.connect(str(path), isolation_level=None)
        except sqlite3.Error as exc:
            os.close(lock_fd)
            raise SpoolError(f"cannot open spool {path}: {exc}") from exc
        try:
            return await cls._init(db, lock_fd, path, device_id, max_readings)
        except BaseException:
            await db.close()
            os.close(lock_fd)
            raise

    @classmethod
    async def _init(
        cls, db: aiosqlite.Connection, lock_fd: int, path: Path, device_id: str,
        max_readings: int,
    ) -> Spool:
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on stable storage before record() returns; a reading the
            # agent considers spooled survives power loss, not just a process crash.
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA busy_timeout=5000")
            # The spool is a queue: the work happens at its two ends, so a small page cache
            # does (SQLite's default of 2 MB would only show up as resident memory).
            await db.execute("PRAGMA cache_size=-512")
            version = (await _one(db, "PRAGMA user_version"))[0]
            if version not in (0, SCHEMA_VERSION):
                raise SpoolError(f"spool {path} has schema version {version}; this agent "
                                 f"understands version {SCHEMA_VERSION}")
            await db.execute("BEGIN IMMEDIATE")
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
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
                                 + ", ".join(_COUNTERS) + ", last_puback_ms FROM state")
            depth, gap_rows = await _one(
                db, "SELECT COALESCE(SUM(is_gap = 0), 0), COALESCE(SUM(is_gap), 0) FROM spool")
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {path} is unusable: {exc}") from exc
        boot, next_seq, head, gap_first, gap_last = row[:5]
        counters = _counters(row[5:])
        gap = (gap_first, gap_last) if gap_first is not None else None
        return cls(db, lock_fd, path, max_readings, device_id, boot,
                   ChainHead(next_seq, bytes(head)), gap, counters, depth, gap_rows)

    async def close(self) -> None:
        """Delete what was acknowledged, close the database, release the lock; idempotent."""
        if self._lock_fd < 0:
            return
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        try:
            with contextlib.suppress(SpoolError):
                await self.flush_acks()
            await self._db.close()
        finally:
            os.close(self._lock_fd)
            self._lock_fd = -1

    async def record(self, items: Sequence[Draft | Relay], signer: ChainSigner) -> None:
        """Sign the drafts, apply the overflow policy and commit it all in one transaction."""
        if not items:
            return
        async with self._write:
            db = self._db
            acks, published = self._take_acks()
            try:
                await db.execute("BEGIN IMMEDIATE")
                # Delivered rows go first, so that they free room before anything is dropped.
                depth, gap_rows = await self._delete_acked(acks, published)
                head, gap = signer.head, self.gap
                need = max(0, depth + len(items) - self.max_readings)
                victims: deque[_Candidate] = deque()
                if need:
                    rows = await db.execute_fetchall(
                        "SELECT pos, seq, relayed FROM spool WHERE is_gap = 0 "
                        "ORDER BY pos LIMIT ?", (min(need, depth),))
                    victims.extend(_Candidate(seq, bool(rel), pos=pos) for pos, seq, rel in rows)
                # Signing is CPU work (~50 µs a reading): a large batch is signed in a worker
                # thread so that the publisher keeps its share of the event loop; a few
                # readings cost less than the hand-off to a thread and back.
                if len(items) <= SIGN_ON_LOOP:
                    planned = self._plan(items, signer, victims, head, gap, depth)
                else:
                    planned = await asyncio.to_thread(
                        self._plan, items, signer, victims, head, gap, depth)
                batch, head, gap, depth = planned
                await self._write_batch(batch, head, gap)
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                await _rollback(db)
                self._untake_acks(acks, published)
                raise SpoolError(f"cannot write spool {self.path}: {exc}") from exc
            except BaseException:
                await _rollback(db)
                self._untake_acks(acks, published)
                raise
            signer.advance(head)
            self.head = head
            self.gap = gap
            self.depth = depth
            self.gap_rows = gap_rows + batch.gap_records
            c = self.counters
            c.signed += batch.signed
            c.relayed += batch.relayed
            c.dropped += batch.dropped
            c.dropped_relayed += batch.dropped_relayed
            c.gap_records += batch.gap_records
            if acks:
                self._acked.set()
            for listener in self._listeners:
                listener()

    def _plan(
        self, items: Sequence[Draft | Relay], signer: ChainSigner, victims: deque[_Candidate],
        head: ChainHead, gap: tuple[int, int] | None, depth: int,
    ) -> tuple[_Batch, ChainHead, tuple[int, int] | None, int]:
        """Decide drops and gap records and sign, in memory; :meth:`_write_batch` stores it."""
        batch = _Batch()
        for item in items:
            dropped_now = False
            # "while": the limit may have been lowered since these rows were spooled.
            while depth >= self.max_readings:
                dropped_now = True
                victim = victims.popleft()
                depth -= 1
                if victim.pos is not None:
                    batch.delete.append(victim.pos)
                else:
                    assert victim.index is not None
                    batch.entries[victim.index] = None
                if victim.relayed:
                    batch.dropped_relayed += 1
                    continue
                batch.dropped += 1
                if gap is not None and victim.seq != gap[1] + 1:
                    head = self._close_episode(signer, gap, head, batch)
                    gap = None
                gap = (victim.seq, victim.seq) if gap is None else (gap[0], victim.seq)
            if not dropped_now and gap is not None:
                head = self._close_episode(signer, gap, head, batch)
                gap = None
            if isinstance(item, Draft):
                entry, head = signer.sign(item, head)
                batch.signed += 1
            else:
                entry = Entry(item.device_id, item.seq, item.envelope, relayed=True)
                batch.relayed += 1
            batch.entries.append(entry)
            victims.append(_Candidate(entry.seq, entry.relayed, index=len(batch.entries) - 1))
            depth += 1
        return batch, head, gap, depth

    @staticmethod
    def _close_episode(
        signer: ChainSigner, gap: tuple[int, int], head: ChainHead, batch: _Batch
    ) -> ChainHead:
        entry, head = signer.sign_gap(gap[0], gap[1], head)
        batch.entries.append(entry)
        batch.gap_records += 1
        return head

    async def _write_batch(
        self, batch: _Batch, head: ChainHead, gap: tuple[int, int] | None
    ) -> None:
        """The statements of one record() transaction (the caller begins and commits)."""
        db = self._db
        if batch.delete:
            await db.execute(_DELETE_POSITIONS, (json.dumps(batch.delete),))
        await db.executemany(
            "INSERT INTO spool (device_id, seq, is_gap, relayed, envelope) VALUES (?, ?, ?, ?, ?)",
            [(e.device_id, e.seq, int(e.is_gap), int(e.relayed), e.envelope)
             for e in batch.entries if e is not None])
        await db.execute(
            "UPDATE state SET next_seq = ?, head = ?, gap_first = ?, gap_last = ?, "
            "signed = signed + ?, relayed = relayed + ?, dropped = dropped + ?, "
            "dropped_relayed = dropped_relayed + ?, gap_records = gap_records + ? WHERE id = 1",
            (head.next_seq, head.prev, gap[0] if gap else None, gap[1] if gap else None,
             batch.signed, batch.relayed, batch.dropped, batch.dropped_relayed,
             batch.gap_records),
        )

    def _take_acks(self) -> tuple[list[int], int]:
        acks, published = self._pending_acks, self._pending_published
        self._pending_acks, self._pending_published = [], 0
        return acks, published

    def _untake_acks(self, acks: list[int], published: int) -> None:
        self._pending_acks[:0] = acks
        self._pending_published += published

    async def _delete_acked(self, acks: list[int], published: int) -> tuple[int, int]:
        """Inside a transaction: delete acknowledged rows (already-dropped ones are skipped)
        and count the PUBACKs; returns the depth and gap-record count afterwards."""
        db = self._db
        removed: list[Any] = []
        if acks:
            cursor = await db.execute(_DELETE_POSITIONS + " RETURNING is_gap",
                                      (json.dumps(acks),))
            removed = list(await cursor.fetchall())
        if published:
            await db.execute(
                "UPDATE state SET published = published + ?, last_puback_ms = ? WHERE id = 1",
                (published, self.counters.last_puback_ms))
        gaps = sum(1 for (is_gap,) in removed if is_gap)
        return self.depth - (len(removed) - gaps), self.gap_rows - gaps

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (no arguments) after each commit that adds rows."""
        self._listeners.append(callback)

    async def fetch(self, after_pos: int, limit: int) -> list[Row]:
        """Up to ``limit`` rows after ``after_pos``, oldest first."""
        rows = await self._db.execute_fetchall(
            "SELECT pos, device_id, seq, envelope FROM spool WHERE pos > ? ORDER BY pos LIMIT ?",
            (after_pos, limit),
        )
        return [Row(pos, dev, seq, bytes(env)) for pos, dev, seq, env in rows]

    def ack(self, positions: Sequence[int], now_ms: int) -> None:
        """Note rows the broker acknowledged (PUBACK); they are deleted shortly after.

        Deleting is deferred and batched (by a background flush, or by the next record()
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
                depth, gap_rows = await self._delete_acked(acks, published)
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                await _rollback(db)
                self._untake_acks(acks, published)
                raise SpoolError(f"cannot write spool {self.path}: {exc}") from exc
            self.depth, self.gap_rows = depth, gap_rows
            self._acked.set()

    async def drained_to(self, depth: int, timeout: float) -> None:
        """Return once acks bring the depth to ``depth`` or below, or after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while self.depth > depth:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._acked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait(), remaining)

    @property
    def rows(self) -> int:
        return self.depth + self.gap_rows


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


def _counters(values: Sequence[Any]) -> SpoolCounters:
    """Counters from the ``state`` columns ``_COUNTERS`` followed by ``last_puback_ms``."""
    totals = dict(zip(_COUNTERS, values[:len(_COUNTERS)], strict=True))
    return SpoolCounters(**totals, last_puback_ms=values[len(_COUNTERS)])


async def _one(db: aiosqlite.Connection, sql: str) -> Any:
    row = await _maybe_one(db, sql)
    assert row is not None
    return row


async def _maybe_one(db: aiosqlite.Connection, sql: str) -> Any:
    cursor = await db.execute(sql)
    return await cursor.fetchone()


async def _rollback(db: aiosqlite.Connection) -> None:
    try:
        if db.in_transaction:
            await db.execute("ROLLBACK")
    except sqlite3.Error:
        pass


@dataclass(frozen=True, slots=True)
class SpoolReport:
    """What ``sensor-agent status`` shows from the spool, read without the agent."""

    path: str
    device_id: str
    boot: int
    next_seq: int
    head: str
    open_gap: tuple[int, int] | None
    depth: int
    gap_rows: int
    oldest_seq: int | None
    newest_seq: int | None
    counters: SpoolCounters

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "device_id": self.device_id, "boot": self.boot,
            "next_seq": self.next_seq, "head": self.head,
            "open_gap": list(self.open_gap) if self.open_gap else None,
            "depth": self.depth, "gap_records_waiting": self.gap_rows,
            "oldest_seq": self.oldest_seq, "newest_seq": self.newest_seq,
            "totals": {name: getattr(self.counters, name) for name in _COUNTERS},
            "last_puback_ms": self.counters.last_puback_ms,
        }


def read_report(path: Path) -> SpoolReport:
    """Read the spool's state without writing (safe while the agent runs: WAL readers)."""
    if not path.exists():
        raise SpoolError(f"spool {path} does not exist (has the agent run yet?)")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise SpoolError(f"cannot open spool {path} read-only: {exc}") from exc
    try:
        row = db.execute("SELECT device_id, boot, next_seq, head, gap_first, gap_last, "
                         + ", ".join(_COUNTERS) + ", last_puback_ms FROM state").fetchone()
        if row is None:
            raise SpoolError(f"spool {path} has no state yet")
        depth, gap_rows = db.execute(
            "SELECT COALESCE(SUM(is_gap = 0), 0), COALESCE(SUM(is_gap), 0) FROM spool"
        ).fetchone()
        oldest, newest = db.execute(
            "SELECT MIN(seq), MAX(seq) FROM spool WHERE relayed = 0").fetchone()
    except sqlite3.Error as exc:
        raise SpoolError(f"cannot read spool {path}: {exc}") from exc
    finally:
        db.close()
    device_id, boot, next_seq, head, gap_first, gap_last = row[:6]
    counters = _counters(row[6:])
    return SpoolReport(
        path=str(path), device_id=device_id, boot=boot, next_seq=next_seq, head=bytes(head).hex(),
        open_gap=(gap_first, gap_last) if gap_first is not None else None,
        depth=depth, gap_rows=gap_rows, oldest_seq=oldest, newest_seq=newest, counters=counters,
    )
