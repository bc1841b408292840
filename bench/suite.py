"""The benchmarks, in the order a run executes them, and what each needs from earlier ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .agent_footprint import run_agent
from .audit import run_audit
from .context import RunContext
from .ingest import run_ingest
from .live import run_live
from .log_proofs import run_log_proofs
from .metrics_overhead import run_metrics_overhead
from .mirror import run_mirror
from .proofs import run_proofs
from .receipts import run_receipts
from .results import BenchResult
from .storage import run_storage
from .witnessing import run_witnessing
from .yardsticks import run_baseline, run_mosquitto_sub, run_verify

__all__ = ["BENCHMARKS", "Benchmark", "select"]


@dataclass(frozen=True, slots=True)
class Benchmark:
    name: str
    summary: str
    run: Callable[[RunContext], BenchResult]
    # Benchmarks whose figures this one's ratios use; a ratio is only quoted within one run.
    requires: tuple[str, ...] = ()


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("verify", "raw single-core ES256 verify rate (pyca/cryptography)", run_verify),
    Benchmark("mosquitto-sub", "mosquitto_sub draining the backlog", run_mosquitto_sub),
    Benchmark("baseline", "paho-mqtt → SQLite baseline on the backlog (issue item 7)",
              run_baseline),
    Benchmark("ingest", "collector drains the backlog into sealed blocks (issue item 1)",
              run_ingest, requires=("verify", "mosquitto-sub", "baseline")),
    Benchmark("live", "100 devices offering 5,000 readings/s; sign → seal latency (item 2)",
              run_live),
    Benchmark("storage", "ledger bytes per reading vs envelope size (issue item 6)",
              run_storage, requires=("ingest",)),
    Benchmark("audit", "ledger-collector audit over the 1M-reading ledger (issue item 3)",
              run_audit, requires=("verify",)),
    Benchmark("proofs", "proof generation and verify-proof at 1M readings (issue item 4)",
              run_proofs),
    Benchmark("log-proofs", "one-log inclusion and consistency proofs at 10^6 and 10^7 "
              "readings, against per-block proofs (one-log item)", run_log_proofs),
    Benchmark("agent", "sensor-agent at 1 Hz on four emulators, and at maximum rate (item 5)",
              run_agent),
    Benchmark("witness", "three witnesses, quorum 2: seal → quorum latency, witness CPU",
              run_witnessing),
    Benchmark("mirror", "ledger-mirror catching up from tiles over HTTP (issue 15)",
              run_mirror, requires=("verify",)),
    Benchmark("metrics", "ingest rate with /metrics scraped vs without (#17 part 4)",
              run_metrics_overhead),
    Benchmark("receipts", "agents in receipts mode: sign → sealed/receipt latency, spool depth",
              run_receipts),
)


def select(names: Iterable[str] | None) -> list[Benchmark]:
    """The named benchmarks plus everything they require, in suite order."""
    by_name = {b.name: b for b in BENCHMARKS}
    if not names:
        return list(BENCHMARKS)
    wanted: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name not in by_name:
            raise KeyError(f"no benchmark {name!r}; choose from {', '.join(by_name)}")
        if name not in wanted:
            wanted.add(name)
            stack.extend(by_name[name].requires)
    return [b for b in BENCHMARKS if b.name in wanted]
