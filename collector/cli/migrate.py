"""``migrate``: upgrade a format 1 ledger to one log tree with checkpoints."""

from __future__ import annotations

from pathlib import Path

import click

from collector.cli.common import config, handle_errors, ledger_options, open_ledger, run

__all__ = ["migrate"]


@click.command(epilog="""\b
Example:
  ledger-collector migrate --db ledger.db --key collector-key.pem \\
      --log-name sensorledger.example/water-busan""")
@ledger_options
@click.option("--key", "key_file", metavar="PEM", help="Collector private key.")
@click.option("--log-name", metavar="ORIGIN",
              help="The log's name, if the ledger has none yet "
                   "[default: sensorledger.invalid/DB-NAME].")
@click.option("--chunk", type=click.IntRange(min=1), default=65_536, show_default=True,
              metavar="N", help="Readings added to the tree per transaction.")
@handle_errors
def migrate(config_path: str | None, db: str | None, key_file: str | None,
            log_name: str | None, chunk: int) -> None:
    """Upgrade a format 1 ledger in place: build the one log tree over the stored readings in
    ledger order and sign a checkpoint for the head.

    Stop the collector first. Safe to interrupt and to run again: it resumes where it stopped
    and does nothing on a ledger already migrated. Creates the note key beside the collector
    key when absent.
    """
    from collector.ledger.logkeys import check_log_name
    from collector.ledger.migrate import migrate_ledger
    from collector.ledger.opening import ledger_lock
    from collector.service import load_collector_key

    cfg = config(config_path, database=db, key_file=key_file)
    if log_name is not None:
        check_log_name(log_name)

    async def go() -> object:
        async with open_ledger(cfg) as store:
            with ledger_lock(cfg.database):
                key = await load_collector_key(store, cfg.key_file)
                name = log_name or f"sensorledger.invalid/{Path(cfg.database).stem}"
                return await migrate_ledger(store, key, cfg.key_file, log_name=name,
                                            chunk=chunk)

    from collector.ledger.migrate import MigrationResult

    result = run(go())
    assert isinstance(result, MigrationResult)
    click.echo(f"log name:       {result.origin}")
    click.echo(f"tree size:      {result.tree_size} ({result.added} readings added now)")
    if result.checkpoint is not None:
        click.echo(f"checkpoint:     size {result.checkpoint.size}, root "
                   f"{result.checkpoint.root.hex()}" + (" (signed now)" if result.signed
                                                        else ""))
    for vkey in result.vkeys:
        click.echo(f"verifier key:   {vkey}")
