"""Issue item 2: devices offering a steady rate through Mosquitto; latency from signing to seal.

The collector runs with its defaults (1,000-reading or 1-second blocks). Two generator
processes sign and publish in real time, half the devices each. On a 2-core machine they share
the cores with the collector and the broker; their CPU time is reported beside the collector's
so the competition is visible. Latency is read back from the ledger for every reading: the
seal time of its block minus the device time it signed.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from provenance.keys import PrivateKey

from .backlog import BacklogDevice
from .broker import bench_broker
from .collector_proc import CollectorProcess, cpu_seconds
from .context import RunContext
from .ledger import enrol, init_ledger, totals
from .live_gen import GeneratorSpec, generate
from .mqtt import create_session
from .results import BenchResult, Target

__all__ = ["latencies_ms", "run_live"]

TARGET_P99_S = 2.0
ACHIEVED_SHARE = 0.98  # of the offered rate, for the run to show that load
_GENERATORS = 2
_CLIENT_ID = "bench-live-collector"
_PERCENTILES = (0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9, 100)


def latencies_ms(db: Path) -> list[int]:
    """Seal time of its block minus signed device time, for every sealed reading."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        blocks = con.execute("SELECT first_reading_id, leaf_count, sealed_ms FROM blocks "
                             "ORDER BY first_reading_id").fetchall()
        out: list[int] = []
        for first, count, sealed in blocks:
            out.extend(sealed - t for (t,) in con.execute(
                "SELECT time_ms FROM readings WHERE id >= ? AND id < ? AND "
                "device_id != '@collector'", (first, first + count)))
    finally:
        con.close()
    return out


def _pct(ordered: list[int], q: float) -> int:
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run_live(ctx: RunContext) -> BenchResult:
    sizes = ctx.sizes
    result = BenchResult("live", "Live ingest: devices publishing at a steady rate")
    total = int(sizes.live_rate * sizes.live_seconds)
    devices = [BacklogDevice(f"live-{i:04d}", PrivateKey.generate().to_pem())
               for i in range(sizes.live_devices)]
    workdir = ctx.scratch("live")
    with bench_broker(workdir / "broker") as broker:
        files = init_ledger(workdir)
        enrol(files.db, [(d.device_id, d.public) for d in devices])
        # The session exists before the first publish, so nothing is lost while it starts.
        create_session(broker.host, broker.port, _CLIENT_ID, mqtt5=True)
        with CollectorProcess(files, broker.url, _CLIENT_ID, workdir / "collector.log") as col:
            shares = [devices[i::_GENERATORS] for i in range(_GENERATORS)]
            start_at = time.time() + 2.0  # generator processes start and connect meanwhile
            specs = [GeneratorSpec(broker.host, broker.port,
                                   tuple((d.device_id, d.private_pem) for d in share),
                                   sizes.live_rate / _GENERATORS, total // _GENERATORS, start_at)
                     for share in shares]
            with ProcessPoolExecutor(len(specs),
                                     mp_context=multiprocessing.get_context("spawn")) as pool:
                reports = list(pool.map(generate, specs))
            sent = sum(r.sent for r in reports)
            col.wait_until(lambda: totals(files.db).sealed >= sent, timeout=300)
            main_cpu, workers_cpu = cpu_seconds(col.pid)
            broker_cpu = sum(cpu_seconds(broker.proc.pid)) if broker.proc else 0.0
            col.stop()
    lat = sorted(latencies_ms(files.db))
    t = totals(files.db)
    if len(lat) != sent or t.quarantined:
        raise RuntimeError(f"{len(lat)} of {sent} readings sealed, {t.quarantined} quarantined")
    span = max(r.last_s for r in reports) - min(r.first_s for r in reports)
    result.add("all_sealed", "readings sealed", len(lat), "")
    # The latency target holds only at the offered load: generators that fall behind offer less.
    result.add("offered_per_s", "offered rate achieved", sent / span if span else 0.0, "/s",
               Target(">=", ACHIEVED_SHARE * sizes.live_rate))
    result.add("p50_s", "latency sign → sealed block, p50", _pct(lat, 50) / 1000, "s")
    result.add("p99_s", "latency sign → sealed block, p99", _pct(lat, 99) / 1000, "s",
               Target("<=", TARGET_P99_S))
    result.add("max_s", "latency, max", lat[-1] / 1000, "s")
    result.params = {
        "devices": sizes.live_devices, "target_rate": sizes.live_rate,
        "seconds": sizes.live_seconds, "sent": sent, "blocks": t.blocks,
        "latency_percentiles_ms": {str(q): _pct(lat, q) for q in _PERCENTILES},
        "generators": len(reports),
        "generator_cpu_seconds": round(sum(r.cpu_s for r in reports), 2),
        "generator_max_behind_s": round(max(r.max_behind_s for r in reports), 3),
        "collector_main_cpu_seconds": round(main_cpu, 2),
        "collector_workers_cpu_seconds": round(workers_cpu, 2),
        "broker_cpu_seconds": round(broker_cpu, 2),
    }
    return result
