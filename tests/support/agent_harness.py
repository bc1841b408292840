"""Running the real agent in tests: test drivers, configs, the agent as a process, a verifying
subscriber, and a throwaway PKI for TLS.

Run as a module (``python -m tests.support.agent_harness run --config F``) it registers the
test drivers below and then is exactly ``sensor-agent``: tests that must SIGKILL the agent
run it this way. The drivers are registered only in that process: the registry is global, and
the hardware tests check that it holds exactly the built-in drivers.

Test drivers (real objects, producing real samples):

* ``test-counter``: ``per_poll`` samples of kind ``counter`` per poll, counting up;
  ``fail_every`` makes every n-th poll raise (a driver bug the agent must survive).
* ``test-broken``: every poll raises.
* ``test-relay``: a self-signing sensor in miniature; signs its own chain with the key in
  ``key_file`` as ``device_id`` and hands over finished envelopes.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion

from hardware.base import DriverStats, Measurement, Sample
from hardware.registry import register
from hardware.settings import Settings
from provenance.envelope import sign_reading
from provenance.keyfile import load_private_key, save_private_key
from provenance.keys import PrivateKey, PublicKey
from provenance.reading import GENESIS_PREV, Reading
from provenance.wire import TOPIC_ROOT
from tests.support.polling import wait_until
from tests.support.signed import SignedReading

REPO = Path(__file__).resolve().parents[2]


# --- test drivers -------------------------------------------------------------------------

class CounterDriver:
    kind = "counter"

    def __init__(self, settings: Settings) -> None:
        self.name = "test-counter"
        self.stats = DriverStats()
        self.count = settings.integer("start", 0, low=0)
        self.per_poll = settings.integer("per_poll", 1, low=1, high=100_000)
        self.fail_every = settings.integer("fail_every", 0, low=0)

    def poll(self) -> list[Sample]:
        self.stats.polls += 1
        if self.fail_every and self.stats.polls % self.fail_every == 0:
            raise RuntimeError("simulated driver fault")
        out = []
        for _ in range(self.per_poll):
            out.append(Sample("counter", (Measurement(name="count", value=self.count, unit=None),)))
            self.count += 1
        self.stats.samples += len(out)
        self.stats.frames_ok += len(out)
        return out

    def close(self) -> None:
        pass


class BrokenDriver:
    kind = "broken"

    def __init__(self, settings: Settings) -> None:
        self.name = "test-broken"
        self.stats = DriverStats()

    def poll(self) -> list[Sample]:
        self.stats.polls += 1
        raise OSError(5, "Input/output error (simulated dead sensor)")

    def close(self) -> None:
        pass


class RelayDriver:
    """A self-signing sensor: its own key, device id, seq and chain."""

    kind = "self-signed"

    def __init__(self, settings: Settings) -> None:
        self.name = "test-relay"
        self.stats = DriverStats()
        self.key = load_private_key(settings.text("key_file"))
        self.device_id = settings.text("device_id")
        self.seq = 0
        self.prev = GENESIS_PREV

    def poll(self) -> list[Sample]:
        self.stats.polls += 1
        reading = Reading(
            device_id=self.device_id, seq=self.seq, boot=1, time_ms=time.time_ns() // 10**6,
            clock_synced=True, prev=self.prev, kind="water-quality",
            measurements=(),
        )
        envelope = sign_reading(reading, self.key)
        self.seq += 1
        self.prev = hashlib.sha256(envelope).digest()
        return [Sample(self.kind, envelope=envelope)]

    def close(self) -> None:
        pass


def register_test_drivers() -> None:
    register("test-counter")(CounterDriver)
    register("test-broken")(BrokenDriver)
    register("test-relay")(RelayDriver)


# --- configs and keys ---------------------------------------------------------------------

def new_key(path: Path) -> PrivateKey:
    key = PrivateKey.generate()
    save_private_key(key, path)
    return key


def write_config(
    workdir: Path, url: str, *, device_id: str = "dev-test", sensors: str | None = None,
    broker_extra: str = "", spool_limit: int = 100_000, heartbeat_s: float = 1.0,
    extra: str = "", delivery: str = "puback",
) -> Path:
    """An agent config in ``workdir`` (key created on first use); returns its path.

    ``delivery`` defaults to "puback" here: most agent tests run a broker and no collector,
    so nothing would ever send a receipt."""
    workdir.mkdir(parents=True, exist_ok=True)
    key_path = workdir / "device.key"
    if not key_path.exists():
        new_key(key_path)
    if sensors is None:
        sensors = '[[sensors]]\nname = "counter"\ndriver = "test-counter"\ninterval_s = 0.02\n'
    path = workdir / "agent.toml"
    path.write_text(
        f'device_id = "{device_id}"\n'
        f'key_file = "device.key"\n'
        f'state_dir = "state"\n'
        f"heartbeat_s = {heartbeat_s}\n"
        f"status_interval_s = 0.2\n"
        f"shutdown_timeout_s = 3\n"
        f'delivery = "{delivery}"\n'
        f"{extra}\n"
        f"[broker]\n"
        f'url = "{url}"\n'
        f"connect_timeout_s = 2\n"
        f"reconnect_min_s = 0.05\n"
        f"reconnect_max_s = 0.5\n"
        f"{broker_extra}\n"
        f"[spool]\n"
        f"max_readings = {spool_limit}\n\n"
        f"{sensors}"
    )
    return path


def device_public_key(workdir: Path) -> PublicKey:
    return load_private_key(workdir / "device.key").public


# --- the agent as a process ---------------------------------------------------------------

@dataclass
class AgentProcess:
    """``sensor-agent run`` (with the test drivers) as a child process."""

    config: Path
    env: dict[str, str] = field(default_factory=dict)
    options: tuple[str, ...] = ()  # global options, before "run" (e.g. --log-format json)
    proc: subprocess.Popen[bytes] | None = None
    log_start: int = 0  # where this process's lines begin in the shared log file

    @property
    def log_path(self) -> Path:
        return self.config.parent / "agent.log"

    def start(self) -> AgentProcess:
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.agent_harness", *self.options, "run",
                 "--config", str(self.config)],
                cwd=REPO, stdout=log, stderr=log, env={**os.environ, **self.env},
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def wait_for_log(self, text: str, timeout: float = 60) -> str:
        """Wait until this process (not an earlier one on the same log) logged ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()[self.log_start:]
            if text in log:
                return log
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the agent log:\n{self.log()}")

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``sensor-agent ARGS`` (with the test drivers registered) as a process."""
    return subprocess.run(
        [sys.executable, "-m", "tests.support.agent_harness", *args], cwd=REPO,
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


# --- a verifying subscriber ---------------------------------------------------------------

class Subscriber:
    """Collects every message under ``sensorledger/v1/#`` with a persistent session, so it
    keeps what the broker queued for it across a broker restart (the broker persists)."""

    def __init__(self, host: str, port: int, topic: str = f"{TOPIC_ROOT}/#") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._topic = topic
        self.client = paho.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"sub-{uuid.uuid4().hex[:12]}", clean_session=False)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.reconnect_delay_set(0.05, 0.5)
        self._subscribed = threading.Event()
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("subscriber did not connect")

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        client.subscribe(self._topic, qos=1)
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def payloads(self, suffix: str = "/reading") -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def on_topic(self, topic: str) -> list[tuple[bytes, bool]]:
        with self._lock:
            return [(p, r) for t, p, r in self.messages if t == topic]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 20,
                   what: str = "condition") -> None:
        wait_until(predicate, timeout, 0.05, what)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Stream:
    """One device's readings as a subscriber saw them, verified."""

    readings: dict[int, Reading]
    envelopes: dict[int, bytes]
    arrival: list[int]  # seqs in first-arrival order
    duplicates: int
    gaps: list[tuple[int, int]]

    @property
    def seqs(self) -> list[int]:
        return sorted(self.readings)


