"""Each driver against its emulator over a real pty (or a pymodbus server on one): at least
100 polls decode to exactly what the emulator says it sent."""

from __future__ import annotations

import hashlib
import statistics
import time
from pathlib import Path

import pytest

from firmware_stubs.arc_monitor import ArcMonitorEmulator
from firmware_stubs.clock import SimClock
from firmware_stubs.contec_oximeter import ContecOximeterEmulator
from firmware_stubs.jbd_bms import JbdBmsEmulator
from firmware_stubs.self_signing import SelfSigningSensor
from firmware_stubs.transcript import Report
from firmware_stubs.water_quality import WaterProbeEmulator
from hardware.water_profiles import BUILTIN_PROFILES
from provenance.keys import PublicKey
from provenance.reading import GENESIS_PREV
from tests.support.signed import SignedReading

from .conftest import MakeDriver, as_dict, measured, poll_until

POLLS = 100


def merged(reports: list[Report]) -> dict[str, object]:
    out: dict[str, object] = {}
    for report in reports:
        assert report.intact
        out.update(report.values)
    return out


@pytest.mark.parametrize("profile_name", sorted(BUILTIN_PROFILES))
def test_water_probe(profile_name: str, make_driver: MakeDriver) -> None:
    profile = BUILTIN_PROFILES[profile_name]
    reads_per_poll = len(profile.blocks())
    with WaterProbeEmulator(profile, seed=11, clock=SimClock(step=900.0)) as probe:
        driver = make_driver("modbus-water", {
            "port": probe.agent_path, "profile": profile_name, "baudrate": 115200,
            "timeout_s": 0.5, "trigger_wait_s": 0.0,
        })
        seen: list[dict[str, object]] = []
        for _ in range(POLLS):
            before = len(probe.transcript.entries())
            (sample,) = driver.poll()
            served = probe.transcript.entries()[before:]
            assert len(served) == reads_per_poll
            assert sample.kind == "water-quality"
            assert as_dict(sample) == merged(served)
            seen.append(as_dict(sample))
    assert driver.stats.polls == POLLS and driver.stats.samples == POLLS
    assert driver.stats.frames_ok >= POLLS * reads_per_poll
    # The probe's signals move (diurnal cycle over 25 simulated hours), not a constant.
    for field in profile.fields:
        assert len({values[field.name] for values in seen}) > 10, field.name
    units = {m.name: m.unit for m in sample.measurements}
    assert units == {f.name: f.unit for f in profile.fields}


def test_jbd_bms(make_driver: MakeDriver) -> None:
    with JbdBmsEmulator(seed=7, clock=SimClock(step=900.0)) as bms:
        driver = make_driver("jbd-bms", {"port": bms.agent_path, "timeout_s": 0.3,
                                         "counters_interval_s": 0})
        currents, socs = [], []
        for _ in range(POLLS):
            before = len(bms.transcript.entries())
            samples = driver.poll()
            served = bms.transcript.entries()[before:]
            assert [r.what for r in served] == ["basic_info", "cells", "protection_counters"]
            status = samples[0]
            assert status.kind == "battery" and status.event is None
            assert as_dict(status) == merged(served)
            currents.append(measured(status, "pack_current"))
            socs.append(measured(status, "state_of_charge"))
    assert driver.stats.samples >= POLLS and driver.stats.frames_ok == 3 * POLLS
    assert min(currents) < -1 and max(currents) > 1  # it both charged and discharged
    assert max(socs) - min(socs) > 50  # type: ignore[operator]
    cells = [measured(status, f"cell_voltage_{i}") for i in range(1, 5)]
    assert all(isinstance(v, float) and 2.5 < v < 3.7 for v in cells)


