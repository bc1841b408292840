"""One writer per ledger: ``ledger-collector run`` holds an exclusive lock beside the database.

The lock is ``fcntl.flock`` on ``DATABASE.lock``, held for as long as the collector runs. The
kernel releases it when the process ends, however it ends (SIGKILL, power loss), so a stale
lock file never blocks a restart; the file itself stays (removing it could race a collector
that is just taking it). The holder writes its pid into the file, for the refusal message.

Only ``run`` takes it: the admin commands (``devices add``, ``revoke``) write through short
SQLite transactions, which the running collector's single writer already serialises with.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from collector.errors import StoreError, UsageError

__all__ = ["LedgerLock", "lock_path"]


def lock_path(database: str | os.PathLike[str]) -> Path:
    p = Path(database)
    return p.with_name(p.name + ".lock")


class LedgerLock:
    """Held while a collector writes the ledger at ``database``."""

    def __init__(self, database: str | os.PathLike[str]) -> None:
        self.path = lock_path(database)
        self._fd: int | None = None

    def acquire(self) -> LedgerLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise UsageError(
                f"another collector ({who}) is already running on this ledger: "
                f"{self.path} is locked; one ledger has one writer"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> LedgerLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