def verify_stream(payloads: list[bytes], key: PublicKey) -> Stream:
    """Check every signature; equal seqs must be identical bytes (duplicates, counted)."""
    readings: dict[int, Reading] = {}
    envelopes: dict[int, bytes] = {}
    arrival: list[int] = []
    duplicates = 0
    for data in payloads:
        signed = SignedReading.open(data, key)
        seq = signed.reading.seq
        if seq in envelopes:
            assert envelopes[seq] == data, f"seq {seq} arrived with different bytes: reuse"
            duplicates += 1
            continue
        envelopes[seq] = data
        readings[seq] = signed.reading
        arrival.append(seq)
    gaps = [(r.gap.first, r.gap.last) for r in readings.values() if r.gap is not None]
    return Stream(readings, envelopes, arrival, duplicates, sorted(gaps))


def check_chain(stream: Stream) -> None:
    """Seq 0..n all present or named by a gap record; every prev is the previous hash."""
    dropped = {s for first, last in stream.gaps for s in range(first, last + 1)}
    seqs = stream.seqs
    assert seqs, "no readings"
    for seq in range(0, seqs[-1] + 1):
        if seq in dropped:
            continue  # named by a gap record (it may still have arrived: it was in flight)
        assert seq in stream.readings, f"seq {seq} missing and not named by any gap record"
        reading = stream.readings[seq]
        if seq == 0:
            assert reading.prev == GENESIS_PREV
        elif seq - 1 in stream.envelopes:
            expected = hashlib.sha256(stream.envelopes[seq - 1]).digest()
            assert reading.prev == expected, f"chain broken between seq {seq - 1} and {seq}"
        else:
            assert seq - 1 in dropped, f"prev of seq {seq} cannot be checked and is not a gap"


# --- a throwaway PKI ----------------------------------------------------------------------

def _write_pair(base: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    base.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    base.with_suffix(".key").chmod(0o600)
    base.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_pki(folder: Path, client_cn: str = "dev-test") -> Path:
    """CA, server cert for 127.0.0.1/localhost, client cert; ``ca|server|client .crt/.key``."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SensorLedger test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write_pair(folder / "ca", ca_key, ca)
    for name, cn, server in (("server", "localhost", True), ("client", client_cn, False)):
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]), critical=False)
        _write_pair(folder / name, key, builder.sign(ca_key, hashes.SHA256()))
    return folder


if __name__ == "__main__":
    from agent.cli import main

    register_test_drivers()
    sys.argv[0] = "sensor-agent"
    main()
