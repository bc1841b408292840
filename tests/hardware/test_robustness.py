"""Line faults: garbage between frames, a bad checksum, a truncated frame, a device that stops
answering and one that comes back. Every driver resynchronises, counts the fault in its
stats and never raises."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_stubs.arc_monitor import ArcMonitorEmulator
from firmware_stubs.clock import SimClock
from firmware_stubs.contec_oximeter import ContecOximeterEmulator
from firmware_stubs.jbd_bms import JbdBmsEmulator
from firmware_stubs.self_signing import SelfSigningSensor
from firmware_stubs.water_quality import WaterProbeEmulator
from hardware.base import Driver, DriverStats
from hardware.registry import available
from hardware.water_profiles import BUILTIN_PROFILES

from .conftest import MakeDriver, as_dict, measured, poll_until

# JUNK holds a stray JBD start byte, a bogus length and Modbus-looking bytes.
JUNK = bytes.fromhex("77 DD 03 00 01 03 06 FF 55 AA 00")


@pytest.fixture(autouse=True)
def _quiet_pymodbus() -> Iterator[None]:
    # pymodbus logs every timeout at ERROR; the faults here are on purpose.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    yield
    logging.getLogger("pymodbus").setLevel(logging.NOTSET)


def counted(stats: DriverStats) -> dict[str, int]:
    return {k: getattr(stats, k) for k in ("checksum_errors", "timeouts", "resyncs",
                                           "other_errors")}


def delta(before: dict[str, int], stats: DriverStats) -> dict[str, int]:
    after = counted(stats)
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


# --- request / response over a UART: JBD ---------------------------------------------------


def test_jbd_faults(make_driver: MakeDriver) -> None:
    with JbdBmsEmulator(seed=1, clock=SimClock(step=60.0), sleep_after_s=0) as bms:
        driver = make_driver("jbd-bms", {"port": bms.agent_path, "timeout_s": 0.3,
                                         "retries": 0, "counters_interval_s": 0})

        def poll_once() -> tuple[list[object], dict[str, int]]:
            before = counted(driver.stats)
            return list(driver.poll()), delta(before, driver.stats)

        def assert_exact(samples: list[object]) -> None:
            served = bms.transcript.entries()[-3:]
            assert [r.what for r in served] == ["basic_info", "cells", "protection_counters"]
            assert all(r.intact for r in served)
            status = samples[0]
            assert as_dict(status) == {k: v for r in served for k, v in r.values.items()}  # type: ignore[arg-type]

        samples, changes = poll_once()
        assert changes == {} and samples
        assert_exact(samples)

        bms.faults.inject_garbage(JUNK)
        samples, changes = poll_once()
        assert samples and changes.get("resyncs", 0) >= 1 and "checksum_errors" not in changes
        assert_exact(samples)

        bms.faults.corrupt_next()
        samples, changes = poll_once()
        assert samples == [] and changes == {"checksum_errors": 1}
        samples, changes = poll_once()
        assert_exact(samples)

        bms.faults.truncate_next()
        samples, changes = poll_once()
        assert samples == [] and changes == {"timeouts": 1}

        bms.faults.mute()
        for _ in range(3):
            samples, changes = poll_once()
            assert samples == [] and changes == {"timeouts": 1}
        assert driver.stats.last_error is not None and "no reply" in driver.stats.last_error

        bms.faults.mute(False)
        samples, changes = poll_once()
        assert changes == {}
        assert_exact(samples)


def test_jbd_sleeping_bms_is_woken_by_a_retry(make_driver: MakeDriver) -> None:
    with JbdBmsEmulator(seed=1, clock=SimClock(step=60.0), sleep_after_s=0.6) as bms:
        patient = make_driver("jbd-bms", {"port": bms.agent_path, "timeout_s": 0.15,
                                          "retries": 2})
        assert patient.poll()
        time.sleep(0.8)  # the BMS dozes off
        assert patient.poll(), "one retry must wake the BMS and still return a reading"
        assert bms.wake_ups == 1 and patient.stats.timeouts == 1
        patient.close()
        impatient = make_driver("jbd-bms", {"port": bms.agent_path, "timeout_s": 0.15,
                                            "retries": 0})
        time.sleep(0.8)
        assert impatient.poll() == []
        assert impatient.poll(), "awake again"


# --- Modbus: water probe and arc monitor -----------------------------------------------------


def test_modbus_water_faults(make_driver: MakeDriver) -> None:
    profile = BUILTIN_PROFILES["yosemitech-y4000"]
    with WaterProbeEmulator(profile, seed=2, clock=SimClock(step=60.0)) as probe:
        driver = make_driver("modbus-water", {"port": probe.agent_path,
                                              "profile": "yosemitech-y4000",
                                              "baudrate": 115200, "timeout_s": 0.3})

        def poll_once() -> tuple[list[object], dict[str, int]]:
            before = counted(driver.stats)
            return list(driver.poll()), delta(before, driver.stats)

        def assert_exact(samples: list[object]) -> None:
            (served,) = probe.transcript.entries()[-1:]
            assert served.intact
            assert as_dict(samples[0]) == served.values  # type: ignore[arg-type]

        for junk in (JUNK, b"\x00", bytes.fromhex("01 03 20")):  # the last mimics a reply head
            probe.faults.inject_garbage(junk)
            samples, changes = poll_once()
            assert changes == {"resyncs": 1}
            assert_exact(samples)

        probe.faults.corrupt_next()
        samples, changes = poll_once()
        assert samples == [] and changes == {"checksum_errors": 1}

        probe.faults.truncate_next()
        samples, changes = poll_once()
        assert samples == [] and changes == {"timeouts": 1}
        assert "truncated" in str(driver.stats.last_error)

        probe.faults.mute()
        for _ in range(2):
            samples, changes = poll_once()
            assert samples == [] and changes == {"timeouts": 1}

        probe.faults.mute(False)
        samples, changes = poll_once()
        assert changes == {}
        assert_exact(samples)


def test_modbus_device_refusal_is_counted(make_driver: MakeDriver) -> None:
    # A profile naming a register the probe does not have: the probe answers with an
    # exception (illegal data address) and the driver says so.
    with WaterProbeEmulator(BUILTIN_PROFILES["supmea-ph8001"], seed=2) as probe:
        driver = make_driver("modbus-water", {"port": probe.agent_path, "baudrate": 115200,
                                              "timeout_s": 0.2, "profile": {
            "name": "wrong-map", "fields": [{"name": "orp", "address": 11, "unit": "mV"}],
        }})
        assert driver.poll() == []
        assert driver.stats.other_errors == 1 and "exception code 2" in str(
            driver.stats.last_error)


def test_modbus_other_unit_is_silent(make_driver: MakeDriver) -> None:
    with WaterProbeEmulator(BUILTIN_PROFILES["supmea-ph8001"], seed=2) as probe:
        driver = make_driver("modbus-water", {"port": probe.agent_path, "baudrate": 115200,
                                              "timeout_s": 0.1, "unit": 9,
                                              "profile": "supmea-ph8001"})
        assert driver.poll() == []
        assert driver.stats.timeouts == 1


def test_arc_counts_during_an_outage_are_reported_when_the_device_returns(
    make_driver: MakeDriver,
) -> None:
    with ArcMonitorEmulator(seed=8, arc_every_s=30.0, residual_unit=None,
                            clock=SimClock(step=20.0)) as monitor:
        driver = make_driver("arc-monitor", {"port": monitor.agent_path, "baudrate": 115200,
                                             "timeout_s": 0.25, "status_interval_s": 3600})
        driver.poll()
        before_outage = monitor.transcript.entries("read 0x012A")[-1].values
        monitor.faults.mute()
        for _ in range(10):  # the device keeps counting arcs; nobody hears it
            assert driver.poll() == []
        assert driver.stats.timeouts == 10
        monitor.faults.mute(False)
        samples = driver.poll()
        after = monitor.transcript.entries("read 0x012A")[-1].values
        expected = {ch: after[f"arc_count_{ch}"] - before_outage[f"arc_count_{ch}"]
                    for ch in range(1, 9)}
        got = {e.event["channel"]: e.event["new_arcs"]
               for e in samples if e.event is not None and e.event["type"] == "arc"}
        assert sum(expected.values()) >= 3, "the seed must produce arcs during the outage"
        # Every channel that counted arcs while nobody listened is reported, with how many.
        assert {ch: n for ch, n in got.items() if n} == {
            ch: n for ch, n in expected.items() if n}
        assert all(expected[ch] == n for ch, n in got.items())


# --- streams: Contec oximeter and self-signing sensor -------------------------------------------


def test_contec_stream_faults(make_driver: MakeDriver) -> None:
    from .test_drivers_against_emulators import _expected_window

    window = 6
    with ContecOximeterEmulator(seed=9, speed=10.0, finger_out_every_s=1e9) as oximeter:
        driver = make_driver("contec-oximeter", {"port": oximeter.agent_path,
                                                 "window_s": window / 60, "timeout_s": 0.3})
        samples = poll_until(driver, 5)
        # Garbage between packets: bytes with bit 7 set, an undocumented type, and a real
        # packet type cut short by the next packet. No packet is lost to them.
        oximeter.faults.inject_garbage(bytes.fromhex("FF 80 02 81 01 85 B3"))
        oximeter.faults.truncate_next()  # this packet *is* lost: its bytes never all arrive
        before = counted(driver.stats)
        samples += poll_until(driver, 20)
        changes = delta(before, driver.stats)
        assert changes.get("resyncs", 0) >= 2 and "other_errors" not in changes
        sent = oximeter.transcript.entries("realtime")
        assert sum(not r.intact for r in sent) == 1
        intact = [r for r in sent if r.intact]
        for index, sample in enumerate(samples):
            assert as_dict(sample) == _expected_window(intact[index * window:][:window])

        # The device stops streaming: counted as a timeout, the start command is sent again.
        commands = len(oximeter.commands)
        oximeter.faults.mute()
        time.sleep(1.0)
        driver.poll()
        assert driver.stats.timeouts >= 1
        assert oximeter.commands[commands:].count(0xA1) >= 1
        oximeter.faults.mute(False)
        resumed = poll_until(driver, 10)
        assert all(measured(s, "samples") == window and measured(s, "spo2") for s in resumed)


def test_contec_device_that_stopped_streaming_is_restarted(make_driver: MakeDriver) -> None:
    with ContecOximeterEmulator(seed=9, speed=10.0) as oximeter:
        driver = make_driver("contec-oximeter", {"port": oximeter.agent_path,
                                                 "window_s": 0.1, "timeout_s": 0.3})
        poll_until(driver, 3)
        oximeter._on_command(0xA2)  # the device ends the stream by itself (as after 30 s)
        time.sleep(0.6)
        assert poll_until(driver, 3)
        assert driver.stats.timeouts >= 1 and oximeter.commands.count(0xA1) >= 2


def test_self_signing_stream_faults(tmp_path: Path, make_driver: MakeDriver) -> None:
    sensor = SelfSigningSensor(key_path=tmp_path / "k.pem", state_path=tmp_path / "s",
                               interval_s=0.02)
    driver = make_driver("self-signing-serial", {"port": sensor.agent_path, "timeout_s": 0.3})
    driver.poll()
    time.sleep(0.2)
    with sensor:
        samples = poll_until(driver, 3)
        sensor.faults.inject_garbage(b"SL\x01\xff\xff" + JUNK + b"S")
        sensor.faults.corrupt_next()
        sensor.faults.truncate_next()
        samples += poll_until(driver, 5)
        sensor.faults.mute()
        time.sleep(0.6)
        samples += driver.poll()
        assert driver.stats.timeouts >= 1
        sensor.faults.mute(False)
        samples += poll_until(driver, 3)
        sensor.interval_s = 1e9  # stop signing, then collect what is still on the line
        time.sleep(0.2)
        samples += driver.poll()
    stats = driver.stats
    assert stats.checksum_errors >= 1 and stats.resyncs >= 1
    sent = sensor.transcript.entries("envelope")
    assert sum(not r.intact for r in sent) >= 3  # corrupted, truncated, and muted frames
    # Exactly the frames that crossed the line intact are relayed, byte for byte, in order.
    assert [s.envelope for s in samples] == [
        bytes.fromhex(str(r.values["envelope"])) for r in sent if r.intact]


# --- absent and vanishing devices ---------------------------------------------------------------


def _settings(name: str, port: str) -> dict[str, object]:
    extra: dict[str, dict[str, object]] = {"modbus-water": {"profile": "supmea-ph8001"}}
    return {"port": port, "timeout_s": 0.1, **extra.get(name, {})}


@pytest.mark.parametrize("name", available())
def test_absent_device_is_counted_not_raised(name: str, make_driver: MakeDriver,
                                             tmp_path: Path) -> None:
    driver: Driver = make_driver(name, _settings(name, str(tmp_path / "ttyUSB9")))
    deadline = time.monotonic() + 2
    while driver.stats.other_errors == 0 and time.monotonic() < deadline:
        assert driver.poll() == []
        time.sleep(0.02)
    assert driver.stats.other_errors >= 1
    assert "ttyUSB9" in str(driver.stats.last_error)


def test_device_unplugged_mid_run(make_driver: MakeDriver) -> None:
    bms = JbdBmsEmulator(seed=1, sleep_after_s=0).start()
    driver = make_driver("jbd-bms", {"port": bms.agent_path, "timeout_s": 0.1, "retries": 0})
    assert driver.poll()
    bms.stop()  # the pty disappears, like a USB adapter pulled out
    for _ in range(3):
        assert driver.poll() == []
    assert driver.stats.timeouts + driver.stats.other_errors >= 3