def test_jbd_protection_trip_becomes_an_event(make_driver: MakeDriver) -> None:
    with JbdBmsEmulator(seed=3, trip_every_s=120.0, clock=SimClock(step=5.0)) as bms:
        driver = make_driver("jbd-bms", {"port": bms.agent_path, "timeout_s": 0.3,
                                         "counters_interval_s": 0})
        events, previous_bitmap, expected = [], 0, []
        for _ in range(POLLS):
            before = len(bms.transcript.entries())
            samples = driver.poll()
            basic = bms.transcript.entries()[before]
            bitmap = basic.values["protection_bitmap"]
            assert isinstance(bitmap, int)
            rising = bitmap & ~previous_bitmap
            if rising & (1 << 9):
                expected.append("discharge_overcurrent")
            if rising & 1:
                expected.append("cell_overvoltage")
            previous_bitmap = bitmap
            events += [dict(s.event) for s in samples if s.event is not None]
    assert expected, "the seeded pack should trip within 500 simulated seconds"
    assert [e["cause"] for e in events] == expected
    assert all(e["type"] == "protection" and isinstance(e["count"], int) for e in events)


def _expected_window(packets: list[Report]) -> dict[str, object]:
    valid = [p.values for p in packets if not p.values["finger_out"]
             and not p.values["searching"] and p.values["spo2"] and p.values["pulse_rate"]]
    out: dict[str, object] = {
        "finger_out": any(p.values["finger_out"] for p in packets),
        "searching": any(p.values["searching"] for p in packets),
        "valid_samples": len(valid), "samples": len(packets),
    }
    if valid:
        spo2 = [v["spo2"] for v in valid]
        pulse = [v["pulse_rate"] for v in valid]
        out.update(spo2=statistics.median_low(spo2), spo2_min=min(spo2), spo2_max=max(spo2),
                   pulse_rate=statistics.median_low(pulse), pulse_rate_min=min(pulse),
                   pulse_rate_max=max(pulse),
                   signal_strength=statistics.median_low([v["signal"] for v in valid]))
        pi = [v["perfusion_index"] for v in valid if v["perfusion_index"] is not None]
        if pi:
            out["perfusion_index"] = statistics.median_low(pi)
    return out


@pytest.mark.parametrize("protocol", ["v7", "legacy"])
def test_contec_oximeter(protocol: str, make_driver: MakeDriver) -> None:
    window = 15  # packets: window_s 0.25 at 60 packets/s
    with ContecOximeterEmulator(seed=5, protocol=protocol, speed=20.0, autostart=False,
                                finger_out_every_s=12.0) as oximeter:
        driver = make_driver("contec-oximeter", {"port": oximeter.agent_path,
                                                 "protocol": protocol, "window_s": 0.25})
        assert driver.poll() == []  # opens the port and, for V7.0, asks for the stream
        time.sleep(0.2)
        oximeter.power_on()  # the legacy device streams from power-on
        samples = poll_until(driver, POLLS)
        sent = oximeter.transcript.entries("realtime")
    assert all(p.intact for p in sent)
    assert [p.values["packet"] for p in sent[: POLLS * window]] == list(range(POLLS * window))
    for index, sample in enumerate(samples[:POLLS]):
        assert sample.kind == "pulse-oximeter"
        assert as_dict(sample) == _expected_window(sent[index * window : (index + 1) * window])
    flagged = [s for s in samples if measured(s, "finger_out")]
    blind = [s for s in samples if measured(s, "valid_samples") == 0]
    assert flagged and blind, "finger-out periods must show up as flagged windows"
    assert all(measured(s, "spo2") is None and measured(s, "pulse_rate") is None for s in blind)
    if protocol == "v7":
        assert oximeter.commands[0] == 0xA1


