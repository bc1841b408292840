"""``python -m bench.audit_profile``: where the audit's CPU goes, per reading, in one process.

Two figures that the shared machine's noise barely moves, because both sides of each ratio are
timed in the same process, interleaved, in the same minute:

* ``worker``: µs per reading of the audit worker's function (``audit_envelopes``) and of
  ingest's (``verify_batch``) on batches of signed envelopes, against a bare pyca/cryptography
  ES256 verify of the same signatures (DER and Sig_structure built before the clock starts).
  The difference is the Python around the signature.
* ``main``: the audit over a small cached ledger, run in this process with a pool of verification
  processes as ``ledger-collector audit`` runs it; the CPU of this process (reading rows, the
  log tree, chains, statements) and of the workers, per reading.

``--cprofile`` adds the top functions by own time (of the worker function, or of the main
process). Examples::

    python -m bench.audit_profile worker --readings 20000
    python -m bench.audit_profile worker --cprofile
    python -m bench.audit_profile main --readings 200000 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import resource
import statistics
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .backlog import Backlog, load_or_build_backlog, topic_for
from .collector_proc import thread_cpu_seconds

__all__ = ["main"]

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_BATCH = 1000  # a block's readings: what the audit sends a worker at a time


def _top(profile: cProfile.Profile, lines: int) -> str:
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(lines)
    return out.getvalue()


def profile_worker(backlog: Backlog, readings: int, rounds: int, cprofile: bool) -> None:
    from collector.admission.registry import DeviceKey, RegistrySnapshot
    from collector.admission.verify import verify_batch
    from collector.tools.audit import audit_envelopes
    from provenance.envelope import Envelope

    keys = [DeviceKey(d.public.kid, d.device_id, d.public.der, 0) for d in backlog.devices]
    snapshot = RegistrySnapshot.of(1, keys)
    publics = [d.public.key for d in backlog.devices]
    sample = backlog.envelopes[:readings]
    envelopes = [raw for _, raw in sample]
    batches = [envelopes[i:i + _BATCH] for i in range(0, len(envelopes), _BATCH)]
    now_ms = time.time_ns() // 1_000_000
    items = [(topic_for(backlog.devices[i].device_id), raw, now_ms) for i, raw in sample]
    ingest = [items[i:i + _BATCH] for i in range(0, len(items), _BATCH)]
    jobs = []
    for index, raw in sample:
        msg = Envelope.decode(raw).message
        r, s = (int.from_bytes(msg.signature[k:k + 32], "big") for k in (0, 32))
        jobs.append((publics[index], encode_dss_signature(r, s), msg.to_be_signed()))

    bare_jobs = [jobs[i:i + _BATCH] for i in range(0, len(jobs), _BATCH)]

    def bare(index: int) -> None:
        for key, signature, tbs in bare_jobs[index]:
            key.verify(signature, tbs, _ECDSA_SHA256)

    def audit(index: int) -> None:
        audit_envelopes(snapshot, batches[index])

    def verify(index: int) -> None:
        verify_batch(snapshot, ingest[index], 300_000)

    audit(0)  # the verifier is built once per process: not timed
    cases = {"bare cryptography verify": bare, "audit worker (audit_envelopes)": audit,
             "ingest worker (verify_batch)": verify}
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        # CPU time of this process, the cases interleaved batch by batch: a busy machine
        # slows every case alike and other processes' work is not counted.
        spent = dict.fromkeys(cases, 0.0)
        for index in range(len(batches)):
            for name, fn in cases.items():
                start = time.process_time()
                fn(index)
                spent[name] += time.process_time() - start
        for name, seconds in spent.items():
            runs[name].append(seconds / len(envelopes) * 1e6)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    base = medians["bare cryptography verify"]
    print(f"{len(envelopes)} envelopes in batches of {_BATCH}, median of {rounds} rounds "
          "(µs of CPU per reading, one process):")
    for name, value in medians.items():
        print(f"  {name:34} {value:7.1f} µs   (+{value - base:5.1f} µs over the bare verify)")
    if cprofile:
        profile = cProfile.Profile()
        profile.enable()
        for index in range(len(batches)):
            audit(index)
        profile.disable()
        print(_top(profile, 25))


def profile_main(workdir: Path, readings: int, devices: int, workers: int,
                 cprofile: bool) -> None:
    from collector.admission.workers import WorkerPool
    from collector.ledger.sqlite_store import SQLiteStore
    from collector.tools.audit import run_audit
    from provenance.keyfile import load_public_key

    from .big_ledger import cached_ledger

    ledger = cached_ledger(workdir / "cache", devices, readings)
    key = load_public_key(ledger.files.public_key)

    async def go() -> tuple[float, float, float, dict[str, float]]:
        pool = WorkerPool(workers)
        await pool.start()
        store = await SQLiteStore.open(ledger.files.db)
        try:
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            start_cpu, start = time.process_time(), time.perf_counter()
            threads_before = thread_cpu_seconds(os.getpid())
            if cprofile:
                profile = cProfile.Profile()
                profile.enable()
            report = await run_audit(store, key, pool)
            if cprofile:
                profile.disable()
            main_cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start
            named = {str(t.native_id): t.name for t in threading.enumerate()}
            threads = {named.get(name, name): seconds - threads_before.get(name, 0.0)
                       for name, seconds in thread_cpu_seconds(os.getpid()).items()}
        finally:
            await store.close()
            await pool.close()  # reaps the workers: their CPU lands in RUSAGE_CHILDREN
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if not report.ok:
            raise SystemExit(report.render())
        if cprofile:
            print(_top(profile, 30))
        workers_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
        return main_cpu, workers_cpu, wall, threads

    main_cpu, workers_cpu, wall, threads = asyncio.run(go())
    n = ledger.readings
    print(f"audit of {n} readings, {workers} worker(s): {n / wall:,.0f} readings/s, "
          f"{wall:.1f} s wall")
    print(f"  main process  {main_cpu / n * 1e6:6.1f} µs CPU per reading; by thread: " + ", ".join(
              f"{name} {seconds / n * 1e6:.1f}" for name, seconds in threads.items()))
    print(f"  workers       {workers_cpu / n * 1e6:6.1f} µs CPU per reading "
          "(including their start-up)")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.audit_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("worker", "main"))
    p.add_argument("--readings", type=int, help="worker: 20000 envelopes; main: a ledger of "
                   "200000 readings")
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--backlog", type=int, default=100_000,
                   help="worker: the signed backlog to take envelopes from (the benchmark's: "
                        "100,000, cached in the workdir)")
    p.add_argument("--workdir", type=Path, default=Path("bench-results"))
    p.add_argument("--cprofile", action="store_true")
    opts = p.parse_args(argv)
    if opts.what == "worker":
        readings = opts.readings or 20_000
        backlog, _ = load_or_build_backlog(opts.workdir / "cache", opts.devices,
                                           max(readings, opts.backlog))
        profile_worker(backlog, readings, opts.rounds, opts.cprofile)
    else:
        profile_main(opts.workdir, opts.readings or 200_000, opts.devices, opts.workers,
                     opts.cprofile)


if __name__ == "__main__":
    main()
