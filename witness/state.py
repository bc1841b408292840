"""The witness's durable state: per log, the latest checkpoint it cosigned; and the proofs of
misbehaviour it was shown. One SQLite file.

Checking a request against the stored size and storing the new checkpoint happen in one
``BEGIN IMMEDIATE`` transaction, committed with ``synchronous=FULL`` (the commit is on disk
when :meth:`State.transaction` returns), and the cosignature leaves the process only after
that: a kill -9 at any instant leaves either the old state (no cosignature was sent) or the
new one (the cosignature may or may not have been sent; a resend of the same checkpoint is
cosigned again, since it is the same tree head).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from witness.errors import WitnessStateError

__all__ = ["LogState", "State", "Txn"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_state (
    origin      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    root        BLOB NOT NULL,
    checkpoint  BLOB NOT NULL,   -- the log-signed note as received, verbatim
    cosignature TEXT NOT NULL,   -- our cosignature line on it
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS misbehaviour (
    id          INTEGER PRIMARY KEY,
    origin      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    proof       BLOB NOT NULL,   -- a signed sensorledger/misbehaviour@v1 note
    received_ms INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class LogState:
    origin: str
    size: int
    root: bytes
    checkpoint: bytes
    cosignature: str


class Txn:
    """Reads and writes inside one transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def latest(self, origin: str) -> LogState | None:
        row = self._db.execute("SELECT origin, size, root, checkpoint, cosignature FROM "
                               "log_state WHERE origin = ?", (origin,)).fetchone()
        return LogState(*row) if row else None

    def store(self, state: LogState) -> None:
        self._db.execute(
            "INSERT INTO log_state(origin, size, root, checkpoint, cosignature, updated_ms) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(origin) DO UPDATE SET size = excluded.size, "
            "root = excluded.root, checkpoint = excluded.checkpoint, "
            "cosignature = excluded.cosignature, updated_ms = excluded.updated_ms",
            (state.origin, state.size, state.root, state.checkpoint, state.cosignature,
             time.time_ns() // 1_000_000))

    def record_misbehaviour(self, origin: str, kind: str, proof: bytes) -> None:
        self._db.execute("INSERT INTO misbehaviour(origin, kind, proof, received_ms) "
                         "VALUES (?, ?, ?, ?)", (origin, kind, proof, time.time_ns() // 1_000_000))


class State:
    """The state file, opened by one witness process (SQLite's lock refuses a second writer
    in the middle of a transaction; ``BEGIN IMMEDIATE`` serialises check-and-update)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise WitnessStateError(f"witness state {self.path}: {exc}") from None

    @contextmanager
    def transaction(self) -> Iterator[Txn]:
        """One write transaction; committed (durably) when the block ends without error."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise WitnessStateError(f"witness state {self.path}: {exc}") from None
        try:
            yield Txn(self._db)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise WitnessStateError(f"witness state {self.path}: commit failed: {exc}") from None

    def logs(self) -> list[LogState]:
        rows = self._db.execute("SELECT origin, size, root, checkpoint, cosignature FROM "
                                "log_state ORDER BY origin").fetchall()
        return [LogState(*row) for row in rows]

    def latest(self, origin: str) -> LogState | None:
        return Txn(self._db).latest(origin)

    def misbehaviour(self) -> list[tuple[int, str, str, bytes, int]]:
        return list(self._db.execute("SELECT id, origin, kind, proof, received_ms FROM "
                                     "misbehaviour ORDER BY id").fetchall())

    def close(self) -> None:
        self._db.close()
