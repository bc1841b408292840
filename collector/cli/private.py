"""Private readings: ``reveal`` a reading's values with a reader key, ``erase`` a subject's,
``erasures`` lists what was erased (docs/privacy.md)."""

from __future__ import annotations

import json
import sys

import click

from collector.cli.common import config, handle_errors, ledger_options, now_ms

__all__ = ["erase_cmd", "erasures_cmd", "readers", "reveal_cmd"]


@click.command("reveal", epilog="""\b
Example:
  ledger-collector reveal ward3-bed12 42 --reader-key clinic-reader.pem""")
@ledger_options
@click.argument("device_id")
@click.argument("seq", type=int)
@click.option("--reader-key", required=True, metavar="PEM",
              help="The reader's private key (P-256, PEM), enrolled in the agent's readers.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@handle_errors
def reveal_cmd(config_path: str | None, db: str | None, device_id: str, seq: int,
               reader_key: str, as_json: bool) -> None:
    """Decrypt a private reading's values with a reader key, check them against the
    commitment the device signed, and print them."""
    from collector.tools.private_readings import load_reader_key, reveal
    from provenance.prooffile import reading_to_json

    cfg = config(config_path, database=db)
    revealed = reveal(cfg.database, device_id, seq, load_reader_key(reader_key))
    if as_json:
        from dataclasses import replace

        shown = reading_to_json(replace(revealed.reading, commitment=None,
                                        measurements=revealed.measurements,
                                        event=revealed.event))
        shown["commitment"] = revealed.reading.commitment.hex() if (
            revealed.reading.commitment) else None
        shown["subject"] = revealed.subject
        click.echo(json.dumps(shown, indent=2))
        return
    click.echo(revealed.render())


@click.command("erase", epilog="""\b
Example (the collector stopped: erase takes the ledger to itself for about a minute):
  ledger-collector erase --subject patient-0017 --authority "request 2026-113, DPO J. Kim\"""")
@ledger_options
@click.option("--subject", required=True, help="Whose sealed values to destroy.")
@click.option("--authority", default="operator", show_default=True,
              help="On whose authority (a request number, an officer); goes into the signed "
                   "erasure record.")
@click.option("--key", "key_file", metavar="PEM", help="Collector key that signs the record "
              "[default: the config's key_file].")
@handle_errors
def erase_cmd(config_path: str | None, db: str | None, subject: str, authority: str,
              key_file: str | None) -> None:
    """Destroy a subject's sealed values and data-key grants, with every copy in the WAL and
    free pages, and record a signed erasure. Signed readings, proofs and the audit stay intact.
    Killed half-way, it has erased everything or nothing; run it again to finish."""
    from collector.ledger.opening import is_postgres_url
    from collector.ledger.private_vault import erase_subject
    from provenance.keyfile import load_private_key

    overrides = {"key_file": key_file} if key_file else {}
    cfg = config(config_path, database=db, **overrides)
    key = load_private_key(cfg.key_file)
    result = erase_subject(cfg.database, subject, authority=authority, key=key,
                           now_ms=now_ms())
    what = "finished erasure" if result.resumed else "erased"
    scrubbed = ("tables rewritten (VACUUM FULL); the WAL, its archives and standbys keep "
                "older copies until they are recycled" if is_postgres_url(cfg.database)
                else "WAL emptied")
    click.echo(f"{what} #{result.erasure_id}: subject {subject}, sealed values of "
               f"{result.readings} reading(s), {result.keys} data key(s); database "
               f"{result.db_bytes_before:,} -> {result.db_bytes_after:,} bytes, {scrubbed}")
    if result.statement_id is not None:
        click.echo(f"the erase statement is log row {result.statement_id}; the next "
                   "`ledger-collector run` seals it into a block")


@click.command("erasures", epilog="""\b
Example:
  ledger-collector erasures --db ledger.db""")
@ledger_options
@handle_errors
def erasures_cmd(config_path: str | None, db: str | None) -> None:
    """List the erasures carried out (and any left unfinished), with their signed records."""
    from collector.tools.erasures import check_erasures

    cfg = config(config_path, database=db)
    lines, ok = check_erasures(cfg.database)
    for line in lines:
        click.echo(line)
    if not ok:
        sys.exit(1)



@click.group("readers")
def readers() -> None:
    """Readers of private readings: who holds grants in this ledger, and revoking them."""


@readers.command("list", epilog="""\b
Example:
  ledger-collector readers list --db ledger.db""")
@ledger_options
@handle_errors
def readers_list(config_path: str | None, db: str | None) -> None:
    """Every reader key id holding grants, with how many subjects and data keys."""
    from collector.ledger.private_vault import open_vault

    cfg = config(config_path, database=db)
    with open_vault(cfg.database) as vault:
        rows = vault.readers()
    if not rows:
        click.echo("no reader holds a grant")
    for kid, subjects, keys in rows:
        click.echo(f"{kid.hex()}  {subjects} subject(s), {keys} data key(s)")


@readers.command("revoke", epilog="""\b
Example (after removing the reader from the agents' [private] readers and rotating keys):
  ledger-collector readers revoke 3f9a12c4""")
@ledger_options
@click.argument("reader_kid")
@handle_errors
def readers_revoke(config_path: str | None, db: str | None, reader_kid: str) -> None:
    """Delete every grant READER_KID (a unique prefix of 8+ hex digits) holds here, so that
    key opens nothing stored in this ledger any more."""
    from collector.ledger.opening import is_postgres_url
    from collector.ledger.private_vault import drop_reader

    cfg = config(config_path, database=db)
    kid, count, emptied = drop_reader(cfg.database, reader_kid)
    if is_postgres_url(cfg.database):
        left = ("; table rewritten (VACUUM FULL); the WAL, its archives and standbys keep "
                "older copies until they are recycled")
    else:
        left = "" if emptied else ("; the WAL is still in use and is emptied at the "
                                   "collector's next checkpoint")
    click.echo(f"reader {kid.hex()}: {count} grant(s) deleted{left}")
