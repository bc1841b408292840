"""Receipts on: real agents through Mosquitto to a real collector; sign → sealed, sign →
receipt, and the agents' spool depth in steady state.

Each agent runs the unchanged ``sensor-agent`` (with the ``bench-synthetic`` driver: a batch
of water-quality samples every 0.1 s) in its default delivery mode, receipts: a reading leaves
the spool only when a collector receipt covers it. The collector runs with its defaults
(1,000-reading or 1-second blocks). Latency sign → sealed is read from the ledger (block seal
time minus signed device time); sign → receipt is the arrival, at a subscriber beside the
agents, of the first receipt whose ``sealed_through`` covers the reading. The spool depth is
sampled from each agent's spool (read-only) every 0.25 s after a warm-up.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from demo.processes import terminate
from provenance.keyfile import load_private_key, save_private_key
from provenance.keys import PrivateKey, PublicKey
from provenance.receipt import SignedReceipt
from provenance.wire import RECEIPT_FILTER

from .broker import bench_broker
from .collector_proc import CollectorProcess
from .context import RunContext
from .ledger import enrol, init_ledger, totals
from .live import latencies_ms
from .mqtt import create_session
from .results import BenchResult

__all__ = ["run_receipts"]

_CLIENT_ID = "bench-receipts-collector"
_POLL_S = 0.1
_SAMPLE_S = 0.25


def _plan(size: str) -> tuple[int, int, float]:
    """(agents, readings per poll per agent, seconds) for a size."""
    return {"full": (4, 25, 60.0), "quick": (2, 10, 15.0)}.get(size, (1, 2, 3.0))


class _ReceiptLog:
    """Arrival time (ms) and sealed_through of every receipt, per device."""

    def __init__(self, host: str, port: int) -> None:
        self.by_device: dict[str, list[tuple[int, int]]] = {}
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-receipt-log")
        self._client.on_connect = lambda c, *_: c.subscribe(RECEIPT_FILTER, qos=1)
        self._client.on_message = self._on_message
        self._client.connect(host, port)
        self._client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time_ns() // 1_000_000
        r = SignedReceipt.decode(bytes(msg.payload)).receipt
        if r.sealed_through is not None:
            with self._lock:
                self.by_device.setdefault(r.device_id, []).append((now, r.sealed_through))

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def _agent_config(workdir: Path, device_id: str, broker_url: str, batch: int,
                  delivery: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "device-key.pem"
    save_private_key(PrivateKey.generate(), key)
    path = workdir / "agent.toml"
    path.write_text(
        f'device_id = "{device_id}"\nkey_file = "{key}"\nstate_dir = "{workdir / "state"}"\n'
        f'delivery = "{delivery}"\nstatus_interval_s = 1\n\n[broker]\n'
        f'url = "{broker_url}"\n\n'
        f'[[sensors]]\nname = "synthetic"\ndriver = "bench-synthetic"\n'
        f"interval_s = {_POLL_S}\nbatch = {batch}\n")
    return path


def _spool_depth(spool: Path) -> tuple[int, int] | None:
    """(readings, of which waiting for a receipt), or None if not readable right now."""
    try:
        con = sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=1)
        try:
            row = con.execute("SELECT COUNT(*), COALESCE(SUM(sent_ms IS NOT NULL), 0) "
                              "FROM spool WHERE is_gap = 0").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return int(row[0]), int(row[1])


def _devices_with_readings(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(con.execute("SELECT COUNT(*) FROM device_state").fetchone()[0])
    finally:
        con.close()


def _receipt_latencies(db: Path, log: dict[str, list[tuple[int, int]]]) -> list[int]:
    """Per reading: arrival of the first receipt covering it minus its signed time."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT device_id, seq, time_ms FROM readings").fetchall()
    finally:
        con.close()
    firsts: dict[str, tuple[list[int], list[int]]] = {}
    for device, entries in log.items():
        entries.sort()
        arrivals, marks, best = [], [], -1
        for arrival, through in entries:  # running maximum: the first arrival covering a seq
            if through > best:
                best = through
                arrivals.append(arrival)
                marks.append(through)
        firsts[device] = (marks, arrivals)
    out = []
    for device, seq, time_ms in rows:
        marks, arrivals = firsts.get(device, ([], []))
        i = bisect.bisect_left(marks, seq)
        if i < len(marks):
            out.append(arrivals[i] - time_ms)
    return out


def _pct(ordered: list[int], q: float) -> float:
    return float(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))])


@dataclass(slots=True)
class _Run:
    sealed: list[int]  # ms, sign → sealed block, sorted
    to_receipt: list[int]  # ms, sign → receipt, sorted (empty without receipts)
    depths: list[int]  # spool depth samples, sorted
    waiting: list[int]
    params: dict[str, object]


