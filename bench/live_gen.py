"""Load generator for the live benchmark: simulated devices signing and publishing in real time.

Each generator process owns a share of the devices and of the offered rate. A reading's device
time is taken the moment before it is signed, so ``sealed_ms - time_ms`` in the ledger is the
latency from signing to sealed block. Readings are paced against the wall clock from a common
start instant; a generator that cannot keep up publishes late rather than skipping, and reports
how far behind it fell.
"""

from __future__ import annotations

import hashlib
import resource
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from provenance.envelope import sign_reading
from provenance.keys import PrivateKey
from provenance.reading import GENESIS_PREV

from .backlog import topic_for, water_reading
from .mqtt import wait_connected

__all__ = ["GeneratorReport", "GeneratorSpec", "generate"]

_WINDOW = 2000  # unacknowledged publishes; below paho's 16-bit message id space


@dataclass(frozen=True, slots=True)
class GeneratorSpec:
    host: str
    port: int
    devices: tuple[tuple[str, bytes], ...]  # (device id, private key PEM)
    rate: float  # readings/s offered by this generator
    count: int  # readings to send in all
    start_at: float  # wall clock (time.time) of the first reading


@dataclass(frozen=True, slots=True)
class GeneratorReport:
    sent: int
    first_s: float  # wall clock of the first publish
    last_s: float  # wall clock of the last publish
    max_behind_s: float  # furthest a reading fell behind its schedule
    cpu_s: float


def generate(spec: GeneratorSpec) -> GeneratorReport:
    """Run one generator to completion (call in its own process)."""
    keys = [PrivateKey.from_pem(pem) for _, pem in spec.devices]
    ids = [device_id for device_id, _ in spec.devices]
    topics = [topic_for(d) for d in ids]
    prevs = [GENESIS_PREV] * len(ids)
    seqs = [0] * len(ids)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    client.max_inflight_messages_set(_WINDOW)
    window = threading.BoundedSemaphore(_WINDOW)
    client.on_publish = lambda *_a: window.release()
    wait_connected(client, spec.host, spec.port)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    sent = 0
    max_behind = 0.0
    first = last = 0.0
    try:
        time.sleep(max(0.0, spec.start_at - time.time()))
        while sent < spec.count:
            now = time.time()
            due = min(spec.count, int((now - spec.start_at) * spec.rate) + 1)
            if sent >= due:
                time.sleep((sent / spec.rate) - (now - spec.start_at))
                continue
            max_behind = max(max_behind, now - (spec.start_at + sent / spec.rate))
            while sent < due:
                d = sent % len(ids)
                now_ms = time.time_ns() // 1_000_000
                envelope = sign_reading(water_reading(ids[d], seqs[d], prevs[d], now_ms), keys[d])
                prevs[d] = hashlib.sha256(envelope).digest()
                seqs[d] += 1
                if not window.acquire(timeout=60):
                    raise RuntimeError("the broker stopped acknowledging publishes")
                client.publish(topics[d], envelope, qos=1)
                if sent == 0:
                    first = time.time()
                sent += 1
            last = time.time()
        for _ in range(_WINDOW):  # every publish acknowledged by the broker
            if not window.acquire(timeout=60):
                raise RuntimeError("the broker stopped acknowledging publishes")
    finally:
        client.disconnect()
        client.loop_stop()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return GeneratorReport(sent, first, last, max_behind, cpu)
