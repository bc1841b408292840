"""``tiles``: publish the log as C2SP tlog-tiles."""

from __future__ import annotations

from pathlib import Path

import click

from collector.cli.common import config, handle_errors, ledger_options, on_ledger

__all__ = ["tiles"]


@click.group()
def tiles() -> None:
    """Publish the log as C2SP tlog-tiles (checkpoint, hash tiles, entry bundles)."""


@tiles.command("export", epilog="""\b
Example:
  ledger-collector tiles export --db ledger.db /var/www/log
  # then serve /var/www/log with any static web server; mirrors read it with ledger-mirror""")
@ledger_options
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@handle_errors
def tiles_export(config_path: str | None, db: str | None, directory: Path) -> None:
    """Write the log up to its latest checkpoint into DIRECTORY as tlog-tiles.

    Incremental (only the tiles the new checkpoint adds) and crash-safe (each file renamed
    into place, the checkpoint last); safe to run beside a collector, e.g. after every block.
    """
    from collector.publish.tiles import export_tiles

    cfg = config(config_path, database=db)
    directory.mkdir(parents=True, exist_ok=True)
    result = on_ledger(cfg, lambda store: export_tiles(store, directory))
    click.echo(f"exported tree size {result.size} (was {result.old_size}): "
               f"{result.written} file(s) written to {directory}")
