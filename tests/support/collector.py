"""Helpers for collector tests: simulated devices with real keys, a collector subprocess,
a fast QoS 1 publisher, and direct reads of the ledger database."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion

from collector.cli import cli
from provenance.envelope import Envelope, sign_reading
from provenance.keys import PrivateKey
from provenance.reading import GENESIS_PREV, Gap, Reading
from provenance.senml import Measurement
from provenance.wire import READING_FILTER, reading_topic
from tests.support.broker import Broker

REPO = Path(__file__).resolve().parents[2]
BASE_TIME_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def topic_of(device_id: str) -> str:
    return reading_topic(device_id)


@dataclass
class Device:
    """A device with a real P-256 key that signs a correct hash chain of readings."""

    device_id: str
    key: PrivateKey = field(default_factory=PrivateKey.generate)
    seq: int = 0
    boot: int = 1
    prev: bytes = GENESIS_PREV
    sent: list[bytes] = field(default_factory=list)

    @property
    def topic(self) -> str:
        return topic_of(self.device_id)

    def reading(self, **overrides: Any) -> Reading:
        base = Reading(
            device_id=self.device_id, seq=self.seq, boot=self.boot,
            time_ms=overrides.pop("time_ms", now_ms() - 1000), clock_synced=True,
            prev=self.prev, kind="water",
            measurements=(Measurement(name="ph", value=7.0 + (self.seq % 10) / 10, unit="pH"),
                          Measurement(name="temp", value=21.5, unit="Cel")),
        )
        return replace(base, **overrides)

    def next(self, **overrides: Any) -> bytes:
        """Sign the next reading of the chain and advance it."""
        envelope = sign_reading(self.reading(**overrides), self.key)
        self.advance(envelope)
        return envelope

    def advance(self, envelope: bytes) -> None:
        self.seq += 1
        self.prev = Envelope.decode(envelope).hash
        self.sent.append(envelope)

    def gap_record(self, first: int, last: int) -> bytes:
        return self.next(kind="gap", gap=Gap(first, last), measurements=())

    def pem(self) -> str:
        return self.key.public.to_pem()


def make_devices(n: int, prefix: str = "dev") -> list[Device]:
    return [Device(f"{prefix}-{i:03d}") for i in range(n)]


def run_cli(*args: str, input: str | None = None) -> Any:
    """Run ``ledger-collector`` in-process; returns click's Result (exit_code, output)."""
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


@dataclass
class Ledger:
    """A ledger directory: database, collector key, and direct SQL access for assertions."""

    root: Path

    @property
    def db(self) -> str:
        return str(self.root / "ledger.db")

    @property
    def key(self) -> str:
        return str(self.root / "collector-key.pem")

    @property
    def public_key(self) -> str:
        return str(self.root / "collector-key.pub.pem")

    @property
    def vkey(self) -> str:
        """The log's note verifier keys, one a line (a trust policy file)."""
        return str(self.root / "collector-key.vkey")

    def init(self) -> Ledger:
        result = run_cli("init", "--db", self.db, "--key", self.key)
        assert result.exit_code == 0, result.output
        return self

    def enrol(self, devices: Iterable[Device]) -> None:
        for d in devices:
            result = run_cli("devices", "add", "--db", self.db, d.device_id, "-", input=d.pem())
            assert result.exit_code == 0, result.output

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        con = sqlite3.connect(self.db, timeout=30)
        try:
            return con.execute(query, params).fetchall()
        finally:
            con.close()

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        con = sqlite3.connect(self.db, timeout=30)
        try:
            con.execute(statement, params)
            con.commit()
        finally:
            con.close()

    def count(self, table: str) -> int:
        """Rows of ``table``; for ``readings``, the device readings (not the collector's
        statements, which share the table: see provenance/statement.py)."""
        where = " WHERE device_id != '@collector'" if table == "readings" else ""
        return int(self.sql(f"SELECT COUNT(*) FROM {table}{where}")[0][0])

    def statements(self) -> int:
        return int(self.sql("SELECT COUNT(*) FROM readings WHERE device_id = '@collector'")[0][0])

    def sealed(self) -> int:
        """Device readings sealed into blocks (statements not counted)."""
        return int(self.sql(
            "SELECT COUNT(*) FROM readings WHERE device_id != '@collector' AND id < "
            "(SELECT COALESCE(MAX(first_reading_id + leaf_count), 1) FROM blocks)")[0][0])

    def stats(self) -> dict[str, Any]:
        result = run_cli("stats", "--db", self.db, "--json")
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.output))

    def quarantine(self) -> list[tuple[str, str | None, int | None, int]]:
        return [tuple(r) for r in self.sql(
            "SELECT reason, COALESCE(device_id, topic_device), seq, times_seen FROM quarantine "
            "ORDER BY id")]


