"""Sensors as the agent sees them: relayed envelopes, dead sensors, heartbeats."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest

from agent.clock import Clock
from agent.config import SensorConfig
from agent.poller import SensorRunner
from agent.signer import Draft, Relay, draft_from_sample
from firmware_stubs.clock import SimClock
from firmware_stubs.water_quality import WaterProbeEmulator
from hardware.base import Measurement, Sample
from hardware.registry import create
from hardware.water_profiles import BUILTIN_PROFILES
from provenance.errors import MalformedError
from provenance.reading import GENESIS_PREV
from tests.support.agent_harness import (
    AgentProcess,
    Subscriber,
    device_public_key,
    new_key,
    verify_stream,
    write_config,
)
from tests.support.broker import Broker
from tests.support.signed import SignedReading

StartAgent = Callable[..., AgentProcess]


def test_relayed_envelopes_arrive_unchanged_and_a_dead_sensor_stops_nothing(
    broker: Broker, subscriber: Subscriber, agents: StartAgent, tmp_path: Path
) -> None:
    workdir = tmp_path / "agent"
    workdir.mkdir()
    probe_key = new_key(workdir / "probe.key")
    sensors = (
        '[[sensors]]\nname = "count"\ndriver = "test-counter"\ninterval_s = 0.05\n'
        '[[sensors]]\nname = "dead"\ndriver = "test-broken"\ninterval_s = 0.05\n'
        '[[sensors]]\nname = "probe"\ndriver = "test-relay"\ninterval_s = 0.05\n'
        f'key_file = "{workdir / "probe.key"}"\ndevice_id = "probe-9"\n'
    )
    agent = agents(write_config(workdir, broker.url, sensors=sensors, heartbeat_s=0.3))
    relayed_topic = "sensorledger/v1/probe-9/reading"
    subscriber.wait_until(lambda: len(subscriber.on_topic(relayed_topic)) >= 10,
                          what="relayed envelopes")
    assert agent.terminate() == 0

    # The probe's own chain, signed by the probe's key, published on the probe's topic.
    relayed = [payload for payload, _ in subscriber.on_topic(relayed_topic)]
    prev = GENESIS_PREV
    for seq, envelope in enumerate(relayed[:10]):
        reading = SignedReading.open(envelope, probe_key.public).reading
        assert (reading.device_id, reading.seq, reading.prev) == ("probe-9", seq, prev)
        prev = hashlib.sha256(envelope).digest()  # byte for byte what the probe signed

    # The agent's own readings kept flowing beside the dead sensor and the relay.
    own = verify_stream(subscriber.payloads("/dev-test/reading"), device_public_key(workdir))
    assert len(own.readings) >= 10 and {r.kind for r in own.readings.values()} == {"counter"}

    beats = [json.loads(p) for p, _ in subscriber.on_topic("sensorledger/v1/dev-test/status")
             if p.startswith(b"{")]
    assert len(beats) >= 2
    last = beats[-1]
    assert last["state"] == "online" and last["relayed"] > 0
    assert last["sensors"]["dead"]["errors"] > 0 and last["sensors"]["count"]["errors"] == 0
    for field in ("signed", "published", "dropped", "spool_depth", "last_puback_age_s"):
        assert field in last
    retained = [p for p, _ in subscriber.on_topic("sensorledger/v1/dev-test/status")
                if not p.startswith(b"{")]
    assert retained[0] == b"online" and retained[-1] == b"offline"  # birth, then clean stop


def test_driver_measurements_become_senml_records() -> None:
    sample = Sample("water-quality", (Measurement(name="ph", value=7.2, unit=None),
                                      Measurement(name="temperature", value=11.5, unit="Cel")))
    draft = draft_from_sample("probe", sample, 1_790_000_000_000, True)
    assert isinstance(draft, Draft)
    assert [(m.name, m.value, m.unit) for m in draft.measurements] == [
        ("ph", 7.2, None), ("temperature", 11.5, "Cel")]


def test_a_sample_the_wire_format_refuses_is_rejected_at_its_sensor() -> None:
    bad = Sample("Not A Kind!", (Measurement(name="x", value=1, unit=None),))
    try:
        draft_from_sample("s", bad, 1, True)
    except MalformedError as exc:
        assert "kind" in str(exc)
    else:
        raise AssertionError("a bad kind must be refused before signing")


def test_clock_flag_follows_the_configured_mode() -> None:
    assert Clock("synced").synced is True
    assert Clock("unsynced").synced is False
    calls: list[int] = []

    def probe() -> bool:
        calls.append(1)
        return True

    clock = Clock("auto", probe=probe)
    assert clock.synced and clock.synced
    assert len(calls) == 1  # cached: readings may come by the thousand per second
    assert abs(clock.now_ms() - time.time() * 1000) < 1000


def test_a_relayed_envelope_with_the_agents_own_device_id_is_refused() -> None:
    from provenance.envelope import sign_reading
    from provenance.keys import PrivateKey
    from provenance.reading import Reading

    envelope = sign_reading(Reading("dev-test", 0, 1, 1, True, GENESIS_PREV, "counter"),
                            PrivateKey.generate())
    sample = Sample("self-signed", envelope=envelope)
    try:
        draft_from_sample("smart", sample, 1, True, own_device_id="dev-test")
    except MalformedError as exc:
        assert "own device id" in str(exc)
    else:
        raise AssertionError("the agent's own chain must not be mixed with a relayed one")
    relay = draft_from_sample("smart", sample, 1, True, own_device_id="gateway-1")
    assert not isinstance(relay, Draft) and relay.envelope == envelope


async def test_a_nan_register_is_a_refused_sample_not_a_driver_fault(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A probe that reports NaN in a float32 register (as some do for a failed measurement):
    the driver counts a good read and a sample, the sensor counts one refused sample, and
    nothing of that poll is published, not even the fields that were finite."""
    profile = BUILTIN_PROFILES["evoqua-chlorine"]  # four reads: ph is a block of its own
    with WaterProbeEmulator(profile, seed=3, clock=SimClock(step=60.0)) as probe:
        true_value = probe.model.value
        monkeypatch.setattr(probe.model, "value", lambda name, t: (
            math.nan if name == "ph" else true_value(name, t)))
        settings = {"port": probe.agent_path, "profile": profile.name, "baudrate": 115200,
                    "timeout_s": 0.5}
        driver = create("modbus-water", settings)
        drafts: list[Draft | Relay] = []
        executor = ThreadPoolExecutor(1)

        async def sink(item: Draft | Relay) -> None:
            drafts.append(item)

        with closing(driver), executor:
            runner = SensorRunner(SensorConfig("probe", "modbus-water", 1.0, settings), driver,
                                  lambda: driver, sink, Clock("synced"), executor)
            loop = asyncio.get_running_loop()
            await runner._poll_once(loop)
            served = {k: v for r in probe.transcript.entries() for k, v in r.values.items()}
            assert math.isnan(served["ph"])  # type: ignore[arg-type]

            health = runner.health.as_dict()
            assert drafts == []
            assert {k: health[k] for k in ("polls", "samples", "poll_failures",
                                           "rejected_samples", "errors", "last_error")} == {
                "polls": 1, "samples": 0, "poll_failures": 0, "rejected_samples": 1,
                "errors": 1, "last_error": "sample refused: measurement 'ph' is not finite: nan",
            }
            assert health["driver_stats"] == {
                "polls": 1, "samples": 1, "frames_ok": 4, "checksum_errors": 0, "timeouts": 0,
                "resyncs": 0, "other_errors": 0, "last_error": None,
            }

            monkeypatch.undo()  # the probe measures again: the next poll is published
            await runner._poll_once(loop)
            (draft,) = drafts
            assert isinstance(draft, Draft)
            assert {m.name for m in draft.measurements} == {f.name for f in profile.fields}
            assert runner.health.samples == 1 and runner.health.rejected_samples == 1
