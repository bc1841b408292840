"""The one guard around every driver: builds, times, counts, and never lets a driver raise."""

from __future__ import annotations

import time
from collections.abc import Set
from pathlib import Path

from firmware_stubs.clock import SimClock
from firmware_stubs.jbd_bms import JbdBmsEmulator
from hardware.base import Driver, DriverStats, Measurement, Sample
from hardware.registry import create
from hardware.running import RunningDriver


class FlakyDriver:
    """Raises on the polls listed in ``fail_on`` (1-based), otherwise one sample each."""

    kind = "counter"

    def __init__(self, *, fail_on: Set[int] = frozenset(), pause_s: float = 0.0) -> None:
        self.name = "flaky"
        self.stats = DriverStats()
        self.fail_on = fail_on
        self.pause_s = pause_s
        self.closed = False

    def poll(self) -> list[Sample]:
        self.stats.polls += 1
        time.sleep(self.pause_s)
        if self.stats.polls in self.fail_on:
            raise IndexError(f"decoder bug at poll {self.stats.polls}")
        self.stats.samples += 1
        return [Sample(self.kind, (Measurement(name="n", value=self.stats.polls, unit=None),))]

    def close(self) -> None:
        self.closed = True
        raise OSError("port already gone")


def test_a_driver_that_raises_is_a_counted_fault_and_the_next_poll_runs() -> None:
    driver = FlakyDriver(fail_on={2})
    running = RunningDriver("tank", "flaky", lambda: driver, driver=driver)
    first, failed, third = running.poll(), running.poll(), running.poll()
    assert [len(first), len(failed), len(third)] == [1, 0, 1]
    health = running.health.as_dict()
    assert health["polls"] == 3 and health["poll_failures"] == 1 and health["errors"] == 1
    assert health["last_error"] == "poll failed: IndexError('decoder bug at poll 2')"
    assert health["driver_stats"]["polls"] == 3 and health["driver_stats"]["samples"] == 2


def test_each_poll_is_timed() -> None:
    driver = FlakyDriver(pause_s=0.05)
    running = RunningDriver("slow", "flaky", lambda: driver, driver=driver)
    assert running.health.poll_s is None
    running.poll()
    assert running.health.poll_s is not None and 0.05 <= running.health.poll_s < 1.0


def test_a_driver_that_cannot_start_is_built_again_later() -> None:
    attempts: list[int] = []

    def build() -> Driver:
        attempts.append(1)
        if len(attempts) == 1:
            raise PermissionError(13, "Permission denied: '/dev/ttyUSB0'")
        return FlakyDriver()

    running = RunningDriver("bms", "flaky", build)
    assert not running.started and not running.start()
    assert running.health.poll_failures == 1 and running.health.polls == 0
    assert "driver could not start" in str(running.health.last_error)
    assert "Permission denied" in str(running.health.last_error)
    assert running.start() and running.started and len(attempts) == 2
    assert len(running.poll()) == 1 and running.health.polls == 1


def test_samples_the_agent_takes_or_refuses_are_counted() -> None:
    running = RunningDriver("probe", "flaky", FlakyDriver)
    running.accepted(1_790_000_000_000)
    running.refused("measurement 'ph' is not finite: nan")
    health = running.health
    assert (health.samples, health.rejected_samples, health.poll_failures) == (1, 1, 0)
    assert health.last_sample_ms == 1_790_000_000_000
    assert health.last_error == "sample refused: measurement 'ph' is not finite: nan"
    assert health.errors == 1


def test_close_never_raises_and_closes_once() -> None:
    driver = FlakyDriver()
    running = RunningDriver("tank", "flaky", lambda: driver, driver=driver)
    running.close()
    assert driver.closed and not running.started
    running.close()  # nothing left to close


def test_a_real_driver_runs_inside_the_guard(tmp_path: Path) -> None:
    with JbdBmsEmulator(seed=2, clock=SimClock(step=60.0), sleep_after_s=0) as bms:
        settings = {"port": bms.agent_path, "retries": 0, "counters_interval_s": 0}
        running = RunningDriver("bms", "jbd-bms", lambda: create("jbd-bms", settings))
        try:
            (sample,) = running.poll()
            assert sample.kind == "battery" and running.health.polls == 1
            assert running.health.driver_stats["frames_ok"] == 3
        finally:
            running.close()
    absent = {"port": str(tmp_path / "ttyUSB9"), "timeout_s": 0.1}
    running = RunningDriver("gone", "jbd-bms", lambda: create("jbd-bms", absent))
    try:
        assert running.poll() == []
        # An absent device is the driver's own count, not a crash of the guard.
        assert running.health.poll_failures == 0 and running.health.errors >= 1
        assert "ttyUSB9" in str(running.health.driver_stats["last_error"])
    finally:
        running.close()
