"""Setting a ledger up and running it: ``init`` and ``run``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from collector.cli.common import config, handle_errors, ledger_options, open_ledger, run
from collector.errors import CollectorError, ConfigError, UsageError
from collector.ledger.logkeys import check_log_name, ensure_log_keys, note_key_path
from collector.logs import setup_logging
from provenance.errors import ProvenanceError
from provenance.keyfile import load_private_key, save_private_key
from provenance.keys import PrivateKey, PublicKey

__all__ = ["check", "init", "run_command"]


@click.command(epilog="""\b
Example:
  ledger-collector init --db /var/lib/sensorledger/ledger.db \\
      --key /etc/sensorledger/collector-key.pem""")
@ledger_options
@click.option("--key", "key_file", metavar="PEM",
              help="Collector private key; created (mode 0600) if absent.")
@click.option("--log-name", metavar="ORIGIN",
              help="The log's name, the first line of its checkpoints, e.g. "
                   "sensorledger.example/water-busan [default: sensorledger.invalid/DB-NAME].")
@handle_errors
def init(config_path: str | None, db: str | None, key_file: str | None,
         log_name: str | None) -> None:
    """Create the ledger database, the collector signing key and the log's note key.

    Safe to run again: existing keys are reused and pending schema migrations are applied.
    Writes the public key next to the private one (KEY.pub.pem) and the note verifier key
    (KEY.vkey, `name+hash+base64`): auditors need them for `verify-proof` and `audit`.
    A ledger made by an older collector is upgraded with `ledger-collector migrate`.
    """
    cfg = config(config_path, database=db, key_file=key_file)
    vkeys: list[str] = []

    async def go() -> tuple[PublicKey, Path]:
        path = Path(cfg.key_file)
        fresh = not path.exists()
        key = PrivateKey.generate() if fresh else load_private_key(path)
        async with open_ledger(cfg, create=True) as store:
            if log_name is not None:
                check_log_name(log_name)
            origin = await store.log_origin()
            if origin is not None and log_name is not None and log_name != origin:
                raise ConfigError(f"{cfg.database} is log {origin!r}; its name does not change")
            stored = await store.collector_public_key()
            if stored is not None and stored.kid != key.kid:
                # Refused before anything is written: no stray key file is left behind.
                raise ConfigError(
                    f"{cfg.database} was created with collector key {stored.kid_hex}, "
                    f"not {key.kid.hex()} ({path})"
                )
            if fresh:
                save_private_key(key, path)
            if stored is None:
                await store.set_collector_public_key(key.public)
            if origin is None and await store.last_block() is None:
                origin = log_name or f"sensorledger.invalid/{Path(cfg.database).stem}"
                await store.set_log_identity(origin, ensure_log_keys(origin, key, path))
            vkeys.extend(await store.log_vkeys())
        pub = path.with_name(path.name.removesuffix(".pem") + ".pub.pem")
        pub.write_text(key.public.to_pem())
        return key.public, pub

    public, pub_path = run(go())
    click.echo(f"ledger:         {cfg.database}")
    click.echo(f"collector key:  {cfg.key_file}")
    click.echo(f"public key:     {pub_path}")
    click.echo(f"collector kid:  {public.kid_hex}")
    if vkeys:
        click.echo(f"log name:       {vkeys[0].split('+')[0]}")
        click.echo(f"note key:       {note_key_path(cfg.key_file)}")
        for vkey in vkeys:
            click.echo(f"verifier key:   {vkey}")
    else:
        click.echo("this ledger predates the one log tree: run `ledger-collector migrate`")


@click.command("run", epilog="""\b
Examples:
  ledger-collector run --config /etc/sensorledger/collector.toml
  ledger-collector run --db ledger.db --key collector-key.pem \\
      --broker mqtts://broker.example:8883 --tls-ca ca.crt \\
      --tls-cert collector.crt --tls-key collector.key --block-size 1000 --block-age 1""")
@ledger_options
@click.option("--key", "key_file", metavar="PEM", help="Collector private key.")
@click.option("--broker", metavar="URL", help="mqtt://[user:pass@]host[:port] or mqtts://...")
@click.option("--client-id", metavar="ID", help="Fixed MQTT client id (persistent session).")
@click.option("--tls-ca", metavar="FILE", help="CA certificate(s) to trust for the broker.")
@click.option("--tls-cert", metavar="FILE", help="Client certificate.")
@click.option("--tls-key", metavar="FILE", help="Client certificate's private key.")
@click.option("--block-size", type=int, metavar="N", help="Seal a block at N readings.")
@click.option("--block-age", type=float, metavar="SECONDS",
              help="Seal a block when its oldest reading is this old.")
@click.option("--workers", type=int, metavar="N",
              help="Verification processes (0: one per core; 1: in this process).")
@click.option("--max-clock-skew", type=float, metavar="SECONDS",
              help="Quarantine readings whose device time is further ahead than this.")
@click.option("--log-format", type=click.Choice(["json", "kv"]), help="Log line format.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--protocol", type=click.Choice(["3.1.1", "5"]), help="MQTT protocol version.")
@click.option("--share-group", metavar="GROUP",
              help="Subscribe with the MQTT 5 shared subscription $share/GROUP/...: the "
                   "broker spreads readings over the collectors of the group (PostgreSQL "
                   "ledger; each collector needs its own --client-id).")
@click.option("--receipts/--no-receipts", default=None,
              help="Publish signed receipts to the agents (default: on).")
@click.option("--metrics-listen", metavar="HOST:PORT",
              help="Serve Prometheus /metrics and /health here (config: metrics.listen).")
@handle_errors
def run_command(config_path: str | None, db: str | None, key_file: str | None,
                broker: str | None, protocol: str | None, receipts: bool | None,
                client_id: str | None,
                tls_ca: str | None, tls_cert: str | None, tls_key: str | None,
                block_size: int | None, block_age: float | None, workers: int | None,
                max_clock_skew: float | None, log_format: str | None,
                log_level: str | None, share_group: str | None,
                metrics_listen: str | None) -> None:
    """Ingest readings from MQTT until SIGTERM or Ctrl-C.

    Subscribes to sensorledger/v1/+/reading with QoS 1 on a persistent session, verifies each
    envelope, commits readings in batches and acknowledges them only after the commit, and
    seals blocks by size or age. Logs one JSON (or key=value) event per line on stderr.
    """
    from collector.service import run_collector

    cfg = config(
        config_path, database=db, key_file=key_file, mqtt__url=broker, mqtt__protocol=protocol,
        mqtt__client_id=client_id, mqtt__share_group=share_group, mqtt__receipts=receipts,
        mqtt__tls__ca_file=tls_ca, mqtt__tls__cert_file=tls_cert, mqtt__tls__key_file=tls_key,
        blocks__size=block_size, blocks__age=block_age, ingest__verify_workers=workers,
        ingest__max_clock_skew=max_clock_skew, log__format=log_format, log__level=log_level,
        metrics__listen=metrics_listen,
    )
    setup_logging(cfg.log.format, cfg.log.level)
    try:
        run(run_collector(cfg))
    except UsageError:
        raise
    except (CollectorError, ProvenanceError) as exc:
        click.echo(f"error: the collector stopped: {exc.diagnostics()}", err=True)
        sys.exit(1)


@click.command(epilog="""\b
Examples:
  ledger-collector check
  ledger-collector check -c /etc/sensorledger/collector.toml""")
@click.option("-c", "--config", "config_path", metavar="TOML",
              envvar="SENSORLEDGER_COLLECTOR_CONFIG",
              help="Configuration file [default: /etc/sensorledger/collector.toml].")
def check(config_path: str | None) -> None:
    """Check the configuration and the files it names; report every problem, start nothing.

    Reports each problem at its file:line (unknown keys with a "did you mean"), then checks
    the collector key, the ledger database, the TLS files and the password file. Exit code 0
    when all is well, 2 otherwise.
    """
    from collector.config import check_config
    from provenance.configfile import describe

    report = check_config(config_path)
    if report.problems:
        click.echo(describe(report.where, report.problems), err=True)
        sys.exit(2)
    click.echo("\n".join(report.summary))
