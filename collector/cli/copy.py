"""``copy``: copy a SQLite ledger into a PostgreSQL database, verified as it is copied."""

from __future__ import annotations

import time

import click

from collector.cli.common import handle_errors, run
from collector.errors import UsageError

__all__ = ["copy_cmd"]


@click.command("copy", epilog="""\b
Example:
  createdb ledger
  ledger-collector copy /var/lib/sensorledger/ledger.db postgresql://ledger@db1/ledger""")
@click.argument("source", metavar="SQLITE_PATH")
@click.argument("target", metavar="POSTGRESQL_URL")
@handle_errors
def copy_cmd(source: str, target: str) -> None:
    """Copy the SQLite ledger SQLITE_PATH into the empty PostgreSQL database at POSTGRESQL_URL.

    Every envelope's signature, every block header and chain link, and the log tree's root at
    every block and checkpoint are checked as they are copied; the first mismatch stops the copy
    (exit code 1). Stop the collector first. The keys stay where they are: the PostgreSQL ledger
    has the same collector key, log name and checkpoints.
    """
    from collector.ledger.opening import is_postgres_url, ledger_lock
    from collector.ledger.pg_copy import copy_ledger
    from collector.ledger.pg_store import PostgresStore
    from collector.ledger.sqlite_store import SQLiteStore

    if is_postgres_url(source) or not is_postgres_url(target):
        raise UsageError("copy takes a SQLite file, then a postgresql:// URL")

    async def go() -> object:
        src = await SQLiteStore.open(source)
        try:
            dst = await PostgresStore.open(target, create=True)
            try:
                return await copy_ledger(src, dst)
            finally:
                await dst.close()
        finally:
            await src.close()

    started = time.monotonic()
    with ledger_lock(source):  # refused while a collector runs on the SQLite ledger
        result = run(go())
    from collector.ledger.pg_copy import CopyResult

    assert isinstance(result, CopyResult)
    click.echo(f"copied and verified: {result.readings} readings ({result.unsealed} not yet "
               f"sealed), {result.blocks} blocks, {result.checkpoints} checkpoints in "
               f"{time.monotonic() - started:.1f} s")
    if result.tree_size:
        click.echo(f"log tree: size {result.tree_size}, root {result.root.hex()}")
