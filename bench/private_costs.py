"""What private readings cost: the agent's signing time and memory, the collector's ingest rate.

``python -m bench.private_costs [--readings N] [--workdir DIR]`` measures, in one run:

* **Agent.** The agent's own chain signer (``agent.signer.ChainSigner``) signing oximeter-shaped
  readings, public and private (salt, commitment, COSE_Encrypt0, private message; one reader,
  grants computed once per data key), alternating batches; microseconds per reading, and the
  process's RSS before and after 100,000 private readings (memory stays bounded).
* **Collector.** The same queued backlog drained by a fresh collector into a fresh ledger, with
  none and with 25 % of the readings private (every fourth device is private), alternating,
  three times each; the rate is readings from the first arrival to the seal of the last, and
  the collector's CPU time per reading (all its processes) is taken beside it: on a busy
  machine the CPU time moves much less than the wall-clock rate.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.clock import Clock
from agent.data_keys import DataKeys, ValueSealer
from agent.signer import ChainHead, ChainSigner, Draft
from provenance.keys import PrivateKey
from provenance.senml import Measurement
from provenance.wire import PRIVATE_FILTER, READING_FILTER, private_topic, reading_topic

from .broker import bench_broker
from .collector_proc import CollectorProcess, cpu_seconds
from .ledger import enrol, init_ledger, totals
from .mqtt import create_session, publish

DEVICES = 20
_MB = 1024 * 1024


def _values(i: int) -> tuple[Measurement, ...]:
    return (Measurement(name="spo2", value=90 + i % 10, unit="%"),
            Measurement(name="pulse_rate", value=60 + i % 40, unit="beat/min"),
            Measurement(name="perfusion_index", value=2.03, unit="%"),
            Measurement(name="samples", value=60, unit="count"))


def _signer(device_id: str, key: PrivateKey, workdir: Path, reader: PrivateKey) -> ChainSigner:
    sealer = ValueSealer(DataKeys(workdir / f"{device_id}-keys.json"), [reader.public])
    return ChainSigner(device_id, key, 1, ChainHead(), Clock("synced"), sealer=sealer)


def _sign(signer: ChainSigner, i: int, private: bool) -> bytes:
    draft = Draft("oximeter", "pulse-oximeter", 1_780_000_000_000 + i, True, _values(i),
                  {"finger_out": False}, subject="patient-0017" if private else None)
    entry, head = signer.sign(draft, signer.head)
    signer.advance(head)
    return entry.envelope


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / _MB


def agent_costs(workdir: Path, count: int) -> dict[str, Any]:
    reader = PrivateKey.generate()
    key = PrivateKey.generate()
    signer = _signer("bench-oxi", key, workdir, reader)
    us: dict[bool, list[float]] = {False: [], True: []}
    batch = max(100, count // 20)
    for round_ in range(20):  # alternate, so the machine's noise falls on both
        for private in (False, True):
            started = time.perf_counter()
            for i in range(batch):
                _sign(signer, round_ * batch + i, private)
            us[private].append((time.perf_counter() - started) / batch * 1e6)
    rss_before = _rss_mb()
    for i in range(100_000):
        _sign(signer, i, True)
    rss_after = _rss_mb()
    public_us, private_us = statistics.median(us[False]), statistics.median(us[True])
    return {"public_us_per_reading": round(public_us, 1),
            "private_us_per_reading": round(private_us, 1),
            "private_over_public": round(private_us / public_us, 2),
            "rss_mb_before_100k_private": round(rss_before, 1),
            "rss_mb_after_100k_private": round(rss_after, 1)}


def _backlog(count: int, private_share: bool, workdir: Path
             ) -> tuple[list[tuple[str, bytes]], list[tuple[str, Any]]]:
    reader = PrivateKey.generate()
    keys = [PrivateKey.generate() for _ in range(DEVICES)]
    signers = [_signer(f"oxi-{d:02d}", k, workdir, reader) for d, k in enumerate(keys)]
    messages = []
    for i in range(count):
        d = i % DEVICES
        private = private_share and d % 4 == 0
        device = f"oxi-{d:02d}"
        topic = private_topic(device) if private else reading_topic(device)
        messages.append((topic, _sign(signers[d], i, private)))
    return messages, [(f"oxi-{d:02d}", k.public) for d, k in enumerate(keys)]


def collector_rate(workdir: Path, messages: list[tuple[str, bytes]],
                   devices: list[tuple[str, Any]]) -> dict[str, Any]:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    broker = bench_broker(workdir / "broker")
    broker.start()
    try:
        files = init_ledger(workdir)
        enrol(files.db, devices)
        client_id = "bench-private-collector"
        for topic in (READING_FILTER, PRIVATE_FILTER):
            create_session(broker.host, broker.port, client_id, topic=topic)
        publish(broker.host, broker.port, messages)
        with CollectorProcess(files, broker.url, client_id, workdir / "collector.log") as col:
            col.wait_until(lambda: totals(files.db).sealed >= len(messages), timeout=900)
            main_cpu, workers_cpu = cpu_seconds(col.pid)
            col.stop()
    finally:
        broker.stop()
    t = totals(files.db)
    assert t.first_received_ms is not None and t.last_sealed_ms is not None
    if t.readings != len(messages) or t.quarantined:
        raise RuntimeError(f"{t.readings} readings, {t.quarantined} quarantined of "
                           f"{len(messages)}")
    seconds = (t.last_sealed_ms - t.first_received_ms) / 1000
    return {"per_s": round(len(messages) / seconds, 1), "seconds": round(seconds, 2),
            "cpu_us_per_reading": round((main_cpu + workers_cpu) / len(messages) * 1e6, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.private_costs", description=__doc__)
    parser.add_argument("--readings", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=Path("bench-results/private"))
    parser.add_argument("--repeats", type=int, default=3,
                        help="drains of each backlog, alternating (default 3)")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"agent": agent_costs(args.workdir / "agent", args.readings)}
    print(json.dumps(out["agent"]), file=sys.stderr)
    runs: dict[str, list[float]] = {"none": [], "25%": []}
    cpu: dict[str, list[float]] = {"none": [], "25%": []}
    backlogs: dict[str, Callable[[], Any]] = {
        "none": lambda: _backlog(args.readings, False, args.workdir / "keys-none"),
        "25%": lambda: _backlog(args.readings, True, args.workdir / "keys-25"),
    }
    built = {name: make() for name, make in backlogs.items()}
    for attempt in range(args.repeats):
        for name in ("none", "25%"):
            messages, devices = built[name]
            r = collector_rate(args.workdir / f"ingest-{name.strip('%')}-{attempt}", messages,
                               devices)
            runs[name].append(r["per_s"])
            cpu[name].append(r["cpu_us_per_reading"])
            print(f"ingest {name} private: {r}", file=sys.stderr)
    out["collector"] = {name: {"runs_per_s": rates, "median_per_s": statistics.median(rates),
                               "cpu_us_per_reading": cpu[name],
                               "median_cpu_us_per_reading": statistics.median(cpu[name])}
                        for name, rates in runs.items()}
    out["collector"]["rate_25_over_none"] = round(
        out["collector"]["25%"]["median_per_s"] / out["collector"]["none"]["median_per_s"], 3)
    out["collector"]["cpu_25_over_none"] = round(
        out["collector"]["25%"]["median_cpu_us_per_reading"]
        / out["collector"]["none"]["median_cpu_us_per_reading"], 3)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
