"""Proofs: ``proof`` writes one reading's proof from the ledger, ``verify-proof`` checks one
offline (no database needed), ``checkpoint`` prints a signed checkpoint and ``consistency`` an
RFC 9162 consistency proof between two tree sizes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from collector.cli.common import config, handle_errors, ledger_options, on_ledger
from collector.errors import NotFoundError, UsageError

__all__ = ["checkpoint_cmd", "consistency_cmd", "history_cmd", "proof", "verify_history_cmd",
           "verify_proof_cmd"]


@click.command(epilog="""\b
Example:
  ledger-collector proof water-01 1234 -o water-01-1234.proof
  ledger-collector proof water-01 1234 --format tlog-proof -o water-01-1234.tlog-proof
  ledger-collector verify-proof water-01-1234.proof --vkey "$(head -1 collector-key.vkey)\"""")
@ledger_options
@click.argument("device_id")
@click.argument("seq", type=int)
@click.option("-o", "--output", required=True, metavar="FILE", help="Proof file to write.")
@click.option("--format", "form", type=click.Choice(["cbor", "tlog-proof"]), default="cbor",
              show_default=True, help="Proof format 2 (CBOR) or the C2SP tlog-proof text.")
@click.option("--size", type=int, metavar="N",
              help="Prove against the checkpoint of tree size N [default: the latest].")
@click.option("--json", "as_json", is_flag=True, help="Also print the readable JSON rendering.")
@click.option("--disclose", is_flag=True,
              help="A private reading: put its opening (salt and values) in the proof, for a "
                   "recipient who may see them (needs --reader-key).")
@click.option("--reader-key", metavar="PEM", help="Reader key that opens the sealed values.")
@handle_errors
def proof(config_path: str | None, db: str | None, device_id: str, seq: int, output: str,
          form: str, size: int | None, as_json: bool, disclose: bool,
          reader_key: str | None) -> None:
    """Write a self-contained proof file for reading DEVICE_ID SEQ.

    In a ledger of one log tree: the envelope, the device key, the leaf index and audit path,
    and the signed checkpoint it proves against (format 2, or the C2SP tlog-proof form). In a
    ledger not migrated yet: format 1, against the reading's block header.
    """
    from collector.tools.proofs import build_proof
    from provenance.logproof import LogProof

    cfg = config(config_path, database=db)
    if disclose and reader_key is None:
        raise UsageError("--disclose needs --reader-key: the key of a reader who may open the "
                         "sealed values")
    pf = on_ledger(cfg, lambda store: build_proof(store, device_id, seq, size=size,
                                                  quorum=cfg.witnessing.quorum))
    if form == "tlog-proof" and not isinstance(pf, LogProof):
        raise UsageError("a tlog-proof needs the log tree: run `ledger-collector migrate`")
    if disclose:
        from dataclasses import replace

        from collector.tools.private_readings import load_reader_key, reveal

        if not isinstance(pf, LogProof) or form != "cbor":
            raise UsageError("--disclose writes a format 2 CBOR proof")
        assert reader_key is not None
        revealed = reveal(cfg.database, device_id, seq, load_reader_key(reader_key))
        pf = replace(pf, opening=revealed.opening.encode())
    data = pf.to_tlog_proof() if isinstance(pf, LogProof) and form == "tlog-proof" else (
        pf.encode())
    Path(output).write_bytes(data)
    if as_json:
        click.echo(json.dumps(pf.to_json(), indent=2))
    against = (f"checkpoint of tree size {_size(pf.checkpoint)}" if isinstance(pf, LogProof)
               else "its block header (format 1)")
    click.echo(f"wrote {output} ({len(data)} bytes): {device_id} seq {seq}, leaf "
               f"{pf.leaf_index}, {len(pf.audit_path)}-node audit path, against {against}",
               err=True)


def _size(note: bytes) -> int:
    from provenance.checkpoint import parse_checkpoint
    from provenance.note import parse_note

    return parse_checkpoint(parse_note(note).text).size


