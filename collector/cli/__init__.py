"""``ledger-collector``: the collector's command line.

Thin click commands over the library. Exit codes: 0 success; 1 verification failure (``audit``,
``verify-proof``) or a collector that stopped on an error (``run``); 2 the command could not be
carried out as asked (usage, configuration, missing ledger, device or reading).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography.exceptions import UnsupportedAlgorithm

from collector.admission.registry import check_enrolment_device_id, parse_enrolment_text
from collector.config import CollectorConfig, load_config
from collector.errors import (
    CollectorError,
    ConfigError,
    NotFoundError,
    UsageError,
    VerificationFailed,
)
from collector.ledger.sqlite_store import SQLiteStore
from collector.logs import setup_logging
from provenance.errors import ProvenanceError
from provenance.keyfile import load_private_key, save_private_key
from provenance.keys import PrivateKey, PublicKey

__all__ = ["cli", "main"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def _iso(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def parse_time(text: str) -> int:
    """``now``, milliseconds since the epoch, or an ISO 8601 time (UTC unless it says)."""
    text = text.strip()
    if text == "now":
        return _now_ms()
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{text!r} is not 'now', epoch milliseconds or an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _errors(fn: F) -> F:
    """Map collector errors to a one-line message and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VerificationFailed as exc:
            click.echo(exc.diagnostics(), err=True)
            sys.exit(1)
        except UsageError as exc:
            click.echo(f"error: {exc.diagnostics()}", err=True)
            sys.exit(2)
        except (CollectorError, ProvenanceError) as exc:
            click.echo(f"error: {exc.diagnostics()}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _ledger_options(fn: F) -> F:
    fn = click.option("--db", "db", metavar="PATH", envvar="SENSORLEDGER_DB",
                      help="Ledger database (overrides the config's `database`).")(fn)
    fn = click.option("-c", "--config", "config_path", metavar="TOML",
                      envvar="SENSORLEDGER_COLLECTOR_CONFIG",
                      help="Collector configuration file (see deploy/collector.toml.example).")(fn)
    return fn


def _config(config_path: str | None, **overrides: Any) -> CollectorConfig:
    return load_config(config_path, {k.replace("__", "."): v for k, v in overrides.items()})


async def _open(config: CollectorConfig) -> SQLiteStore:
    return await SQLiteStore.open(config.database)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sensorledger", prog_name="ledger-collector")
def cli() -> None:
    """SensorLedger collector: verify signed sensor readings arriving over MQTT, seal them into
    a Merkle-rooted, hash-chained ledger, and audit, export and prove what it holds.

    \b
    Typical first steps:
      ledger-collector init --db ledger.db --key collector-key.pem
      sensor-agent pubkey | ledger-collector devices add --db ledger.db water-01 -
      ledger-collector run --db ledger.db --key collector-key.pem --broker mqtt://localhost

    Exit codes: 0 ok, 1 verification failure, 2 usage or configuration error.
    """


# init ------------------------------------------------------------------------------------------

@cli.command(epilog="""\b
Example:
  ledger-collector init --db /var/lib/sensorledger/ledger.db \\
      --key /etc/sensorledger/collector-key.pem""")
@_ledger_options
@click.option("--key", "key_file", metavar="PEM",
              help="Collector private key; created (mode 0600) if absent.")
@_errors
def init(config_path: str | None, db: str | None, key_file: str | None) -> None:
    """Create the ledger database and the collector signing key.

    Safe to run again: an existing key is reused and pending schema migrations are applied.
    Writes the public key next to the private one (KEY.pub.pem): auditors need it for
    `verify-proof` and `audit --collector-key`.
    """
    cfg = _config(config_path, database=db, key_file=key_file)

    async def go() -> tuple[PublicKey, Path]:
        path = Path(cfg.key_file)
        if path.exists():
            key = load_private_key(path)
        else:
            key = PrivateKey.generate()
            save_private_key(key, path)
        store = await SQLiteStore.open(cfg.database, create=True)
        try:
            stored = await store.collector_public_key()
            if stored is None:
                await store.set_collector_public_key(key.public)
            elif stored.kid != key.kid:
                raise ConfigError(
                    f"{cfg.database} was created with collector key {stored.kid_hex}, "
                    f"not {key.kid.hex()} ({path})"
                )
        finally:
            await store.close()
        pub = path.with_name(path.name.removesuffix(".pem") + ".pub.pem")
        pub.write_text(key.public.to_pem())
        return key.public, pub

    public, pub_path = _run(go())
    click.echo(f"ledger:         {cfg.database}")
    click.echo(f"collector key:  {cfg.key_file}")
    click.echo(f"public key:     {pub_path}")
    click.echo(f"collector kid:  {public.kid_hex}")


# run -------------------------------------------------------------------------------------------

@cli.command(epilog="""\b
Examples:
  ledger-collector run --config /etc/sensorledger/collector.toml
  ledger-collector run --db ledger.db --key collector-key.pem \\
      --broker mqtts://broker.example:8883 --tls-ca ca.crt \\
      --tls-cert collector.crt --tls-key collector.key --block-size 1000 --block-age 1""")
@_ledger_options
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
@_errors
def run(config_path: str | None, db: str | None, key_file: str | None, broker: str | None,
        protocol: str | None,
        client_id: str | None, tls_ca: str | None, tls_cert: str | None, tls_key: str | None,
        block_size: int | None, block_age: float | None, workers: int | None,
        max_clock_skew: float | None, log_format: str | None, log_level: str | None) -> None:
    """Ingest readings from MQTT until SIGTERM or Ctrl-C.

    Subscribes to sensorledger/v1/+/reading with QoS 1 on a persistent session, verifies each
    envelope, commits readings in batches and acknowledges them only after the commit, and
    seals blocks by size or age. Logs one JSON (or key=value) event per line on stderr.
    """
    from collector.service import run_collector

    cfg = _config(
        config_path, database=db, key_file=key_file, mqtt__url=broker, mqtt__protocol=protocol,
        mqtt__client_id=client_id,
        mqtt__tls__ca_file=tls_ca, mqtt__tls__cert_file=tls_cert, mqtt__tls__key_file=tls_key,
        blocks__size=block_size, blocks__age=block_age, ingest__verify_workers=workers,
        ingest__max_clock_skew=max_clock_skew, log__format=log_format, log__level=log_level,
    )
    setup_logging(cfg.log.format, cfg.log.level)
    try:
        _run(run_collector(cfg))
    except UsageError:
        raise
    except (CollectorError, ProvenanceError) as exc:
        click.echo(f"error: the collector stopped: {exc.diagnostics()}", err=True)
        sys.exit(1)


# devices ---------------------------------------------------------------------------------------

@cli.group()
def devices() -> None:
    """Enrol, list and revoke device keys."""


@devices.command("add", epilog="""\b
Examples:
  sensor-agent pubkey | ledger-collector devices add water-01 -
  ledger-collector devices add bms-07 bms-07.pub.pem --kid 3f9a…""")
@_ledger_options
@click.argument("device_id")
@click.argument("pem", type=click.File("r"), default="-")
@click.option("--kid", metavar="HEX", help="Refuse unless the key's id is this (64 hex digits).")
@_errors
def devices_add(config_path: str | None, db: str | None, device_id: str, pem: Any,
                kid: str | None) -> None:
    """Enrol PEM (a public key file, or - for stdin) as a key of DEVICE_ID.

    Accepts what `sensor-agent pubkey` prints: the PEM block, with or without a key id line
    beside it; a key id printed with the key must match the key.
    """
    check_enrolment_device_id(device_id)
    enrolment = parse_enrolment_text(pem.read(), expected_kid=kid)
    if enrolment.device_id is not None and enrolment.device_id != device_id:
        raise UsageError(f"the key was printed for device {enrolment.device_id!r}, "
                         f"not {device_id!r}")
    key = enrolment.key
    cfg = _config(config_path, database=db)

    async def go() -> None:
        store = await _open(cfg)
        try:
            await store.enrol(device_id, key, _now_ms())
        finally:
            await store.close()

    _run(go())
    click.echo(f"enrolled {device_id} key {key.kid_hex}")


@devices.command("list", epilog="""\b
Example:
  ledger-collector devices list --json""")
@_ledger_options
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@_errors
def devices_list(config_path: str | None, db: str | None, as_json: bool) -> None:
    """List enrolled device keys and their revocation state."""
    cfg = _config(config_path, database=db)

    async def go() -> list[Any]:
        store = await _open(cfg)
        try:
            return await store.device_keys()
        finally:
            await store.close()

    keys = _run(go())
    if as_json:
        click.echo(json.dumps([{
            "device_id": k.device_id, "kid": k.kid.hex(), "enrolled_ms": k.enrolled_ms,
            "revoked_ms": k.revoked_ms, "revoke_reason": k.revoke_reason,
            "public_key_pem": PublicKey.from_der(k.public_key_der).to_pem(),
        } for k in keys], indent=2))
        return
    click.echo(f"{'device':<20} {'key id':<64} {'enrolled':<25} status")
    for k in keys:
        status = ("active" if k.revoked_ms is None
                  else f"revoked from {_iso(k.revoked_ms)}"
                  + (f" ({k.revoke_reason})" if k.revoke_reason else ""))
        click.echo(f"{k.device_id:<20} {k.kid.hex():<64} {_iso(k.enrolled_ms):<25} {status}")


@devices.command("revoke", epilog="""\b
Examples:
  ledger-collector devices revoke water-01 --reason "probe replaced"
  ledger-collector devices revoke water-01 --kid 3f9a… --at 2026-03-01T00:00:00Z""")
@_ledger_options
@click.argument("device_id")
@click.option("--kid", metavar="HEX", help="Revoke only this key (default: every key).")
@click.option("--at", "at", default="now", show_default=True, metavar="TIME",
              help="Effective time: readings signed at or after it are refused "
                   "(ISO 8601, epoch ms, or now).")
@click.option("--reason", metavar="TEXT", help="Why, for the record.")
@_errors
def devices_revoke(config_path: str | None, db: str | None, device_id: str, kid: str | None,
                   at: str, reason: str | None) -> None:
    """Revoke DEVICE_ID's key(s) from an effective time on."""
    at_ms = parse_time(at)
    try:
        kid_bytes = bytes.fromhex(kid) if kid else None
    except ValueError:
        raise UsageError(f"--kid {kid!r} is not hex") from None
    cfg = _config(config_path, database=db)

    async def go() -> list[Any]:
        store = await _open(cfg)
        try:
            return await store.revoke(device_id, kid_bytes, at_ms, reason)
        finally:
            await store.close()

    revoked = _run(go())
    for k in revoked:
        click.echo(f"revoked {device_id} key {k.kid.hex()} from {_iso(at_ms)}")
    if not revoked:
        click.echo(f"{device_id}: every key was already revoked at or before {_iso(at_ms)}")


# blocks ------------------------------------------------------------------------------------------

@cli.command(epilog="""\b
Examples:
  ledger-collector blocks                # the last 20 blocks
  ledger-collector blocks 42 --json      # one block's signed header""")
@_ledger_options
@click.argument("height", type=int, required=False)
@click.option("--from", "start", type=int, metavar="H", help="List from height H.")
@click.option("--limit", type=int, default=20, show_default=True, help="Blocks to list.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@_errors
def blocks(config_path: str | None, db: str | None, height: int | None, start: int | None,
           limit: int, as_json: bool) -> None:
    """List blocks, or show block HEIGHT."""
    from provenance.block import SignedBlock

    cfg = _config(config_path, database=db)

    async def go() -> list[Any]:
        store = await _open(cfg)
        try:
            if height is not None:
                block = await store.block(height)
                if block is None:
                    raise NotFoundError(f"there is no block {height}")
                return [block]
            first = start
            if first is None:
                last = await store.last_block()
                first = max(0, (last.height + 1 if last else 0) - limit)
            return await store.blocks(first, limit)
        finally:
            await store.close()

    records = _run(go())
    rows = []
    for b in records:
        h = SignedBlock.decode(b.header).header
        rows.append({
            "height": b.height, "hash": b.hash.hex(), "prev_hash": h.prev_hash.hex(),
            "merkle_root": h.merkle_root.hex(), "leaf_count": h.leaf_count,
            "first_reading_id": b.first_reading_id, "first_time_ms": h.first_time_ms,
            "last_time_ms": h.last_time_ms, "sealed_at_ms": h.sealed_at_ms,
            "collector_kid": h.collector_kid.hex(),
        })
    if as_json:
        click.echo(json.dumps(rows[0] if height is not None else rows, indent=2))
    elif height is not None:
        for k, v in rows[0].items():
            click.echo(f"{k:<17} {v}")
        click.echo(f"{'sealed_at':<17} {_iso(rows[0]['sealed_at_ms'])}")
    else:
        click.echo(f"{'height':>7} {'leaves':>7} {'first_id':>9} {'sealed (UTC)':<26} hash")
        for r in rows:
            click.echo(f"{r['height']:>7} {r['leaf_count']:>7} {r['first_reading_id']:>9} "
                       f"{_iso(r['sealed_at_ms']):<26} {r['hash']}")


# readings --------------------------------------------------------------------------------------

@cli.command(epilog="""\b
Examples:
  ledger-collector readings --device water-01 --since 2026-05-01T00:00Z -o water-01.csv
  ledger-collector readings --format jsonl --since now | jq .""")
@_ledger_options
@click.option("--device", metavar="ID", help="Only this device.")
@click.option("--since", metavar="TIME", help="Device time at or after (ISO 8601 or epoch ms).")
@click.option("--until", metavar="TIME", help="Device time before.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv",
              show_default=True)
@click.option("-o", "--output", type=click.File("w"), default="-", help="Output file.")
@click.option("--with-envelope", is_flag=True, help="Include the envelope bytes (hex).")
@_errors
def readings(config_path: str | None, db: str | None, device: str | None, since: str | None,
             until: str | None, fmt: str, output: Any, with_envelope: bool) -> None:
    """Export readings as CSV or JSON Lines, with their block and leaf index."""
    from collector.tools.export import export_readings

    cfg = _config(config_path, database=db)
    since_ms = parse_time(since) if since else None
    until_ms = parse_time(until) if until else None

    async def go() -> int:
        store = await _open(cfg)
        try:
            return await export_readings(store, output, fmt=fmt, device_id=device,
                                         since_ms=since_ms, until_ms=until_ms,
                                         with_envelope=with_envelope)
        finally:
            await store.close()

    count = _run(go())
    click.echo(f"{count} readings exported", err=True)


# proofs ----------------------------------------------------------------------------------------

@cli.command(epilog="""\b
Example:
  ledger-collector proof water-01 1234 -o water-01-1234.proof
  ledger-collector verify-proof water-01-1234.proof --collector-key collector-key.pub.pem""")
@_ledger_options
@click.argument("device_id")
@click.argument("seq", type=int)
@click.option("-o", "--output", required=True, metavar="FILE", help="Proof file to write (CBOR).")
@click.option("--json", "as_json", is_flag=True, help="Also print the readable JSON rendering.")
@_errors
def proof(config_path: str | None, db: str | None, device_id: str, seq: int, output: str,
          as_json: bool) -> None:
    """Write a self-contained proof file for reading DEVICE_ID SEQ."""
    from collector.tools.proofs import build_proof

    cfg = _config(config_path, database=db)

    async def go() -> Any:
        store = await _open(cfg)
        try:
            return await build_proof(store, device_id, seq)
        finally:
            await store.close()

    pf = _run(go())
    data = pf.encode()
    Path(output).write_bytes(data)
    if as_json:
        click.echo(json.dumps(pf.to_json(), indent=2))
    click.echo(f"wrote {output} ({len(data)} bytes): {device_id} seq {seq}, leaf "
               f"{pf.leaf_index}, {len(pf.audit_path)}-node audit path", err=True)


@cli.command("verify-proof", epilog="""\b
Example (offline: no database needed):
  ledger-collector verify-proof water-01-1234.proof --collector-key collector-key.pub.pem""")
@click.argument("proof_file", type=click.Path(dir_okay=False))
@click.option("--collector-key", required=True, metavar="PEM",
              help="The collector's public key, obtained from its operator.")
@click.option("--json", "as_json", is_flag=True, help="JSON report.")
@_errors
def verify_proof_cmd(proof_file: str, collector_key: str, as_json: bool) -> None:
    """Check a proof file offline and print every check it made."""
    try:
        data = Path(proof_file).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {proof_file}: {exc.strerror}") from None
    from provenance.prooffile import verify_proof

    key = _load_public_key(collector_key)
    report = verify_proof(data, key)
    click.echo(report.to_json() if as_json else report.render())
    if not report.ok:
        sys.exit(1)


def _load_public_key(path: str) -> PublicKey:
    try:
        return PublicKey.from_pem(Path(path).read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read collector key {path}: {exc.strerror}") from None
    except (ProvenanceError, UnsupportedAlgorithm) as exc:
        detail = exc.diagnostics() if isinstance(exc, ProvenanceError) else str(exc)
        raise UsageError(f"{path}: not a P-256 public key: {detail}") from None


# audit -----------------------------------------------------------------------------------------

@cli.command(epilog="""\b
Examples:
  ledger-collector audit --db ledger.db --collector-key collector-key.pub.pem
  ledger-collector audit --json > audit.json
  ledger-collector audit --anchor 1234:9f86d081884c7d65…  # a head recorded last month""")
@_ledger_options
@click.option("--collector-key", metavar="PEM",
              help="Trusted collector public key (default: the key recorded in the ledger).")
@click.option("--workers", type=int, default=0, show_default=True,
              help="Verification processes (0: one per core).")
@click.option("--json", "as_json", is_flag=True, help="JSON report on stdout.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@click.option("--anchor", "anchors", multiple=True, metavar="HEIGHT:HASH",
              help="A block hash recorded earlier elsewhere; fail unless the ledger still "
                   "has it (catches a cut-off or re-sealed chain). Repeatable.")
@_errors
def audit(config_path: str | None, db: str | None, collector_key: str | None, workers: int,
          as_json: bool, progress: bool | None, anchors: tuple[str, ...]) -> None:
    """Re-verify the whole ledger; name the first broken block and reading.

    Checks every device signature, every block signature, Merkle root and chain link, that
    heights are contiguous and that every reading row is present and matches what its device
    signed. Exit 0 when all holds, 1 otherwise.
    """
    from collector.admission.workers import WorkerPool
    from collector.tools.audit import run_audit

    cfg = _config(config_path, database=db)
    trusted = _load_public_key(collector_key) if collector_key else None
    show = sys.stderr.isatty() if progress is None else progress
    pinned = [_parse_anchor(a) for a in anchors]

    async def go() -> Any:
        store = await _open(cfg)
        pool = WorkerPool(workers or (os.cpu_count() or 1))
        try:
            key = trusted or await store.collector_public_key()
            if key is None:
                raise UsageError("the ledger records no collector key; pass --collector-key")
            total = await store.reading_count()
            await pool.start()
            age_ms = int(cfg.blocks.age * 1000)
            if not show:
                return await run_audit(store, key, pool, anchors=pinned, block_age_ms=age_ms)
            with click.progressbar(length=total, label="auditing", file=sys.stderr,
                                   show_pos=True, show_eta=True) as bar:
                return await run_audit(store, key, pool, progress=bar.update, anchors=pinned,
                                       block_age_ms=age_ms)
        finally:
            await pool.close()
            await store.close()

    report = _run(go())
    click.echo(report.to_json() if as_json else report.render())
    if not report.ok:
        sys.exit(1)


def _parse_anchor(text: str) -> tuple[int, bytes]:
    height, _, digest = text.partition(":")
    try:
        value = (int(height), bytes.fromhex(digest))
    except ValueError:
        value = (-1, b"")
    if value[0] < 0 or len(value[1]) != 32:
        raise UsageError(f"--anchor {text!r} must be HEIGHT:HASH (64 hex digits)")
    return value


# stats and quarantine ----------------------------------------------------------------------------

@cli.command(epilog="""\b
Examples:
  ledger-collector stats
  ledger-collector stats --device water-01 --json""")
@_ledger_options
@click.option("--device", metavar="ID", help="Only this device.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@_errors
def stats(config_path: str | None, db: str | None, device: str | None, as_json: bool) -> None:
    """Ledger totals and per-device health: last seq, gaps, chain breaks, skew, quarantine."""
    from collector.tools.stats import collect_stats

    cfg = _config(config_path, database=db)

    async def go() -> Any:
        store = await _open(cfg)
        try:
            return await collect_stats(store, device)
        finally:
            await store.close()

    result = _run(go())
    click.echo(result.to_json() if as_json else result.render())


@cli.command(epilog="""\b
Examples:
  ledger-collector quarantine --reason bad_signature
  ledger-collector quarantine --device water-01 --json --raw
  ledger-collector quarantine replay   # unknown_key readings whose key is now enrolled""")
@_ledger_options
@click.argument("action", required=False, default="list", type=click.Choice(["list", "replay"]))
@click.option("--reason", metavar="CODE", help="Only this reason code.")
@click.option("--device", metavar="ID", help="Only this device (signed or topic device id).")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output.")
@click.option("--raw", is_flag=True, help="Include the stored bytes (hex) in JSON output.")
@_errors
def quarantine(config_path: str | None, db: str | None, action: str, reason: str | None,
               device: str | None, limit: int, as_json: bool, raw: bool) -> None:
    """List quarantined messages with their reason codes (see docs/collector.md).

    `quarantine replay` admits the unknown_key readings whose key has been enrolled since, in
    seq order and through every check they met on arrival. A running collector does this
    itself at every enrolment; run the command only while no collector runs.
    """
    cfg = _config(config_path, database=db)
    if action == "replay":
        _quarantine_replay(cfg)
        return

    async def go() -> list[Any]:
        store = await _open(cfg)
        try:
            return await store.quarantine_entries(reason=reason, device_id=device, limit=limit)
        finally:
            await store.close()

    for e in _run(go()):
        q = e.record
        if as_json:
            row: dict[str, Any] = {
                "id": e.id, "reason": q.reason, "detail": q.detail, "topic": q.topic,
                "topic_device": q.topic_device, "device_id": q.device_id, "seq": q.seq,
                "size": q.size, "sha256": q.raw_sha256.hex(), "first_ms": q.received_ms,
                "last_ms": e.last_ms, "times_seen": e.times_seen,
            }
            if raw:
                row["raw"] = q.raw.hex()
            click.echo(json.dumps(row))
        else:
            click.echo(f"{e.id:>6} {_iso(q.received_ms):<25} {q.reason:<20} "
                       f"{q.device_id or q.topic_device or '?':<16} x{e.times_seen} {q.detail}")


def _quarantine_replay(cfg: CollectorConfig) -> None:
    """`ledger-collector quarantine replay`: the collector's enrolment replay, run offline."""
    from collector.admission.checks import DeviceChecks
    from collector.admission.registry import Registry
    from collector.admission.replay import replay_unknown_keys, store_lookup

    skew_ms = int(cfg.ingest.max_clock_skew * 1000)

    async def go() -> Any:
        store = await _open(cfg)
        try:
            checks = DeviceChecks(await store.device_states(), store_lookup(store),
                                  max_skew_ms=skew_ms)
            registry = Registry(await store.registry_version(), await store.device_keys())
            return await replay_unknown_keys(store, checks, registry,
                                             await store.next_reading_id(), skew_ms)
        finally:
            await store.close()

    done = _run(go())
    click.echo(done.summary())
    if done.accepted:
        click.echo("the next `ledger-collector run` seals them into blocks")


def main() -> None:
    cli(prog_name="ledger-collector")