class CollectorProcess:
    """``python -m collector run`` as a child process, with its log events collected."""

    def __init__(self, ledger: Ledger, broker: Broker, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.args = [sys.executable, "-m", "collector", "run", "--db", ledger.db, "--key",
                     ledger.key, "--broker", broker.url, *extra]
        self.env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()

    def start(self, *, wait_connected: bool = True, timeout: float = 30) -> CollectorProcess:
        self.events.clear()
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=REPO, text=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        if wait_connected:
            self.wait_event("broker_connected", timeout=timeout)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with self._cond:
                self.lines.append(line)
                with contextlib.suppress(json.JSONDecodeError):
                    self.events.append(json.loads(line))
                self._cond.notify_all()

    def wait_event(self, name: str, timeout: float = 30,
                   where: Callable[[dict[str, Any]], bool] = lambda e: True) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events:
                    if e.get("event") == name and where(e):
                        return e
                if self.proc is not None and self.proc.poll() is not None and not (
                    self._reader and self._reader.is_alive()
                ):
                    raise AssertionError(f"collector exited ({self.proc.returncode}) before "
                                         f"{name!r}:\n{''.join(self.lines[-30:])}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {name!r} event within {timeout} s:\n"
                                         f"{''.join(self.lines[-30:])}")
                self._cond.wait(min(left, 0.2))

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM: drain, seal, exit 0."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float = 60) -> int:
        """Wait for the process to end on its own (after a signal already sent): its return
        code. Never signals again: a second SIGTERM that lands after the event loop closed
        would kill a collector that was shutting down cleanly."""
        assert self.proc is not None
        rc = self.proc.wait(timeout)
        if self._reader:
            self._reader.join(5)
        return rc

    def kill(self) -> None:
        """SIGKILL: no cleanup at all (the worker processes die with their parent's pipes)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        if self._reader:
            self._reader.join(5)

    def __enter__(self) -> CollectorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


class Publisher:
    """A paho client publishing QoS 1 as fast as the broker takes it."""

    def __init__(self, broker: Broker, client_id: str = "test-publisher", *,
                 tls: dict[str, str] | None = None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if tls is not None:
            self.client.tls_set(**tls)
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, messages: Iterable[tuple[str, bytes]], timeout: float = 60) -> int:
        """Publish all, waiting for every PUBACK (in windows: packet ids wrap at 65,535)."""
        count = 0
        window: list[mqtt.MQTTMessageInfo] = []
        for topic, payload in messages:
            window.append(self.client.publish(topic, payload, qos=1))
            if len(window) == 20_000:
                count += self._settle(window, timeout)
        return count + self._settle(window, timeout)

    @staticmethod
    def _settle(window: list[mqtt.MQTTMessageInfo], timeout: float) -> int:
        for info in window:
            info.wait_for_publish(timeout)
            assert info.is_published(), "broker did not acknowledge a publish"
        n = len(window)
        window.clear()
        return n

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_session(broker: Broker, client_id: str = "sensorledger-collector") -> None:
    """Register the collector's persistent subscription without running it (MQTT 5)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    done = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=mqtt.MQTTv5)
    c.on_subscribe = lambda *a: done.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect(broker.host, broker.port, clean_start=False, properties=props)
    c.loop_start()
    c.subscribe(READING_FILTER, qos=1)
    assert done.wait(10), "subscription not acknowledged"
    c.disconnect()
    c.loop_stop()


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces, so split after the ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def signal_name(rc: int) -> str:
    return signal.Signals(-rc).name if rc < 0 else str(rc)
