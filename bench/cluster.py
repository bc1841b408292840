"""``python -m bench.cluster``: the PostgreSQL ledger against SQLite, one collector against two.

One run, one machine, one broker and one PostgreSQL (started here: initdb + pg_ctl in a
temporary folder, durable settings: ``fsync`` and ``synchronous_commit`` on, as shipped).
For each case a fresh ledger and fresh broker sessions: the readings are queued on the broker
first (each collector's persistent session, or each member's share of a shared subscription),
then the collectors start and drain the queue into sealed blocks. The rate is readings over
the time from the first reading's arrival to the seal of the block holding the last one, both
read back from the ledger. CPU seconds are read per process (collector main, its verification
workers, every PostgreSQL process, the broker) over the drain, and divided by the readings.

Cases: ``sqlite-1`` (one collector, SQLite), ``pg-1`` (one collector, PostgreSQL), ``pg-2``
(two collectors in one shared-subscription group, PostgreSQL). The projection for N collector
machines is printed with its assumptions (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil  # type: ignore[import-untyped]
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.ledger.opening import open_store
from demo.broker import Broker
from demo.postgres import LocalPostgres
from provenance.envelope import Envelope, sign_reading
from provenance.keys import PrivateKey
from provenance.reading import GENESIS_PREV, Reading
from provenance.senml import Measurement
from provenance.wire import READING_FILTER, reading_topic

from .collector_proc import cpu_seconds
from .ledger import collector_cli

GROUP = "collectors"


@dataclass
class Case:
    name: str
    postgres: bool
    collectors: int


def _readings(devices: int, per_device: int) -> tuple[list[tuple[str, PrivateKey]],
                                                      list[tuple[str, bytes]]]:
    keys = [(f"bench-{i:03d}", PrivateKey.generate()) for i in range(devices)]
    now = time.time_ns() // 1_000_000 - 60_000
    out: list[tuple[str, bytes]] = []
    prevs = {d: GENESIS_PREV for d, _ in keys}
    for seq in range(per_device):
        for device_id, key in keys:
            env = sign_reading(Reading(
                device_id=device_id, seq=seq, boot=1, time_ms=now + seq, clock_synced=True,
                prev=prevs[device_id], kind="water",
                measurements=(Measurement(name="ph", value=7.1, unit="pH"),
                              Measurement(name="temp", value=21.5, unit="Cel"))), key)
            prevs[device_id] = Envelope.decode(env).hash
            out.append((reading_topic(device_id), env))
    return keys, out


def _session(broker: Broker, client_id: str, topic: str) -> None:
    """Register a persistent MQTT 5 subscription for ``client_id`` and leave."""
    done = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.on_subscribe = lambda *a: done.set()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    c.connect(broker.host, broker.port, clean_start=False, properties=props)
    c.loop_start()
    c.subscribe(topic, qos=1)
    if not done.wait(10):
        raise RuntimeError("subscription not acknowledged")
    c.disconnect()
    c.loop_stop()


def _publish(broker: Broker, messages: list[tuple[str, bytes]]) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    c.max_inflight_messages_set(0)
    c.max_queued_messages_set(0)
    c.connect(broker.host, broker.port)
    c.loop_start()
    window = []
    for topic, payload in messages:
        window.append(c.publish(topic, payload, qos=1))
        if len(window) >= 10_000:
            for info in window:
                info.wait_for_publish(60)
            window.clear()
    for info in window:
        info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def _ledger(work: Path, database: str, keys: list[tuple[str, PrivateKey]]) -> Path:
    key = work / "collector-key.pem"
    subprocess.run([*collector_cli(), "init", "--db", database, "--key", str(key),
                    "--log-name", "sensorledger.example/bench"], check=True,
                   capture_output=True)

    async def enrol() -> None:
        store = await open_store(database)
        try:
            for device_id, k in keys:
                await store.enrol(device_id, k.public, 0)
        finally:
            await store.close()

    asyncio.run(enrol())
    return key


_STATEMENTS = "(SELECT COUNT(*) FROM readings WHERE device_id = '@collector')"


def _sealed(database: str) -> int:
    """Sealed device readings: what the drain loop polls, a look at one row and at the
    collector's statements by index (polling the full totals scanned the readings table ten
    times a second, CPU charged to PostgreSQL alone)."""
    if database.startswith("postgresql://"):
        with psycopg.connect(database, autocommit=True) as con:
            row = con.execute(f"SELECT size - {_STATEMENTS} FROM log_head").fetchone()
    else:
        lite = sqlite3.connect(database, timeout=30)
        try:
            row = lite.execute("SELECT COALESCE(SUM(leaf_count), 0) - "
                               f"{_STATEMENTS} FROM blocks").fetchone()
        finally:
            lite.close()
    return int(row[0]) if row else 0


def _totals(database: str) -> tuple[int, int | None, int | None]:
    """(sealed readings, first arrival ms, last seal ms)."""
    if database.startswith("postgresql://"):
        with psycopg.connect(database, autocommit=True) as con:
            row = con.execute("SELECT (SELECT size FROM log_head), (SELECT MIN(received_ms) "
                              "FROM readings), (SELECT MAX(sealed_ms) FROM blocks)").fetchone()
    else:
        lite = sqlite3.connect(database, timeout=30)
        try:
            row = lite.execute("SELECT (SELECT COALESCE(SUM(leaf_count), 0) FROM blocks), "
                              "(SELECT MIN(received_ms) FROM readings), "
                              "(SELECT MAX(sealed_ms) FROM blocks)").fetchone()
        finally:
            lite.close()
    assert row is not None
    return int(row[0] or 0), row[1], row[2]


def _busy() -> float:
    """CPU seconds the whole machine has spent busy (all cores, everyone's processes)."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def _pg_cpu(pg: LocalPostgres) -> float:
    pid = int((pg.data / "postmaster.pid").read_text().split()[0])
    main, children = cpu_seconds(pid)
    return main + children


def run_case(case: Case, root: Path, pg: LocalPostgres, keys: list[tuple[str, PrivateKey]],
             messages: list[tuple[str, bytes]], workers: int) -> dict[str, Any]:
    work = root / case.name
    work.mkdir(parents=True)
    database = pg.create_database(case.name.replace("-", "_")) if case.postgres \
        else str(work / "ledger.db")
    key = _ledger(work, database, keys)
    broker = Broker(workdir=work / "broker").start()
    try:
        ids = [f"bench-collector-{i}" for i in range(case.collectors)]
        topic = f"$share/{GROUP}/{READING_FILTER}" if case.collectors > 1 else READING_FILTER
        for client_id in ids:
            _session(broker, client_id, topic)
        _publish(broker, messages)
        pg_before = _pg_cpu(pg)
        assert broker.proc is not None
        broker_before = sum(cpu_seconds(broker.proc.pid))
        procs = []
        for client_id in ids:
            argv = [*collector_cli(), "run", "--db", database, "--key", str(key),
                    "--broker", broker.url, "--client-id", client_id, "--protocol", "5",
                    "--workers", str(workers), "--block-size", "1000", "--block-age", "1"]
            if case.collectors > 1:
                argv += ["--share-group", GROUP]
            log = (work / f"{client_id}.log").open("wb")
            procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                          env={**os.environ,
                                               "SENSORLEDGER_STATE_DIR": str(work)}))
        started = time.monotonic()
        # CPU is counted from each collector's connection to the broker: start-up (imports,
        # worker processes, the database pool) is not per-reading work.
        base: list[tuple[float, float]] = []
        for client_id, p in zip(ids, procs, strict=True):
            log_file = work / f"{client_id}.log"
            while b'"event":"broker_connected"' not in log_file.read_bytes():
                if p.poll() is not None or time.monotonic() - started > 60:
                    raise RuntimeError(f"{client_id} did not connect; see {log_file}")
                time.sleep(0.01)
            base.append(cpu_seconds(p.pid))
        machine_before, wall_before = _busy(), time.monotonic()
        while _sealed(database) < len(messages):
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a collector exited; see {work}")
            if time.monotonic() - started > 900:
                raise TimeoutError(f"{case.name}: not sealed in 900 s")
            time.sleep(0.1)
        cpu = [(now[0] - was[0], now[1] - was[1]) for now, was in
               zip((cpu_seconds(p.pid) for p in procs), base, strict=True)]
        pg_cpu = _pg_cpu(pg) - pg_before if case.postgres else 0.0
        broker_cpu = sum(cpu_seconds(broker.proc.pid)) - broker_before
        wall = time.monotonic() - wall_before
        machine = (_busy() - machine_before) / wall
        ours = (sum(a + b for a, b in cpu) + pg_cpu + broker_cpu) / wall
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
    finally:
        broker.stop()
    _, first_ms, last_ms = _totals(database)
    assert first_ms is not None and last_ms is not None
    seconds = (last_ms - first_ms) / 1000
    n = len(messages)
    return {
        "case": case.name, "readings": n, "collectors": case.collectors,
        "seconds": round(seconds, 2), "per_s": round(n / seconds, 1),
        "cores_busy_whole_machine": round(machine, 2),
        "cores_busy_other_work": round(max(0.0, machine - ours), 2),
        "cpu_us_per_reading": {
            "collector_main": round(sum(c[0] for c in cpu) / n * 1e6, 1),
            "collector_workers": round(sum(c[1] for c in cpu) / n * 1e6, 1),
            "postgresql": round(pg_cpu / n * 1e6, 1),
            "broker": round(broker_cpu / n * 1e6, 1),
        },
    }


