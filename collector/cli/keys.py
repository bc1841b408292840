"""``key rotate``: replace the collector's signing key and note key (see
:mod:`collector.ledger.key_rotation`)."""

from __future__ import annotations

from pathlib import Path

import click

from collector.cli.common import config, handle_errors, ledger_options, open_ledger, run

__all__ = ["key_group"]


@click.group("key")
def key_group() -> None:
    """The collector's own keys."""


@key_group.command("rotate", epilog="""\b
Example:
  ledger-collector key rotate --db ledger.db --key collector-key.pem
  ledger-collector run ...   # logs the rotation, then signs with the new keys""")
@ledger_options
@click.option("--key", "key_file", metavar="PEM", help="Collector private key (replaced).")
@click.option("--new-key", "new_key_file", metavar="PEM",
              help="Use this P-256 private key as the new collector key instead of a fresh one.")
@handle_errors
def rotate(config_path: str | None, db: str | None, key_file: str | None,
           new_key_file: str | None) -> None:
    """Make a new collector signing key and note key, effective at the collector's next start.

    Stop the collector first (this takes the ledger's writer lock). The old key files are kept
    as KEY.<kid>.pem and KEY.<kid>.note. At its next start the collector logs a key-rotate
    statement signed by the old key naming the new keys, seals it under a checkpoint the old
    keys sign, and signs with the new keys from then on.

    On a PostgreSQL ledger, stop every collector first (refused while any is connected), then
    copy the new files (KEY.pem, KEY.note, KEY.vkey) to every collector machine before
    starting them again; the first to start completes the rotation.
    """
    from collector.ledger.key_rotation import RotationPlan, prepare_rotation
    from collector.ledger.opening import is_postgres_url, ledger_lock
    from provenance.keyfile import load_private_key

    cfg = config(config_path, database=db, key_file=key_file)
    new_key = load_private_key(new_key_file) if new_key_file else None

    async def go() -> object:
        async with open_ledger(cfg) as store:
            with ledger_lock(cfg.database):
                return await prepare_rotation(store, Path(cfg.key_file), new_key=new_key)

    plan = run(go())
    assert isinstance(plan, RotationPlan)
    click.echo(f"old key:        {plan.old_kid.hex()} (kept as {plan.old_key_file}, "
               f"{plan.old_note_file})")
    click.echo(f"new key:        {plan.new_kid.hex()}")
    for vkey in plan.new_vkeys:
        click.echo(f"new verifier key: {vkey}")
    click.echo("pending: the collector logs the rotation at its next start")
    if is_postgres_url(cfg.database):
        click.echo("copy the new key files (key, .note, .vkey) to every collector machine "
                   "before starting the collectors")
