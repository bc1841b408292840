"""End to end with real drivers on pseudo-terminals: device emulators from firmware_stubs,
the agent (its own readings and a self-signing sensor's relayed envelopes), Mosquitto, and a
verifying subscriber."""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from provenance.keyfile import load_public_key
from provenance.private_message import PrivateMessage
from tests.support.agent_harness import (
    REPO,
    AgentProcess,
    Subscriber,
    device_public_key,
    verify_stream,
    write_config,
)
from tests.support.broker import Broker
from tests.support.signed import SignedReading

StartAgent = Callable[..., AgentProcess]


@pytest.fixture
def emulators() -> Iterator[Callable[..., str]]:
    """Start ``python -m firmware_stubs.<name> ARGS``; returns the serial port it prints."""
    procs: list[subprocess.Popen[str]] = []

    def start(name: str, *args: str) -> str:
        proc = subprocess.Popen([sys.executable, "-m", f"firmware_stubs.{name}", *args],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)
        procs.append(proc)
        assert proc.stdout is not None
        return proc.stdout.readline().strip()

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_agent_on_emulated_devices_signs_its_own_and_relays_the_smart_sensor(
    broker: Broker, subscriber: Subscriber, agents: StartAgent, emulators: Callable[..., str],
    tmp_path: Path,
) -> None:
    sensor_key = tmp_path / "smart.pem"
    smart_port = emulators("self_signing", "--key", str(sensor_key), "--state",
                           str(tmp_path / "smart.state"), "--device-id", "smart-1",
                           "--interval", "0.2")
    oximeter_port = emulators("contec_oximeter")
    assert smart_port.startswith("/") and oximeter_port.startswith("/")
    sensors = (
        f'[[sensors]]\nname = "oximeter"\ndriver = "contec-oximeter"\ninterval_s = 0.5\n'
        f'port = "{oximeter_port}"\nwindow_s = 0.5\n'
        f'[[sensors]]\nname = "smart"\ndriver = "self-signing-serial"\ninterval_s = 0.2\n'
        f'port = "{smart_port}"\n'
    )
    workdir = tmp_path / "agent"
    agent = agents(write_config(workdir, broker.url, device_id="ward-3", sensors=sensors))
    smart_topic = "sensorledger/v1/smart-1/reading"
    subscriber.wait_until(
        lambda: len(subscriber.on_topic(smart_topic)) >= 5
        and len(subscriber.payloads("/ward-3/private")) >= 3, timeout=30, what="readings")
    assert agent.terminate() == 0

    # The oximeter is private by default: its envelopes travel inside private messages on
    # the private topic and sign a commitment, not the values.
    envelopes = [PrivateMessage.decode(p).envelope
                 for p in subscriber.payloads("/ward-3/private")]
    own = verify_stream(envelopes, device_public_key(workdir))
    assert {r.kind for r in own.readings.values()} == {"pulse-oximeter"}
    assert all(r.commitment and not r.measurements for r in own.readings.values())
    assert not subscriber.payloads("/ward-3/reading")

    # Relayed byte for byte: the sensor's own key verifies them, and its chain is intact.
    public = load_public_key(sensor_key.with_name("smart.pem.pub.pem"))
    relayed = [p for p, _ in subscriber.on_topic(smart_topic)]
    opened = [SignedReading.open(p, public).reading for p in relayed]
    assert {r.device_id for r in opened} == {"smart-1"}
    for (before, _), (_, reading) in itertools.pairwise(zip(relayed, opened, strict=True)):
        assert reading.prev == hashlib.sha256(before).digest()