def _run(ctx: RunContext, workdir: Path, delivery: str) -> _Run:
    agents_n, batch, seconds = _plan(ctx.sizes.name)
    warmup = min(10.0, seconds / 4)
    depths: list[int] = []
    waiting: list[int] = []
    with bench_broker(workdir / "broker") as broker, ExitStack() as stack:
        files = init_ledger(workdir)
        configs = [_agent_config(workdir / f"agent-{i}", f"receipt-{i:02d}", broker.url, batch,
                                 delivery) for i in range(agents_n)]
        enrol(files.db, [(f"receipt-{i:02d}", _public(configs[i]))
                         for i in range(agents_n)])
        create_session(broker.host, broker.port, _CLIENT_ID, mqtt5=True)
        log = _ReceiptLog(broker.host, broker.port)
        stack.callback(log.close)
        extra = () if delivery == "receipts" else ("--no-receipts",)
        col = stack.enter_context(CollectorProcess(files, broker.url, _CLIENT_ID,
                                                   workdir / "collector.log", extra))
        procs = []
        for conf in configs:
            out = (conf.parent / "agent.log").open("wb")
            stack.callback(out.close)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "bench.agent_synthetic", "run", "-c", str(conf)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        try:
            # The window opens once every agent has a reading in the ledger (a loaded machine
            # can take seconds to start a Python process).
            col.wait_until(lambda: _devices_with_readings(files.db) >= agents_n, timeout=120)
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                time.sleep(_SAMPLE_S)
                if time.monotonic() - started < warmup:
                    continue
                for conf in configs:
                    got = _spool_depth(conf.parent / "state" / "spool.sqlite")
                    if got is not None:
                        depths.append(got[0])
                        waiting.append(got[1])
        finally:
            for proc in procs:
                terminate(proc, 30)
        statuses = [json.loads((c.parent / "state" / "status.json").read_text())
                    for c in configs]
        col.wait_until(lambda: totals(files.db).sealed >= totals(files.db).readings, timeout=60)
        time.sleep(1.5)  # the last receipts
        col.stop()
    sealed = sorted(latencies_ms(files.db))
    if not sealed or not depths:
        raise RuntimeError(f"nothing measured; see {workdir}")
    signed = sum(s["next_seq"] for s in statuses)
    return _Run(sealed, sorted(_receipt_latencies(files.db, log.by_device)), sorted(depths),
                sorted(waiting), {
        "agents": agents_n, "offered_per_s": agents_n * batch / _POLL_S,
        "achieved_per_s": round(signed / seconds, 1), "seconds": seconds, "warmup_s": warmup,
        "depth_samples": len(depths), "signed": signed, "sealed": len(sealed),
        "waiting_for_receipt_mean": round(sum(waiting) / len(waiting), 1),
        "republished": sum(s.get("receipts", {}).get("republished", 0) for s in statuses),
        "receipts_received": sum(s.get("receipts", {}).get("received", 0) for s in statuses),
        "quarantined": totals(files.db).quarantined,
        "latency_percentiles_ms": {str(q): _pct(sealed, q) for q in (50, 90, 99, 100)},
    })


def run_receipts(ctx: RunContext) -> BenchResult:
    """Receipts on, then the same load PUBACK-only (agents ``delivery = "puback"``, collector
    ``--no-receipts``) in the same run, so the two can be compared."""
    result = BenchResult("receipts", "Receipts on: sign → sealed latency and spool depth")
    on = _run(ctx, ctx.scratch("receipts-on"), "receipts")
    off = _run(ctx, ctx.scratch("receipts-off"), "puback")
    if not on.to_receipt:
        raise RuntimeError("no receipt covered any reading")
    result.add("sealed_p50_s", "receipts on: latency sign → sealed block, p50",
               _pct(on.sealed, 50) / 1000, "s")
    result.add("sealed_p99_s", "receipts on: latency sign → sealed block, p99",
               _pct(on.sealed, 99) / 1000, "s")
    result.add("receipt_p50_s", "receipts on: latency sign → receipt at the agent, p50",
               _pct(on.to_receipt, 50) / 1000, "s")
    result.add("receipt_p99_s", "receipts on: latency sign → receipt at the agent, p99",
               _pct(on.to_receipt, 99) / 1000, "s")
    result.add("spool_depth_mean", "receipts on: spool depth per agent, steady state, mean",
               sum(on.depths) / len(on.depths), "readings")
    result.add("spool_depth_p99", "receipts on: spool depth per agent, steady state, p99",
               _pct(on.depths, 99), "readings")
    result.add("spool_depth_max", "receipts on: spool depth per agent, steady state, max",
               float(on.depths[-1]), "readings")
    result.add("puback_sealed_p50_s", "PUBACK only: latency sign → sealed block, p50",
               _pct(off.sealed, 50) / 1000, "s")
    result.add("puback_sealed_p99_s", "PUBACK only: latency sign → sealed block, p99",
               _pct(off.sealed, 99) / 1000, "s")
    # PUBACK-only, the spool can be empty at every sample: a figure, not a metric (> 0).
    off.params["spool_depth_mean"] = round(sum(off.depths) / len(off.depths), 1)
    result.params = {"receipts": on.params, "puback": off.params}
    return result


def _public(config: Path) -> PublicKey:
    return load_private_key(config.parent / "device-key.pem").public