def test_arc_monitor(make_driver: MakeDriver) -> None:
    with ArcMonitorEmulator(seed=4, arc_every_s=60.0, clock=SimClock(step=5.0)) as monitor:
        driver = make_driver("arc-monitor", {
            "port": monitor.agent_path, "baudrate": 115200, "timeout_s": 0.5,
            "residual_unit": 2, "status_interval_s": 0,
        })
        previous: dict[str, object] | None = None
        events_seen = 0
        for _ in range(POLLS):
            before = len(monitor.transcript.entries())
            samples = driver.poll()
            served = monitor.transcript.entries()[before:]
            assert [r.what for r in served] == [
                "read 0x012A", "read 0x0250", "relay 0x0000", "relay 0x001B", "read 0x0104"]
            *events, status = samples
            assert status.event is None and as_dict(status) == merged(served)
            arcs = served[0].values
            intensities = served[1].values
            expected = []
            for channel in range(1, 9):
                count = arcs[f"arc_count_{channel}"]
                alarm = bool(arcs["arc_alarm_bitmap"] & 1 << (channel - 1))  # type: ignore[operator]
                old = count if previous is None else previous[f"arc_count_{channel}"]
                was = previous is not None and bool(
                    previous["arc_alarm_bitmap"] & 1 << (channel - 1))  # type: ignore[operator]
                assert count >= old  # type: ignore[operator]  # counters only go up
                if count > old or (alarm and not was):  # type: ignore[operator]
                    expected.append({
                        "type": "arc", "channel": channel, "count": count, "alarm": alarm,
                        "new_arcs": count - old,  # type: ignore[operator]
                        "intensity": intensities[f"arc_intensity_{channel}"],
                        "peak_intensity": intensities[f"arc_peak_intensity_{channel}"],
                    })
            arc_events = [dict(e.event) for e in events
                          if e.event is not None and e.event["type"] == "arc"]
            assert arc_events == expected
            events_seen += len(arc_events)
            previous = arcs
    assert events_seen >= 20
    assert driver.stats.polls == POLLS and driver.stats.other_errors == 0


def test_self_signing_sensor_envelopes_are_relayed_unchanged(
    tmp_path: Path, make_driver: MakeDriver,
) -> None:
    sensor = SelfSigningSensor(key_path=tmp_path / "device.pem", state_path=tmp_path / "state",
                               interval_s=0.005)
    driver = make_driver("self-signing-serial", {"port": sensor.agent_path})
    driver.poll()  # start listening before the sensor starts talking
    time.sleep(0.2)
    with sensor:
        samples = poll_until(driver, POLLS)
    sent = [bytes.fromhex(str(r.values["envelope"])) for r in sensor.transcript.entries()]
    relayed = [s.envelope for s in samples]
    assert relayed == sent[: len(relayed)]
    key = PublicKey.from_der(sensor.public_der)  # verified with pyca/cryptography
    prev = GENESIS_PREV
    for seq, envelope in enumerate(relayed):
        assert envelope is not None
        reading = SignedReading.open(envelope, key).reading
        assert (reading.seq, reading.boot, reading.prev) == (seq, 1, prev)
        assert reading.kind == "water-quality"
        prev = hashlib.sha256(envelope).digest()
    assert all(s.kind == "self-signed" and not s.measurements for s in samples)


def test_arc_emulator_answers_the_documented_request() -> None:
    """The research file's FC04 read of 0x0130 (4 registers), sent as raw bytes."""
    import serial

    from hardware import arc_protocol, modbus_rtu

    with ArcMonitorEmulator(seed=4, arc_every_s=5.0, clock=SimClock(step=30.0)) as monitor, \
            serial.Serial(monitor.agent_path, 9600, timeout=1) as port:
        for _ in range(5):
            port.write(bytes.fromhex("01 04 01 30 00 04 F0 3A"))
            reply = modbus_rtu.decode_read_reply(port.read(13))
            assert isinstance(reply, modbus_rtu.ReadReply)
            words = arc_protocol.decode_arc_words(reply.registers)
            served = monitor.transcript.entries()[-1].values
            assert served == {
                "arc_alarm_bitmap": sum(1 << (c - 1) for c in words.alarm_channels),
                "bus_arc_count": words.bus_arc_count,
                "arc_count_1": words.channel_counts[0],
            }
        assert words.channel_counts[0] > 0