def projection(pg2: dict[str, Any]) -> dict[str, Any]:
    """Readings/s for N collector machines of 2 cores sharing one PostgreSQL machine of 2 cores,
    from the per-reading CPU of the two-collector case."""
    cpu = pg2["cpu_us_per_reading"]
    collector_us = cpu["collector_main"] + cpu["collector_workers"]
    pg_us = cpu["postgresql"]
    per_collector_machine = 2 / (collector_us / 1e6)  # 2 cores, all spent on one collector
    pg_ceiling = 2 / (pg_us / 1e6) if pg_us else float("inf")
    out = {}
    for n in (1, 2, 3, 4, 8):
        out[str(n)] = round(min(n * per_collector_machine, pg_ceiling))
    return {"per_collector_machine": round(per_collector_machine),
            "postgresql_ceiling": round(pg_ceiling), "by_machines": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--per-device", type=int, default=1500)
    parser.add_argument("--workers", type=int, default=0,
                        help="verification processes per collector (0: one per core)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="sensorledger-bench-cluster-"))
    pg = LocalPostgres(conf="shared_buffers = 128MB\n").start()
    try:
        keys, messages = _readings(args.devices, args.per_device)
        results = [run_case(c, root, pg, keys, messages, args.workers) for c in (
            Case("sqlite-1", False, 1), Case("pg-1", True, 1), Case("pg-2", True, 2))]
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    by = {r["case"]: r for r in results}
    summary = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cases": results,
        "pg_vs_sqlite": round(by["pg-1"]["per_s"] / by["sqlite-1"]["per_s"], 3),
        "two_vs_one_collector": round(by["pg-2"]["per_s"] / by["pg-1"]["per_s"], 3),
        "projection": projection(by["pg-2"]),
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
