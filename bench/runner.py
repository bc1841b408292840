"""Run a selection of benchmarks in one process and collect their results."""

from __future__ import annotations

import datetime as dt
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from .context import RunContext, Sizes
from .results import BenchResult, RunResults, machine_info
from .suite import select

__all__ = ["run"]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _busy_cores(before: object, after: object) -> float:
    """Average number of cores busy between two ``psutil.cpu_times()`` samples."""
    fields = ("user", "nice", "system", "irq", "softirq", "steal", "idle", "iowait")
    delta = {f: getattr(after, f, 0.0) - getattr(before, f, 0.0) for f in fields}
    total = sum(delta.values())
    if total <= 0:
        return 0.0
    idle = delta["idle"] + delta["iowait"]
    return (total - idle) / total * (psutil.cpu_count() or 1)


def run(names: Sequence[str] | None, sizes: Sizes, workdir: Path,
        argv: Sequence[str] = ()) -> RunResults:
    """Run the selected benchmarks (and what they require); a failure is recorded, not raised."""
    benchmarks = select(names)
    # Absolute: config files written into it are read relative to their own folder.
    ctx = RunContext(workdir=workdir.resolve(), sizes=sizes)
    results = RunResults(
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command=shlex.join(["python", "-m", "bench", *argv]),
        quick=sizes.name != "full",
        machine={**machine_info(), "sizes": sizes.name},
    )
    for bench in benchmarks:
        _say(f"[bench] {bench.name}: {bench.summary} ...")
        start = time.perf_counter()
        cpu_before = psutil.cpu_times()
        try:
            result = bench.run(ctx)
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            result = BenchResult(bench.name, bench.summary, error=f"{type(exc).__name__}: {exc}")
            _say(traceback.format_exc())
        result.seconds = round(time.perf_counter() - start, 2)
        # The machine is shared: record how busy it was overall, ours and others' work alike.
        result.params["machine_busy_cores"] = round(_busy_cores(cpu_before, psutil.cpu_times()), 2)
        ctx.results[bench.name] = result
        results.results.append(result)
        _say(f"[bench] {bench.name}: {'FAILED' if result.error else 'done'} "
             f"in {result.seconds:.1f} s")
    return results
