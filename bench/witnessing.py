"""Witnessing: cosigning latency from seal to quorum, and witness CPU per checkpoint.

Three ``ledger-witness serve`` processes and a collector with quorum 2, all on loopback. One
device publishes a reading every ``_INTERVAL_S``; with blocks sealed after ``_BLOCK_AGE_S``
each reading becomes one block and one checkpoint. The latency of a checkpoint is the time
from the collector signing it (``checkpoints.signed_ms``) to the collector storing the second
witness's verified cosignature (``cosignatures.received_ms``): what a proof waits for. Witness
CPU is the user + system time of the three witness processes over the run, divided by the
cosignatures they returned.
"""

from __future__ import annotations

import hashlib
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil  # type: ignore[import-untyped]
from paho.mqtt.enums import CallbackAPIVersion

from demo.broker import free_port
from demo.processes import terminate
from provenance.envelope import sign_reading
from provenance.keys import PrivateKey
from provenance.reading import GENESIS_PREV

from .backlog import topic_for, water_reading
from .broker import bench_broker
from .collector_proc import CollectorProcess
from .context import RunContext
from .ledger import enrol, init_ledger, installed_cli
from .mqtt import create_session, wait_connected
from .results import BenchResult, Target

__all__ = ["run_witnessing"]

_WITNESSES = 3
_QUORUM = 2
_INTERVAL_S = 0.25
_BLOCK_AGE_S = 0.05
_CHECKPOINTS = {"full": 200, "quick": 40, "tiny": 4}
TARGET_P99_S = 1.0  # a proof should not wait a noticeable time for its cosignatures
_CLIENT_ID = "bench-witness"


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"witness exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"witness on port {port} did not start")


def _start_witnesses(workdir: Path, origin: str, log_vkeys: list[str]
                     ) -> tuple[list[subprocess.Popen[bytes]], list[tuple[str, str]]]:
    cli = installed_cli("ledger-witness", "witness")
    procs: list[subprocess.Popen[bytes]] = []
    endpoints: list[tuple[str, str]] = []
    keys = ", ".join(f'"{k}"' for k in log_vkeys)
    for n in range(1, _WITNESSES + 1):
        home = workdir / f"witness{n}"
        home.mkdir()
        vkey = subprocess.run([*cli, "init", f"witness{n}.bench/w", "--key",
                               str(home / "witness.key")], check=True, capture_output=True,
                              text=True).stdout.strip()
        port = free_port()
        (home / "witness.toml").write_text(
            f'key_file = "witness.key"\ndatabase = "state.db"\nlisten = "127.0.0.1:{port}"\n'
            f'[[log]]\norigin = "{origin}"\nvkeys = [{keys}]\n')
        proc = subprocess.Popen([*cli, "serve", "-c", str(home / "witness.toml")],
                                stdout=subprocess.DEVNULL,
                                stderr=(home / "witness.log").open("wb"))
        procs.append(proc)
        _wait_port(port, proc)
        endpoints.append((f"http://127.0.0.1:{port}", vkey))
    return procs, endpoints


def _cpu(procs: list[subprocess.Popen[bytes]]) -> float:
    total = 0.0
    for p in procs:
        t = psutil.Process(p.pid).cpu_times()
        total += t.user + t.system
    return total


def _latencies(db: Path, quorum: int) -> tuple[list[float], int, int]:
    """Seconds from signing to the quorum-th cosignature, per checkpoint; checkpoints; cosigs."""
    con = sqlite3.connect(db)
    try:
        signed = dict(con.execute("SELECT size, signed_ms FROM checkpoints").fetchall())
        got: dict[int, list[int]] = {}
        for size, received in con.execute("SELECT size, received_ms FROM cosignatures"):
            got.setdefault(size, []).append(received)
    finally:
        con.close()
    out = [(sorted(r)[quorum - 1] - signed[s]) / 1000 for s, r in got.items()
           if len(r) >= quorum and s in signed]
    return sorted(out), len(signed), sum(len(r) for r in got.values())


