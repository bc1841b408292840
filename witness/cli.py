"""``ledger-witness``: init (make the witness key), serve, status, misbehaviour,
verify-misbehaviour. Exit codes: 0 ok, 1 a proof that does not verify, 2 usage or
configuration error."""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path

import click

from common.misbehaviour_cli import verify_misbehaviour_command
from provenance.cosignature import CosignatureSigner
from provenance.errors import ProvenanceError, SensorLedgerError
from witness.errors import WitnessConfigError

__all__ = ["cli", "main"]


def load_key(path: Path) -> CosignatureSigner:
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise WitnessConfigError(f"witness key {path}: {exc.strerror}; `ledger-witness init` "
                                 "makes one") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise WitnessConfigError(f"witness key {path} has mode {stat.S_IMODE(mode):04o}; run "
                                 f"`chmod 600 {path}`")
    try:
        return CosignatureSigner.from_skey(text)
    except ProvenanceError as exc:
        raise WitnessConfigError(f"witness key {path}: {exc.diagnostics()}") from None


def _fail(exc: SensorLedgerError) -> None:
    click.echo(f"error: {exc.diagnostics()}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sensorledger", prog_name="ledger-witness")
def cli() -> None:
    """SensorLedger witness: cosign a log's checkpoints (C2SP tlog-witness, cosignature/v1)
    only if each extends the last one cosigned, and keep proof of any that do not.

    \b
    First steps:
      ledger-witness init witness.example/w1 --key witness.key
      ledger-witness serve -c witness.toml
    """


@cli.command(epilog="""\b
Example:
  ledger-witness init witness.example/w1 --key /var/lib/ledger-witness/witness.key""")
@click.argument("name")
@click.option("--key", "key_file", required=True, metavar="FILE",
              help="Where to write the private key (mode 0600; never overwritten).")
def init(name: str, key_file: str) -> None:
    """Make the witness's Ed25519 key named NAME (a schema-less URL) and print its verifier key
    (name+hash+base64, type 0x04), which logs and verifiers put in their configs and policies."""
    try:
        signer = CosignatureSigner.generate(name)
    except ProvenanceError as exc:
        _fail(exc)
        return
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        _fail(WitnessConfigError(f"{key_file} exists; a witness keeps its key (print its "
                                 "verifier key with `ledger-witness vkey`)"))
        return
    with os.fdopen(fd, "w") as f:
        f.write(signer.skey + "\n")
        f.flush()
        os.fsync(f.fileno())
    click.echo(signer.verifier.vkey)


@cli.command(epilog="""\b
Example:
  ledger-witness vkey --key /var/lib/ledger-witness/witness.key""")
@click.option("--key", "key_file", required=True, metavar="FILE", help="The witness key file.")
def vkey(key_file: str) -> None:
    """Print the witness's verifier key."""
    try:
        click.echo(load_key(Path(key_file)).verifier.vkey)
    except SensorLedgerError as exc:
        _fail(exc)


@cli.command(epilog="""\b
Example:
  ledger-witness serve -c /etc/ledger-witness/witness.toml""")
@click.option("-c", "--config", "config_path", required=True, metavar="FILE")
@click.option("--port", type=int, help="Listen on this port instead of the config's.")
def serve(config_path: str, port: int | None) -> None:
    """Serve POST /add-checkpoint and GET /<origin hash>/checkpoint until SIGTERM."""
    import uvicorn

    from witness.config import load_config
    from witness.cosigning import Witness
    from witness.http import make_app
    from witness.state import State

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(config_path)
        signer = load_key(config.key_file)
        state = State(config.database)
    except SensorLedgerError as exc:
        _fail(exc)
        return
    app = make_app(Witness(signer, config.logs, state))
    click.echo(f"witness {signer.verifier.vkey} on {config.host}:{port or config.port}, "
               f"{len(config.logs)} log(s)", err=True)
    uvicorn.run(app, host=config.host, port=port or config.port, log_level="warning",
                access_log=False)


@cli.command(epilog="""\b
Example:
  ledger-witness status -c /etc/ledger-witness/witness.toml""")
@click.option("-c", "--config", "config_path", required=True, metavar="FILE")
def status(config_path: str) -> None:
    """Print the latest cosigned size and root of each log, and the misbehaviour kept."""
    from witness.config import load_config
    from witness.state import State

    try:
        config = load_config(config_path)
        state = State(config.database)
    except SensorLedgerError as exc:
        _fail(exc)
        return
    held = {s.origin: s for s in state.logs()}
    for origin in config.logs:
        s = held.get(origin)
        click.echo(f"{origin}: " + (f"size {s.size} root {s.root.hex()}" if s else
                                    "nothing cosigned yet"))
    for row in state.misbehaviour():
        click.echo(f"misbehaviour #{row[0]}: log {row[1]} {row[2]}")


@cli.command(epilog="""\b
Example:
  ledger-witness misbehaviour -c /etc/ledger-witness/witness.toml -o evidence/""")
@click.option("-c", "--config", "config_path", required=True, metavar="FILE")
@click.option("-o", "--output", "out_dir", required=True, metavar="DIR",
              help="Folder to write each proof into (misbehaviour-N.txt).")
def misbehaviour(config_path: str, out_dir: str) -> None:
    """Write every proof of misbehaviour this witness kept, one file each."""
    from witness.config import load_config
    from witness.state import State

    try:
        state = State(load_config(config_path).database)
    except SensorLedgerError as exc:
        _fail(exc)
        return
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for number, origin, kind, proof, _ in state.misbehaviour():
        path = Path(out_dir) / f"misbehaviour-{number}.txt"
        path.write_bytes(proof)
        click.echo(f"{path}: log {origin} {kind}")


cli.add_command(verify_misbehaviour_command("ledger-witness"))


def main() -> None:
    cli(prog_name="ledger-witness")
