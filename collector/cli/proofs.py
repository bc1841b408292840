"""Proofs of one reading: ``proof`` writes one from the ledger, ``verify-proof`` checks one
offline (no database needed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from collector.cli.common import (
    config,
    handle_errors,
    ledger_options,
    load_public_key,
    on_ledger,
)
from collector.errors import UsageError

__all__ = ["proof", "verify_proof_cmd"]


@click.command(epilog="""\b
Example:
  ledger-collector proof water-01 1234 -o water-01-1234.proof
  ledger-collector verify-proof water-01-1234.proof --collector-key collector-key.pub.pem""")
@ledger_options
@click.argument("device_id")
@click.argument("seq", type=int)
@click.option("-o", "--output", required=True, metavar="FILE", help="Proof file to write (CBOR).")
@click.option("--json", "as_json", is_flag=True, help="Also print the readable JSON rendering.")
@handle_errors
def proof(config_path: str | None, db: str | None, device_id: str, seq: int, output: str,
          as_json: bool) -> None:
    """Write a self-contained proof file for reading DEVICE_ID SEQ."""
    from collector.tools.proofs import build_proof

    cfg = config(config_path, database=db)
    pf = on_ledger(cfg, lambda store: build_proof(store, device_id, seq))
    data = pf.encode()
    Path(output).write_bytes(data)
    if as_json:
        click.echo(json.dumps(pf.to_json(), indent=2))
    click.echo(f"wrote {output} ({len(data)} bytes): {device_id} seq {seq}, leaf "
               f"{pf.leaf_index}, {len(pf.audit_path)}-node audit path", err=True)


@click.command("verify-proof", epilog="""\b
Example (offline: no database needed):
  ledger-collector verify-proof water-01-1234.proof --collector-key collector-key.pub.pem""")
@click.argument("proof_file", type=click.Path(dir_okay=False))
@click.option("--collector-key", required=True, metavar="PEM",
              help="The collector's public key, obtained from its operator.")
@click.option("--json", "as_json", is_flag=True, help="JSON report.")
@handle_errors
def verify_proof_cmd(proof_file: str, collector_key: str, as_json: bool) -> None:
    """Check a proof file offline: print every check it made (SKIP for one that needs a
    failed one) and what was proven: the device, seq, UTC time and clock-synced flag, the
    values and the event, and the block holding the reading.

    Needs only the core: `python -m collector.tools.proof_check` does the same with cbor2 and
    cryptography alone.
    """
    from collector.tools.proof_check import render, to_json
    from provenance.prooffile import verify_proof

    try:
        data = Path(proof_file).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {proof_file}: {exc.strerror}") from None
    key = load_public_key(collector_key)
    report = verify_proof(data, key)
    click.echo(to_json(report) if as_json else render(report))
    if not report.ok:
        sys.exit(1)
