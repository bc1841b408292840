"""``audit``: re-verify the whole ledger."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from collector.cli.common import (
    config,
    handle_errors,
    ledger_options,
    load_public_key,
    open_ledger,
    run,
)
from collector.errors import UsageError

__all__ = ["audit", "parse_anchor"]


@click.command(epilog="""\b
Examples:
  ledger-collector audit --db ledger.db --collector-key collector-key.pub.pem
  ledger-collector audit --json > audit.json
  ledger-collector audit --checkpoint saved.checkpoint  # printed by `checkpoint` last month
  ledger-collector audit --anchor 1234:9f86d081884c7d65…  # a head recorded last month""")
@ledger_options
@click.option("--collector-key", metavar="PEM",
              help="Trusted collector public key (default: the key recorded in the ledger).")
@click.option("--workers", type=int, default=0, show_default=True,
              help="Verification processes (0: one per core).")
@click.option("--json", "as_json", is_flag=True, help="JSON report on stdout.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="FILE",
              help="A checkpoint saved earlier (`ledger-collector checkpoint` output); fail "
                   "unless today's ledger extends it (consistency proof). Repeatable.")
@click.option("--anchor", "anchors", multiple=True, metavar="HEIGHT:HASH",
              help="A block hash recorded earlier elsewhere; fail unless the ledger still "
                   "has it (catches a cut-off or re-sealed chain). Repeatable.")
@handle_errors
def audit(config_path: str | None, db: str | None, collector_key: str | None, workers: int,
          as_json: bool, progress: bool | None, checkpoints: tuple[str, ...],
          anchors: tuple[str, ...]) -> None:
    """Re-verify the whole ledger; name the first broken block and reading.

    Checks every device signature, every block signature, Merkle root and chain link, that
    heights are contiguous and that every reading row is present and matches what its device
    signed. Exit 0 when all holds, 1 otherwise.
    """
    from collector.admission.workers import WorkerPool
    from collector.tools.audit import run_audit

    cfg = config(config_path, database=db)
    trusted = load_public_key(collector_key) if collector_key else None
    show = sys.stderr.isatty() if progress is None else progress
    pinned = [parse_anchor(a) for a in anchors]
    saved: list[bytes] = []
    for path in checkpoints:
        try:
            saved.append(Path(path).read_bytes())
        except OSError as exc:
            raise UsageError(f"cannot read checkpoint {path}: {exc.strerror}") from None

    async def go() -> Any:
        pool = WorkerPool(workers or (os.cpu_count() or 1))
        # The workers import while the ledger is opened and its ledger-wide pass runs.
        pool.launch()
        try:
            async with open_ledger(cfg) as store:
                key = trusted or await store.collector_public_key()
                if key is None:
                    raise UsageError("the ledger records no collector key; pass --collector-key")
                age_ms = int(cfg.blocks.age * 1000)
                if not show:
                    return await run_audit(store, key, pool, anchors=pinned, block_age_ms=age_ms,
                                           saved_checkpoints=saved)
                total = await store.reading_count()
                with click.progressbar(length=total, label="auditing", file=sys.stderr,
                                       show_pos=True, show_eta=True) as bar:
                    return await run_audit(store, key, pool, progress=bar.update,
                                           anchors=pinned, block_age_ms=age_ms,
                                           saved_checkpoints=saved)
        finally:
            await pool.close()

    report = run(go())
    click.echo(report.to_json() if as_json else report.render())
    if not report.ok:
        sys.exit(1)


def parse_anchor(text: str) -> tuple[int, bytes]:
    height, _, digest = text.partition(":")
    try:
        value = (int(height), bytes.fromhex(digest))
    except ValueError:
        value = (-1, b"")
    if value[0] < 0 or len(value[1]) != 32:
        raise UsageError(f"--anchor {text!r} must be HEIGHT:HASH (64 hex digits)")
    return value
