"""Run a selection of benchmarks in one process and collect their results."""

from __future__ import annotations

import datetime as dt
import resource
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from .context import RunContext, Sizes
from .results import BenchResult, RunResults, machine_info, source_state
from .suite import select

__all__ = ["run"]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _our_cpu() -> float:
    """CPU seconds of this process and every descendant it (or they) reaped."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _busy_cores(before: object, after: object) -> float:
    """Average number of cores busy between two ``psutil.cpu_times()`` samples."""
    fields = ("user", "nice", "system", "irq", "softirq", "steal", "idle", "iowait")
    delta = {f: getattr(after, f, 0.0) - getattr(before, f, 0.0) for f in fields}
    total = sum(delta.values())
    if total <= 0:
        return 0.0
    idle = delta["idle"] + delta["iowait"]
    return (total - idle) / total * (psutil.cpu_count() or 1)


def _settle(max_wait: float, quiet_cores: float = 0.25) -> float:
    """Wait (at most ``max_wait`` s) until the machine is quiet: fewer than ``quiet_cores``
    cores busy over two seconds. Returns the busy cores of the last sample."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = psutil.cpu_percent(interval=2.0) / 100 * (psutil.cpu_count() or 1)
        if busy < quiet_cores or time.monotonic() >= deadline:
            return float(busy)


def run(names: Sequence[str] | None, sizes: Sizes, workdir: Path,
        argv: Sequence[str] = (), settle: float = 0.0) -> RunResults:
    """Run the selected benchmarks (and what they require); a failure is recorded, not raised.

    With ``settle`` > 0, each benchmark waits up to that many seconds for a quiet machine
    first (a shared machine's other work is the largest source of noise).
    """
    benchmarks = select(names)
    # Absolute: config files written into it are read relative to their own folder.
    ctx = RunContext(workdir=workdir.resolve(), sizes=sizes)
    results = RunResults(
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command=shlex.join(["python", "-m", "bench", *argv]),
        quick=sizes.name != "full",
        machine={**machine_info(), "sizes": sizes.name, "source": source_state()},
    )
    for bench in benchmarks:
        busy_before = _settle(settle) if settle > 0 else None
        _say(f"[bench] {bench.name}: {bench.summary} ...")
        start = time.perf_counter()
        cpu_before, ours_before = psutil.cpu_times(), _our_cpu()
        try:
            result = bench.run(ctx)
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            result = BenchResult(bench.name, bench.summary, error=f"{type(exc).__name__}: {exc}")
            _say(traceback.format_exc())
        result.seconds = round(time.perf_counter() - start, 2)
        # The machine is shared: record how busy it was overall, ours and others' work alike.
        busy = _busy_cores(cpu_before, psutil.cpu_times())
        ours = (_our_cpu() - ours_before) / (time.perf_counter() - start)
        result.params["machine_busy_cores"] = round(busy, 2)
        # Everything this run started is reaped by it, so the rest is other people's work.
        result.params["others_busy_cores"] = round(max(0.0, busy - ours), 2)
        if busy_before is not None:
            result.params["machine_busy_cores_before"] = round(busy_before, 2)
        ctx.results[bench.name] = result
        results.results.append(result)
        _say(f"[bench] {bench.name}: {'FAILED' if result.error else 'done'} "
             f"in {result.seconds:.1f} s")
    return results
