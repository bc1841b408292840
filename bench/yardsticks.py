"""The figures everything else is compared with: raw verify, mosquitto_sub, the plain baseline."""

from __future__ import annotations

import statistics

from .baseline import drain_into_sqlite
from .context import RunContext, collector_mqtt, sessions
from .drain_sub import mosquitto_sub_drain
from .queued import broker_with_backlog
from .results import BenchResult
from .verify_rate import measure_verify_rate

__all__ = ["run_baseline", "run_mosquitto_sub", "run_verify"]


def run_verify(ctx: RunContext) -> BenchResult:
    result = BenchResult("verify", "Raw ES256 verify, pyca/cryptography, one core")
    rate = measure_verify_rate(ctx.backlog(), sample=ctx.sizes.verify_sample,
                               rounds=ctx.sizes.verify_rounds)
    result.add("per_s", "verifies/s (median of rounds)", rate.per_s, "/s")
    result.params = {"verifies_per_round": rate.verifies_per_round,
                     "rounds_per_s": [round(r) for r in rate.rounds]}
    return result


def run_mosquitto_sub(ctx: RunContext) -> BenchResult:
    result = BenchResult("mosquitto-sub", "mosquitto_sub alone draining the backlog")
    count = len(ctx.backlog())
    client_id, _ = sessions()["mosquitto-sub"]
    rates = []
    for attempt in range(ctx.sizes.drain_repeats):
        broker = broker_with_backlog(ctx.scratch(f"mosquitto-sub-{attempt}"), ctx.snapshot())
        try:
            rates.append(count / mosquitto_sub_drain(broker.host, broker.port, client_id, count))
        finally:
            broker.stop()
    result.add("per_s", "readings/s (median)", statistics.median(rates), "/s")
    result.params = {"readings": count, "devices": len(ctx.backlog().devices),
                     "drains_per_s": [round(r) for r in rates]}
    return result


def run_baseline(ctx: RunContext) -> BenchResult:
    result = BenchResult("baseline", "paho-mqtt → SQLite, no verification, no blocks")
    count = len(ctx.backlog())
    for mode, session in (("ack-on-receipt", "baseline-receipt"),
                          ("ack-after-commit", "baseline-commit")):
        client_id, mqtt5 = sessions()[session]
        runs = []
        for attempt in range(ctx.sizes.drain_repeats):
            workdir = ctx.scratch(f"{session}-{attempt}")
            broker = broker_with_backlog(workdir / "broker", ctx.snapshot())
            try:
                run = drain_into_sqlite(broker.host, broker.port, client_id, count,
                                        workdir / "baseline.db", mode=mode, mqtt5=mqtt5,
                                        receive_maximum=collector_mqtt()[1])
            finally:
                broker.stop()
            if run.rows != count:
                raise RuntimeError(f"baseline {mode} stored {run.rows} of {count} readings")
            runs.append(run)
        rates = [count / r.seconds for r in runs]
        result.add(f"{mode}.per_s", f"{mode}: readings/s (median)", statistics.median(rates),
                   "/s")
        result.params[mode] = {"drains_per_s": [round(r) for r in rates],
                               "commits": [r.commits for r in runs],
                               "db_bytes": runs[-1].db_bytes}
    result.params["protocol"] = "5" if collector_mqtt()[0] else "3.1.1"
    result.notes.append(
        "ack-on-receipt acknowledges before writing (synchronous=NORMAL): a crash loses what "
        "was acknowledged but not yet committed. ack-after-commit acknowledges after COMMIT "
        "with synchronous=FULL, the collector's durability. Neither verifies, deduplicates "
        "or seals blocks."
    )
    return result