@click.command("verify-proof", epilog="""\b
Examples (offline: no database needed):
  ledger-collector verify-proof water-01-1234.proof --policy busan.policy
  ledger-collector verify-proof water-01-1234.proof \\
      --vkey sensorledger.example/water-busan+20c48bcf+ARi6nBLAsdBZ…
  ledger-collector verify-proof old-format.proof --collector-key collector-key.pub.pem""")
@click.argument("proof_file", type=click.Path(dir_okay=False))
@click.option("--collector-key", "collector_keys", multiple=True, metavar="PEM",
              help="A trusted collector public key (PEM), obtained from its operator.")
@click.option("--vkey", "vkeys", multiple=True, metavar="KEY",
              help="A trusted note verifier key of the log (name+hash+base64). Repeatable.")
@click.option("--policy", "policy_file", metavar="FILE",
              help="A trust policy file: `log ORIGIN`, `vkey KEY` lines and PEM keys.")
@click.option("--json", "as_json", is_flag=True, help="JSON report.")
@handle_errors
def verify_proof_cmd(proof_file: str, collector_keys: tuple[str, ...], vkeys: tuple[str, ...],
                     policy_file: str | None, as_json: bool) -> None:
    """Check a proof file offline (format 1 or 2, or a tlog-proof): print every check it made
    (SKIP for one that needs a failed one) and what was proven: the device, seq, UTC time and
    clock-synced flag, the values and the event, and the checkpoint or block holding it.

    Needs only the core: `python -m collector.tools.proof_check` does the same with cbor2 and
    cryptography alone.
    """
    from collector.tools.proof_check import KeyFileError, load_policy, render, to_json
    from provenance.logproof import verify_any_proof

    try:
        data = Path(proof_file).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {proof_file}: {exc.strerror}") from None
    try:
        policy = load_policy(collector_keys, vkeys, policy_file)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from None
    report = verify_any_proof(data, policy)
    click.echo(to_json(report) if as_json else render(report))
    if not report.ok:
        sys.exit(1)


@click.command("checkpoint", epilog="""\b
Examples:
  ledger-collector checkpoint > head.checkpoint
  ledger-collector checkpoint --size 1000
  ledger-collector checkpoint --cosigned -c collector.toml""")
@ledger_options
@click.option("--size", type=int, metavar="N", help="The checkpoint of tree size N "
              "[default: the latest].")
@click.option("--cosigned", is_flag=True, help="The freshest checkpoint that the witness "
              "quorum of the config cosigned, with the cosignatures.")
@click.option("--quorum", type=int, metavar="K", help="With --cosigned: needs K cosignatures "
              "[default: the config's witnessing.quorum].")
@handle_errors
def checkpoint_cmd(config_path: str | None, db: str | None, size: int | None, cosigned: bool,
                   quorum: int | None) -> None:
    """Print a signed checkpoint of the log (a C2SP signed note): origin, tree size, root,
    the note key's and the collector key's signatures, and the witnesses' cosignatures kept
    for it."""
    from collector.ledger.records import CheckpointRecord
    from collector.ledger.store import LedgerStore
    from collector.tools.proofs import cosigned_note, pick_checkpoint

    cfg = config(config_path, database=db)
    need = quorum if quorum is not None else cfg.witnessing.quorum

    async def pick(store: LedgerStore) -> bytes:
        cp: CheckpointRecord | None
        if cosigned:
            found = await store.freshest_cosigned(need)
            if found is None:
                raise NotFoundError(f"no checkpoint has {max(need, 1)} witness cosignature(s) "
                                    "yet; is the collector running with its witnesses "
                                    "reachable?")
            cp = await pick_checkpoint(store, found)
        else:
            cp = await pick_checkpoint(store, size)
        return await cosigned_note(store, cp)

    click.echo(on_ledger(cfg, pick).decode("utf-8"), nl=False)


@click.command("consistency", epilog="""\b
Example:
  ledger-collector consistency 1000 > 1000-to-head.proof""")
