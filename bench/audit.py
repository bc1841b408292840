"""Issue item 3: ``ledger-collector audit`` over the cached 1,000,000-reading ledger.

Timed as a user runs it: the whole process, start-up and worker spawn included. The rate is set
against the raw single-core verify rate measured earlier in the same run.
"""

from __future__ import annotations

import json
import resource
import subprocess
import time

from .big_ledger import cached_ledger
from .collector_proc import TreeCpu
from .context import RunContext
from .diagnostics import audit_us_per_reading
from .ledger import collector_cli
from .results import BenchResult, Target

__all__ = ["run_audit"]

TARGET_VS_VERIFY = 1.5


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def run_audit(ctx: RunContext) -> BenchResult:
    result = BenchResult("audit", "ledger-collector audit over the big ledger")
    verify_rate = ctx.figure("verify", "per_s")
    ledger = cached_ledger(ctx.cache_dir, ctx.sizes.devices, ctx.sizes.audit_readings)
    argv = [*collector_cli(), "audit", "--db", str(ledger.files.db),
            "--collector-key", str(ledger.files.public_key), "--json", "--no-progress"]
    # Waited-for descendants (the worker processes) count in RUSAGE_CHILDREN once reaped;
    # the sampler splits that total between the audit's main process and its workers.
    cpu_before = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tree = TreeCpu(proc.pid)
    try:
        stdout, stderr = proc.communicate(timeout=3600)
    finally:
        main_cpu, workers_cpu = tree.stop()
    wall = time.perf_counter() - start
    cpu = _children_cpu() - cpu_before
    if proc.returncode != 0:
        raise RuntimeError(f"audit exited {proc.returncode}: {stdout[-500:]} {stderr[-500:]}")
    report = json.loads(stdout)
    if not report["ok"] or report["readings"] != ledger.readings:
        raise RuntimeError(f"audit did not pass over {ledger.readings} readings: {report}")
    rate = ledger.readings / wall
    result.add("per_s", "readings/s (whole process)", rate, "/s")
    result.add("vs_verify", "÷ raw single-core verify rate", rate / verify_rate, "×",
               Target(">=", TARGET_VS_VERIFY))
    result.add("wall_s", "wall time", wall, "s")
    result.params = {
        "readings": ledger.readings, "blocks": report["blocks"],
        "devices": len(ledger.devices), "audit_reported_seconds": report.get("seconds"),
        "cpu_seconds": round(cpu, 2), "ledger_cached": ledger.cached,
        "cpu_us_per_reading": round(cpu / ledger.readings * 1e6, 1),
        "main_cpu_seconds_sampled": round(main_cpu, 2),
        "workers_cpu_seconds_sampled": round(workers_cpu, 2),
        "audit_envelopes_us_one_core": _round(audit_us_per_reading(
            ctx.backlog(), ctx.sizes.verify_sample)),
        "ledger_build_seconds": ledger.build_seconds, "argv": argv[1:],
    }
    return result
