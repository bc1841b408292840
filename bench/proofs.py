"""Issue item 4: proof files at 1,000,000 readings (format 2, against the latest checkpoint of
the one log tree), in-process and as whole processes.

Generation is timed in-process (``collector.tools.proofs.build_proof`` on an open store, then the
file's CBOR encoding), over readings drawn at random (fixed seed) across the ledger. Checking is
timed as a user meets it: ``ledger-collector verify-proof`` as a fresh process, interpreter
start-up and imports included.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import subprocess
import time
from pathlib import Path

from collector.ledger.sqlite_store import SQLiteStore
from collector.tools.proofs import build_proof
from provenance.keyfile import load_public_key
from provenance.logproof import verify_any_proof
from provenance.trust import TrustPolicy

from .big_ledger import BigLedger, cached_ledger
from .context import RunContext
from .ledger import collector_cli
from .results import BenchResult, Target

__all__ = ["run_proofs"]

TARGET_BUILD_MS = 20.0
TARGET_VERIFY_PROCESS_S = 0.5
_PROCESS_RUNS = 7


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _build(ledger: BigLedger, picks: list[tuple[str, int]],
                 out: Path) -> tuple[list[float], Path]:
    store = await SQLiteStore.open(ledger.files.db)
    times: list[float] = []
    try:
        for device_id, seq in picks:
            start = time.perf_counter()
            data = (await build_proof(store, device_id, seq)).encode()
            times.append((time.perf_counter() - start) * 1000)
    finally:
        await store.close()
    out.write_bytes(data)  # the last one, for the whole-process check
    return times, out


def run_proofs(ctx: RunContext) -> BenchResult:
    result = BenchResult("proofs", "Proof files at the big ledger's size")
    ledger = cached_ledger(ctx.cache_dir, ctx.sizes.devices, ctx.sizes.audit_readings)
    rng = random.Random(7)
    picks = [(rng.choice(ledger.devices), rng.randrange(ledger.readings_per_device))
             for _ in range(ctx.sizes.proof_samples)]
    workdir = ctx.scratch("proofs")
    times, proof_file = asyncio.run(_build(ledger, picks, workdir / "reading.proof"))
    policy = TrustPolicy(collector_keys=(load_public_key(ledger.files.public_key),))
    report = verify_any_proof(proof_file.read_bytes(), policy)
    if not report.ok:
        raise RuntimeError(f"a generated proof does not verify:\n{report.render()}")

    argv = [*collector_cli(), "verify-proof", str(proof_file),
            "--collector-key", str(ledger.files.public_key)]
    walls = []
    for _ in range(_PROCESS_RUNS):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
        walls.append(time.perf_counter() - start)
    build_argv = [*collector_cli(), "proof", "--db", str(ledger.files.db), picks[0][0],
                  str(picks[0][1]), "-o", str(workdir / "cli.proof")]
    start = time.perf_counter()
    subprocess.run(build_argv, check=True, capture_output=True, timeout=60)
    build_wall = time.perf_counter() - start

    result.add("build_median_ms", "generation, median (in-process)", statistics.median(times),
               "ms", Target("<=", TARGET_BUILD_MS))
    result.add("build_p95_ms", "generation, p95 (in-process)", _percentile(times, 0.95), "ms")
    result.add("verify_process_s", "verify-proof, whole process, median",
               statistics.median(walls), "s", Target("<=", TARGET_VERIFY_PROCESS_S))
    result.add("proof_process_s", "ledger-collector proof, whole process", build_wall, "s")
    result.params = {
        "ledger_readings": ledger.readings, "samples": len(times),
        "verify_process_runs_s": [round(w, 3) for w in walls],
        "proof_file_bytes": proof_file.stat().st_size,
    }
    return result
