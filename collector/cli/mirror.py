"""``ledger-mirror DB --url URL --policy FILE`` (also ``ledger-collector mirror``): keep a
verified copy of a published log."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from collector.admission.workers import WorkerPool
from collector.cli.common import handle_errors, run
from collector.errors import UsageError
from collector.mirror.errors import FetchError
from provenance.note import Ed25519NoteSigner

if TYPE_CHECKING:
    from collector.mirror.follow import Mirror

__all__ = ["main", "mirror_command"]


@click.command("mirror", epilog="""\b
Examples:
  ledger-mirror mirror.db --url https://log.example/busan --policy busan.vkey
  ledger-mirror mirror.db --url https://log.example/busan --policy busan.vkey --follow 10
  ledger-collector proof --db mirror.db water-01 17 -o r.proof   # answers from the copy""")
@click.argument("database", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--url", required=True, metavar="URL",
              help="The log's tlog-tiles prefix (what `tiles export` wrote, served over HTTP).")
@click.option("--policy", "policy_file", required=True, metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Trust policy: the log's verifier keys, among them the collector's ECDSA "
                   "key (the `.vkey` file `ledger-collector init` writes), or its PEM.")
@click.option("--follow", "interval", type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="Keep following the log, fetching its checkpoint every SECONDS.")
@click.option("--evidence", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Where a fork's proof of misbehaviour is kept [default: DB.misbehaviour].")
@click.option("--key", "key_file", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="The mirror's own Ed25519 note key, which signs proofs of "
              "misbehaviour; created when absent [default: DB.note].")
@click.option("--name", metavar="NAME", help="The mirror's key name, for a new key "
              "[default: mirror.invalid/DB-NAME].")
@click.option("--workers", type=click.IntRange(min=1), metavar="N",
              help="Processes that verify signatures [default: one per core].")
@click.option("--chunk", "chunk_bundles", type=click.IntRange(min=1), default=64,
              show_default=True, metavar="BUNDLES",
              help="Entry bundles (256 entries each) verified and committed together: fewer "
                   "hold less in memory and commit more often.")
@handle_errors
def mirror_command(database: Path, url: str, policy_file: Path, interval: float | None,
                   evidence: Path | None, key_file: Path | None, name: str | None,
                   workers: int | None, chunk_bundles: int) -> None:
    """Fetch the log at URL (checkpoint, tiles, entries), verify all of it and append it to the
    ledger DATABASE (created when absent), a normal ledger that `proof`, `history`, `audit` and
    `readings` read. Exit 1 when the log does not verify (a fork keeps its evidence)."""
    from collector.ledger.lock import LedgerLock
    from collector.ledger.sqlite_store import SQLiteStore
    from collector.mirror.fetch import HttpTiles
    from collector.mirror.follow import Mirror
    from provenance.errors import ProvenanceError
    from provenance.trust import parse_policy

    try:
        policy = parse_policy(policy_file.read_text())
    except (OSError, ProvenanceError) as exc:
        raise UsageError(f"policy {policy_file}: {exc}") from None
    source = HttpTiles(url)
    evidence_file = evidence or database.with_name(database.name + ".misbehaviour")
    reporter = _reporter_key(key_file or database.with_name(database.name + ".note"),
                             name or f"mirror.invalid/{database.stem}")

    async def go() -> None:
        store = await SQLiteStore.open(database, create=True)
        pool = WorkerPool(workers or os.cpu_count() or 1)
        try:
            with LedgerLock(str(database)):
                await pool.start()
                mirror = Mirror(store, policy, source, evidence=evidence_file,
                                reporter=reporter, pool=pool, chunk_bundles=chunk_bundles)
                try:
                    await _follow(mirror, interval)
                finally:
                    mirror.close()
        finally:
            await pool.close()
            await store.close()

    started = time.monotonic()
    run(go())
    click.echo(f"fetched {source.fetched} resources, {source.bytes:,} bytes in "
               f"{time.monotonic() - started:.1f} s")


async def _follow(mirror: Mirror, interval: float | None) -> None:
    """Catch up once, or (``interval``) every ``interval`` seconds until stopped."""
    while True:
        try:
            report = await mirror.sync()
            click.echo(report.render())
        except FetchError as exc:
            if interval is None:
                raise
            click.echo(f"warning: {exc.diagnostics()}; trying again", err=True)
        if interval is None:
            return
        await asyncio.sleep(interval)


def _reporter_key(path: Path, name: str) -> Ed25519NoteSigner:
    """The mirror's note key at ``path``, made (owner-only) when there is none; its verifier
    key is printed once, for whoever checks the mirror's proofs of misbehaviour."""
    from collector.ledger.logkeys import load_note_key, save_note_key

    if not path.exists():
        signer = Ed25519NoteSigner.generate(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_note_key(signer, path)
        click.echo(f"mirror key {path}: {signer.verifier.vkey}")
        return signer
    return load_note_key(path)


def main() -> None:
    mirror_command(prog_name="ledger-mirror")
