"""The benchmarks, in the order a run executes them, and what each needs from earlier ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .context import RunContext
from .results import BenchResult
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
