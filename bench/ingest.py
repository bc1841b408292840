"""Issue item 1: the collector drains the queued backlog into sealed, durable blocks.

Each drain uses a fresh broker (from the same queued snapshot) and a fresh ledger; the run
repeats it (three times at full size) and quotes the median. A drain is timed from the first
reading's arrival (its ``received_ms``) to the seal time of the block that holds the last one,
both read back from the ledger, so polling adds no error; the time from process launch is
reported beside it. Each figure is set against the raw verify rate and
mosquitto_sub's drain rate measured earlier in the same run.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from .collector_proc import CollectorProcess, cpu_seconds, thread_cpu_seconds
from .context import RunContext, sessions
from .diagnostics import reading_costs_us, verify_message_us_per_reading
from .ledger import enrol, init_ledger, totals
from .queued import broker_with_backlog
from .results import BenchResult, Target

__all__ = ["run_ingest"]

TARGET_PER_S = 10_000
TARGET_VS_VERIFY = 0.6


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _drain_once(ctx: RunContext, attempt: int) -> dict[str, Any]:
    """One drain of the whole backlog by a fresh collector into a fresh ledger."""
    backlog = ctx.backlog()
    count = len(backlog)
    workdir = ctx.scratch(f"ingest-{attempt}")
    broker = broker_with_backlog(workdir / "broker", ctx.snapshot())
    try:
        files = init_ledger(workdir)
        enrol(files.db, [(d.device_id, d.public) for d in backlog.devices])
        client_id, _ = sessions()["collector"]
        with CollectorProcess(files, broker.url, client_id, workdir / "collector.log") as col:
            col.wait_until(lambda: totals(files.db).sealed >= count, timeout=900)
            done_at = time.time()
            main_cpu, workers_cpu = cpu_seconds(col.pid)
            threads = thread_cpu_seconds(col.pid)
            broker_cpu = sum(cpu_seconds(broker.proc.pid)) if broker.proc else 0.0
            code = col.stop()
    finally:
        broker.stop()
    t = totals(files.db)
    if t.readings != count or t.quarantined:
        raise RuntimeError(f"ledger holds {t.readings} readings and {t.quarantined} quarantined "
                           f"of {count} sent")
    assert t.first_received_ms is not None and t.last_sealed_ms is not None
    drain_s = (t.last_sealed_ms - t.first_received_ms) / 1000
    return {
        "per_s": round(count / drain_s, 1),
        "launch_per_s": round(count / (done_at - col.started_at), 1),
        "blocks": t.blocks, "drain_seconds": round(drain_s, 3),
        "collector_main_cpu_seconds": round(main_cpu, 2),
        "collector_workers_cpu_seconds": round(workers_cpu, 2),
        "collector_cores_used": round((main_cpu + workers_cpu) / drain_s, 2),
        "broker_cpu_seconds": round(broker_cpu, 2),
        "collector_threads_cpu_seconds": threads,
        "cpu_us_per_reading": round((main_cpu + workers_cpu) / count * 1e6, 1),
        "collector_exit_code": code, "ledger_db": str(files.db),
    }


def run_ingest(ctx: RunContext) -> BenchResult:
    result = BenchResult("ingest", "Collector ingest: queued backlog → sealed blocks")
    backlog = ctx.backlog()
    verify_rate = ctx.figure("verify", "per_s")
    sub_rate = ctx.figure("mosquitto-sub", "per_s")
    drains = [_drain_once(ctx, i) for i in range(ctx.sizes.drain_repeats)]
    rate = statistics.median(d["per_s"] for d in drains)
    median_run = min(drains, key=lambda d: abs(d["per_s"] - rate))
    result.add("per_s", "readings/s, first arrival → last seal (median)", rate, "/s",
               Target(">=", TARGET_PER_S))
    result.add("vs_verify", "÷ raw single-core verify rate", rate / verify_rate, "×",
               Target(">=", TARGET_VS_VERIFY))
    result.add("vs_mosquitto_sub", "÷ mosquitto_sub drain rate", rate / sub_rate, "×")
    result.add("launch_per_s", "readings/s, process launch → last seal (median)",
               statistics.median(d["launch_per_s"] for d in drains), "/s")
    if "baseline" in ctx.results and not ctx.results["baseline"].error:
        for mode in ("ack-on-receipt", "ack-after-commit"):
            base = ctx.figure("baseline", f"{mode}.per_s")
            result.add(f"vs_baseline.{mode}", f"÷ baseline {mode}", rate / base, "×")
    result.params = {
        "readings": len(backlog), "devices": len(backlog.devices),
        "drains_per_s": [d["per_s"] for d in drains],
        "median_drain": median_run, "drains": drains,
        "ledger_db": median_run["ledger_db"],
        "verify_message_us_one_core": _round(verify_message_us_per_reading(
            backlog, ctx.sizes.verify_sample)),
        "reading_costs_us_one_core": reading_costs_us(backlog, ctx.sizes.verify_sample),
        "collector_args": CollectorProcess.ARGS,
    }
    return result
