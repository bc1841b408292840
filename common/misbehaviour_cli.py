"""``verify-misbehaviour``: the offline check of a proof of misbehaviour
(:mod:`provenance.misbehaviour`), one command that ``ledger-witness`` and ``ledger-collector``
both register under their own names."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from provenance.errors import ProvenanceError
from provenance.note import NoteVerifier, parse_verifier_key

__all__ = ["verify_misbehaviour_command"]


def verify_misbehaviour_command(prog: str) -> click.Command:
    """The ``verify-misbehaviour`` command under the program name ``prog``: ``ledger-witness``
    and ``ledger-collector`` both register it, so there is one check behind both names."""

    @click.command("verify-misbehaviour", epilog=f"""\b
Example (offline):
  {prog} verify-misbehaviour misbehaviour-1.txt --vkey "$(head -1 log.vkey)\"""")
    @click.argument("proof_file", type=click.Path(dir_okay=False))
    @click.option("--vkey", "vkeys", multiple=True, metavar="KEY",
                  help="A trusted verifier key of the log; without one, the file's own log "
                       "key is reported and must be compared by hand.")
    def verify_misbehaviour_cmd(proof_file: str, vkeys: tuple[str, ...]) -> None:
        """Check a proof of misbehaviour (a witness's or a mirror's) offline: the reporter's
        signature, the log's signatures on both checkpoints, and that they contradict each
        other."""
        from provenance.misbehaviour import verify_misbehaviour

        try:
            data = Path(proof_file).read_bytes()
            trusted: list[NoteVerifier] = [parse_verifier_key(v) for v in vkeys]
        except OSError as exc:
            click.echo(f"error: cannot read {proof_file}: {exc.strerror}", err=True)
            sys.exit(2)
        except ProvenanceError as exc:
            click.echo(f"error: {exc.diagnostics()}", err=True)
            sys.exit(2)
        report = verify_misbehaviour(data, trusted)
        click.echo(report.render())
        if not report.ok:
            sys.exit(1)

    return verify_misbehaviour_cmd
