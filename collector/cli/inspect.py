"""Looking into the ledger: ``blocks``, ``readings``, ``stats`` and ``quarantine``."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from collector.cli.common import (
    config,
    handle_errors,
    iso,
    ledger_options,
    on_ledger,
    parse_time,
)
from collector.config import CollectorConfig
from collector.errors import NotFoundError, UsageError
from collector.ledger.opening import Ledger, ledger_lock
from collector.ledger.records import BlockRecord

__all__ = ["blocks", "quarantine", "readings", "stats"]


@click.command(epilog="""\b
Examples:
  ledger-collector blocks                # the last 20 blocks
  ledger-collector blocks 42 --json      # one block's signed header""")
@ledger_options
@click.argument("height", type=int, required=False)
@click.option("--from", "start", type=int, metavar="H", help="List from height H.")
@click.option("--limit", type=int, default=20, show_default=True, help="Blocks to list.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@handle_errors
def blocks(config_path: str | None, db: str | None, height: int | None, start: int | None,
           limit: int, as_json: bool) -> None:
    """List blocks, or show block HEIGHT."""
    from provenance.block import SignedBlock

    cfg = config(config_path, database=db)

    async def find(store: Ledger) -> list[BlockRecord]:
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

    rows: list[dict[str, Any]] = []
    for b in on_ledger(cfg, find):
        h = SignedBlock.decode(b.header).header
        rows.append({
            "height": b.height, "hash": b.hash.hex(), "prev_hash": h.prev_hash.hex(),
            "merkle_root": h.merkle_root.hex(), "leaf_count": h.leaf_count,
            "first_reading_id": b.first_reading_id, "first_time_ms": h.first_time_ms,
            "last_time_ms": h.last_time_ms, "sealed_at_ms": h.sealed_at_ms,
            "first_time": iso(h.first_time_ms), "last_time": iso(h.last_time_ms),
            "sealed_at": iso(h.sealed_at_ms), "collector_kid": h.collector_kid.hex(),
            "format": h.version,
        })
        if h.tree_size_before is not None:  # format 2: the root is the log tree's after it
            rows[-1].update(tree_size_before=h.tree_size_before,
                            tree_size_after=h.tree_size_after)
    if as_json:
        click.echo(json.dumps(rows[0] if height is not None else rows, indent=2))
    elif height is not None:
        for k, v in rows[0].items():
            if not k.endswith("_ms"):  # times in UTC, not epoch milliseconds
                click.echo(f"{k:<17} {v}")
    else:
        click.echo(f"{'height':>7} {'leaves':>7} {'first reading':>13} {'sealed (UTC)':<26} "
                   "hash (HEIGHT:HASH for audit --anchor)")
        for r in rows:
            click.echo(f"{r['height']:>7} {r['leaf_count']:>7} {r['first_reading_id']:>13} "
                       f"{r['sealed_at']:<26} {r['hash']}")


@click.command(epilog="""\b
Examples:
  ledger-collector readings --device water-01 --since 2026-05-01T00:00Z -o water-01.csv
  ledger-collector readings --format jsonl --since now | jq .
  ledger-collector readings --device water-01 --per-measurement -o water-01-values.csv""")
@ledger_options
@click.option("--device", metavar="ID", help="Only this device.")
@click.option("--since", metavar="TIME", help="Device time at or after (ISO 8601 or epoch ms).")
@click.option("--until", metavar="TIME", help="Device time before.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv",
              show_default=True)
@click.option("-o", "--output", type=click.File("w"), default="-", help="Output file.")
@click.option("--with-envelope", is_flag=True, help="Include the envelope bytes (hex).")
@click.option("--per-measurement", is_flag=True,
              help="CSV with one row per measurement (name, value, unit, its own UTC time).")
@handle_errors
def readings(config_path: str | None, db: str | None, device: str | None, since: str | None,
             until: str | None, fmt: str, output: Any, with_envelope: bool,
             per_measurement: bool) -> None:
    """Export readings as CSV or JSON Lines, with their block and leaf index."""
    from collector.tools.export import export_readings

    if per_measurement and (fmt != "csv" or with_envelope):
        raise UsageError("--per-measurement is a CSV layout, without --with-envelope")
    cfg = config(config_path, database=db)
    since_ms = parse_time(since) if since else None
    until_ms = parse_time(until) if until else None
    count = on_ledger(cfg, lambda store: export_readings(
        store, output, fmt=fmt, device_id=device, since_ms=since_ms, until_ms=until_ms,
        with_envelope=with_envelope, per_measurement=per_measurement))
    output.flush()  # the readings before the count, where both streams go to one place
    click.echo(f"{count} readings exported", err=True)


@click.command(epilog="""\b
Examples:
  ledger-collector stats
  ledger-collector stats --device water-01 --json
  ledger-collector stats --csv > devices.csv""")
@ledger_options
@click.option("--device", metavar="ID", help="Only this device.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV output: one row per device.")
@handle_errors
def stats(config_path: str | None, db: str | None, device: str | None, as_json: bool,
          as_csv: bool) -> None:
    """Ledger totals and per-device health: last seq, gaps, chain breaks, skew, quarantine,
    and when each device was last seen (UTC)."""
    from collector.tools.stats import collect_stats

    if as_json and as_csv:
        raise UsageError("--json or --csv, not both")
    cfg = config(config_path, database=db)
    result = on_ledger(cfg, lambda store: collect_stats(store, device))
    if as_csv:
        click.echo(result.to_csv(), nl=False)
    else:
        click.echo(result.to_json() if as_json else result.render())


@click.command(epilog="""\b
Examples:
  ledger-collector quarantine --reason bad_signature
  ledger-collector quarantine --device water-01 --json --raw
  ledger-collector quarantine replay   # unknown_key readings whose key is now enrolled""")
@ledger_options
@click.argument("action", required=False, default="list", type=click.Choice(["list", "replay"]))
@click.option("--reason", metavar="CODE", help="Only this reason code.")
@click.option("--device", metavar="ID", help="Only this device (signed or topic device id).")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output.")
@click.option("--raw", is_flag=True, help="Include the stored bytes (hex) in JSON output.")
@click.option("--key", "key_file", metavar="PEM",
              help="replay: the collector key, which signs the enrolment statements the log "
                   "records first (overrides the config's `key_file`).")
@handle_errors
def quarantine(config_path: str | None, db: str | None, action: str, reason: str | None,
               device: str | None, limit: int, as_json: bool, raw: bool,
               key_file: str | None) -> None:
    """List quarantined messages with their reason codes (see docs/collector.md).

    `quarantine replay` admits the unknown_key readings whose key has been enrolled since, in
    seq order and through every check they met on arrival. A running collector does this
    itself at every enrolment; the command refuses while a collector runs on the ledger.
    """
    cfg = config(config_path, database=db, key_file=key_file)
    if action == "replay":
        _quarantine_replay(cfg)
        return
    entries = on_ledger(cfg, lambda store: store.quarantine_entries(
        reason=reason, device_id=device, limit=limit))
    if entries and not as_json:
        click.echo(f"{'id':>6} {'first seen (UTC)':<25} {'reason':<20} {'device':<16} "
                   "times  detail")
    for e in entries:
        q = e.record
        if as_json:
            row: dict[str, Any] = {
                "id": e.id, "reason": q.reason, "detail": q.detail, "topic": q.topic,
                "topic_device": q.topic_device, "device_id": q.device_id, "seq": q.seq,
                "size": q.size, "sha256": q.raw_sha256.hex(), "first_ms": q.received_ms,
                "last_ms": e.last_ms, "first_seen": iso(q.received_ms),
                "last_seen": iso(e.last_ms), "times_seen": e.times_seen,
            }
            if raw:
                row["raw"] = q.raw.hex()
            click.echo(json.dumps(row))
        else:
            click.echo(f"{e.id:>6} {iso(q.received_ms):<25} {q.reason:<20} "
                       f"{q.device_id or q.topic_device or '?':<16} x{e.times_seen:<5} "
                       f"{q.detail}")


def _quarantine_replay(cfg: CollectorConfig) -> None:
    """`ledger-collector quarantine replay`: the collector's enrolment replay, run offline."""
    from collector.admission.checks import DeviceChecks
    from collector.admission.registry import Registry
    from collector.admission.replay import replay_unknown_keys, store_lookup
    from collector.ledger.pg_cluster import ClusterLedger
    from collector.ledger.pg_store import PostgresStore
    from collector.ledger.statement_log import StatementLog
    from collector.service import load_collector_key

    skew_ms = int(cfg.ingest.max_clock_skew * 1000)

    async def go(store: Ledger) -> Any:
        if isinstance(store, PostgresStore):  # under the devices' row locks, ids at sealing
            registry = Registry(await store.registry_version(), await store.device_keys())
            return await ClusterLedger(store).replay(registry, skew_ms)
        # The log enrols a key (a collector statement) before any reading it signed.
        statements = await StatementLog.load(
            store, await load_collector_key(store, cfg.key_file),
            [r.key for r in await store.key_history()])
        next_id = await statements.commit_due(store, await store.next_reading_id(),
                                              time.time_ns() // 1_000_000)
        checks = DeviceChecks(await store.device_states(), store_lookup(store),
                              max_skew_ms=skew_ms)
        registry = Registry(await store.registry_version(), await store.device_keys())
        return await replay_unknown_keys(store, checks, registry, next_id, skew_ms)

    with ledger_lock(cfg.database):  # refused while a collector runs on this ledger
        done = on_ledger(cfg, go)
    click.echo(done.summary())
    if done.accepted:
        click.echo("the next `ledger-collector run` seals them into blocks")