@ledger_options
@click.argument("old_size", type=int)
@click.argument("new_size", type=int, required=False)
@handle_errors
def consistency_cmd(config_path: str | None, db: str | None, old_size: int,
                    new_size: int | None) -> None:
    """Print the RFC 9162 consistency proof from tree size OLD_SIZE to the checkpoint at
    NEW_SIZE (default: the latest): `old OLD_SIZE`, then one base64 hash a line, then the
    checkpoint it proves, as in the body of a C2SP tlog-witness add-checkpoint request."""
    from collector.tools.proofs import build_consistency, consistency_text

    cfg = config(config_path, database=db)
    cp, path = on_ledger(cfg, lambda store: build_consistency(store, old_size, new_size))
    click.echo(consistency_text(old_size, path) + "\n" + cp.note.decode("utf-8"), nl=False)


@click.command("history", epilog="""\b
Example:
  ledger-collector history ess-rack-1 --from 0 --to 99999 -o ess-rack-1.history
  ledger-collector verify-history ess-rack-1.history --policy collector-key.vkey""")
@ledger_options
@click.argument("device_id")
@click.option("--from", "first", type=int, metavar="SEQ", help="First seq [default: the first].")
@click.option("--to", "last", type=int, metavar="SEQ", help="Last seq [default: the last].")
@click.option("--size", type=int, metavar="N",
              help="Prove against the checkpoint of tree size N [default: the latest].")
@click.option("-o", "--output", required=True, metavar="FILE", help="History file to write.")
@click.option("--reader-key", metavar="PEM",
              help="Also print the values of the range's private readings, opened with this "
                   "reader key and checked against their commitments (the file discloses "
                   "nothing).")
@handle_errors
def history_cmd(config_path: str | None, db: str | None, device_id: str, first: int | None,
                last: int | None, size: int | None, output: str,
                reader_key: str | None) -> None:
    """Write one file with every reading of DEVICE_ID in a seq range, the device key and the
    inclusion of each reading under one signed checkpoint: its complete history, checkable
    offline with `verify-history`."""
    from collector.tools.history import build_history

    cfg = config(config_path, database=db)
    hf = on_ledger(cfg, lambda store: build_history(store, device_id, first, last, size=size,
                                                    quorum=cfg.witnessing.quorum))
    data = hf.encode()
    Path(output).write_bytes(data)
    click.echo(f"wrote {output} ({len(data):,} bytes): {device_id} seqs "
               f"{hf.first_seq}..{hf.last_seq}, {len(hf.entries):,} readings", err=True)
    if reader_key is not None:
        from collector.tools.private_readings import load_reader_key, reveal_range

        shown, problems = reveal_range(cfg.database, device_id, hf.first_seq, hf.last_seq,
                                       load_reader_key(reader_key))
        for revealed in shown:
            click.echo(revealed.render())
        for problem in problems:
            click.echo(f"not revealed: {problem}", err=True)
        click.echo(f"{len(shown)} private reading(s) revealed, {len(problems)} not", err=True)


@click.command("verify-history", epilog="""\b
Example (offline: no database needed):
  ledger-collector verify-history ess-rack-1.history --policy collector-key.vkey""")
@click.argument("history_file", type=click.Path(dir_okay=False))
@click.option("--collector-key", "collector_keys", multiple=True, metavar="PEM",
              help="A trusted collector public key (PEM).")
@click.option("--vkey", "vkeys", multiple=True, metavar="KEY",
              help="A trusted note verifier key of the log. Repeatable.")
@click.option("--policy", "policy_file", metavar="FILE", help="A trust policy file.")
@handle_errors
def verify_history_cmd(history_file: str, collector_keys: tuple[str, ...],
                       vkeys: tuple[str, ...], policy_file: str | None) -> None:
    """Check a history file offline: every signature, that the seqs are complete except for
    ranges signed gap records cover, that the hash chain is unbroken except at boots, and the
    inclusion of every reading; then say what the history shows."""
    from collector.tools.proof_check import KeyFileError, load_policy
    from provenance.history import verify_history

    try:
        data = Path(history_file).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {history_file}: {exc.strerror}") from None
    try:
        policy = load_policy(collector_keys, vkeys, policy_file)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from None
    report = verify_history(data, policy)
    click.echo(report.render())
    if not report.ok:
        sys.exit(1)
