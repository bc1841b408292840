"""Open the ledger a ``database`` setting names: a SQLite file path, or a ``postgresql://`` URL.

Also where a collector keeps its small local files (the presence board, the registry snapshot
shared with its workers): beside a SQLite file; for PostgreSQL in ``$SENSORLEDGER_STATE_DIR``
(default: the system's temporary folder), named after the database and the collector's MQTT
client id, so collectors on one machine do not share them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from collector.ledger.pg_base import is_postgres_url, redact
from collector.ledger.pg_store import PostgresStore
from collector.ledger.sqlite_store import SQLiteStore

#: An open ledger, whichever database holds it.
Ledger = SQLiteStore | PostgresStore

__all__ = ["STATE_DIR_ENV", "Ledger", "is_postgres_url", "ledger_lock", "local_path", "open_store",
           "redact"]

STATE_DIR_ENV = "SENSORLEDGER_STATE_DIR"


async def open_store(database: str, *, create: bool = False, pool_size: int = 4,
                     collector: str | None = None) -> Ledger:
    """The store for ``database``: :class:`~collector.ledger.pg_store.PostgresStore` for a
    ``postgresql://`` (or ``postgres://``) URL, else
    :class:`~collector.ledger.sqlite_store.SQLiteStore` on the file. ``collector``: the client
    id of the collector that runs on it (PostgreSQL names its connections after it)."""
    if is_postgres_url(database):
        return await PostgresStore.open(database, create=create, pool_size=pool_size,
                                        collector=collector)
    return await SQLiteStore.open(database, create=create)


def local_path(database: str, suffix: str, instance: str = "") -> Path:
    """A local file that belongs with the ledger: ``DATABASE<suffix>`` beside a SQLite file;
    for a PostgreSQL URL, a file in the state folder named after the URL and ``instance``."""
    if not is_postgres_url(database):
        p = Path(database)
        return p.with_name(p.name + suffix)
    folder = Path(os.environ.get(STATE_DIR_ENV) or tempfile.gettempdir())
    tag = hashlib.sha256(f"{redact(database)}\n{instance}".encode()).hexdigest()[:16]
    return folder / f"sensorledger-{tag}{suffix}"


def ledger_lock(database: str) -> AbstractContextManager[Any]:
    """The one-writer lock of a SQLite ledger (see :mod:`collector.ledger.lock`); nothing for
    PostgreSQL, where collectors and commands coordinate by row locks in the database."""
    if is_postgres_url(database):
        return contextlib.nullcontext()
    from collector.ledger.lock import LedgerLock

    return LedgerLock(database)