def _drive(col: CollectorProcess, host: str, port: int, db: Path, device_key: PrivateKey,
           count: int, procs: list[subprocess.Popen[bytes]]) -> float:
    """Publish ``count`` readings a pace apart; wait until the witnesses are done; return the
    witnesses' CPU seconds meanwhile."""
    # Readings one at a time, each its own block: first the collector is up and connected.
    col.wait_until(lambda: '"event":"broker_connected"' in col.log_path.read_text(
        errors="replace"), timeout=60)
    time.sleep(0.5)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    wait_connected(client, host, port)
    cpu0 = _cpu(procs)
    prev, start = GENESIS_PREV, time.monotonic()
    try:
        for seq in range(count):
            time.sleep(max(0.0, start + seq * _INTERVAL_S - time.monotonic()))
            envelope = sign_reading(water_reading("witnessed-01", seq, prev,
                                                  time.time_ns() // 1_000_000), device_key)
            prev = hashlib.sha256(envelope).digest()
            client.publish(topic_for("witnessed-01"), envelope, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()

    def done() -> bool:
        # Every reading sealed, and the newest checkpoint cosigned by every witness.
        con = sqlite3.connect(db)
        try:
            size = con.execute("SELECT MAX(size) FROM checkpoints").fetchone()[0] or 0
            row = con.execute("SELECT COUNT(*) FROM cosignatures WHERE size = ?",
                              (size,)).fetchone()
        finally:
            con.close()
        return size >= count and bool(row and row[0] >= _WITNESSES)

    col.wait_until(done, timeout=120)
    time.sleep(0.5)
    return _cpu(procs) - cpu0


def run_witnessing(ctx: RunContext) -> BenchResult:
    result = BenchResult("witness", "Witness cosigning: seal → quorum latency, witness CPU")
    count = _CHECKPOINTS.get(ctx.sizes.name, 40)
    workdir = ctx.scratch("witness")
    files = init_ledger(workdir)
    vkey_file = files.key.with_name(files.key.stem + ".vkey")
    log_vkeys = vkey_file.read_text().split()
    origin = log_vkeys[0].split("+", 1)[0]
    device_key = PrivateKey.generate()
    enrol(files.db, [("witnessed-01", device_key.public)])
    procs, endpoints = _start_witnesses(workdir, origin, log_vkeys)
    config = workdir / "collector.toml"
    config.write_text(f"[witnessing]\nquorum = {_QUORUM}\n" + "".join(
        f'[[witnessing.witness]]\nurl = "{url}"\nvkey = "{vkey}"\n' for url, vkey in endpoints))
    try:
        with bench_broker(workdir / "broker") as broker:
            # The session exists before the first publish, so nothing is lost while the
            # collector starts.
            create_session(broker.host, broker.port, _CLIENT_ID)
            col = CollectorProcess(files, broker.url, _CLIENT_ID, workdir / "collector.log",
                                   ["--config", str(config), "--block-age", str(_BLOCK_AGE_S),
                                    "--workers", "1"]).start()
            try:
                cpu = _drive(col, broker.host, broker.port, files.db, device_key, count, procs)
            finally:
                col.stop()
    finally:
        for p in procs:
            terminate(p, 10)
    lat, checkpoints, cosignatures = _latencies(files.db, _QUORUM)
    lat, checkpoints, cosignatures = _latencies(files.db, _QUORUM)
    if not lat:
        raise RuntimeError("no checkpoint reached the quorum")
    result.add("checkpoints", "checkpoints signed", checkpoints, "")
    result.add("quorum_share", "checkpoints reaching the quorum", len(lat) / checkpoints, "",
               Target(">=", 0.99))
    result.add("p50_s", "seal → quorum (2 of 3) latency, p50", _pct(lat, 50), "s")
    result.add("p99_s", "seal → quorum (2 of 3) latency, p99", _pct(lat, 99), "s",
               Target("<=", TARGET_P99_S))
    result.add("cpu_ms", "witness CPU per cosigned checkpoint", cpu / cosignatures * 1000, "ms")
    result.params = {"witnesses": _WITNESSES, "quorum": _QUORUM, "interval_s": _INTERVAL_S,
                     "block_age_s": _BLOCK_AGE_S, "cosignatures": cosignatures,
                     "witness_cpu_seconds": round(cpu, 3),
                     "latency_ms": {str(q): round(_pct(lat, q) * 1000, 1)
                                    for q in (50, 90, 99, 100)}}
    return result
