"""Polling sensors: one task per sensor, blocking driver calls in worker threads.

A driver's ``poll`` blocks on serial or Modbus I/O, so each call runs in the agent's thread
pool (one thread per sensor, so a slow device never delays another). Whatever goes wrong
with one sensor — an exception from ``poll``, a sample the wire format refuses, a driver that
could not even be built — is counted in that sensor's :class:`SensorHealth` and retried at
its next tick; the other sensors never notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from hardware.base import Driver

from .clock import Clock
from .config import SensorConfig
from .signer import Draft, Relay, draft_from_sample

__all__ = ["SensorHealth", "SensorRunner"]

log = logging.getLogger(__name__)

#: How long to wait before building a driver again after it failed to start.
RETRY_BUILD_S = 5.0
#: Log a repeated poll failure at most this often per sensor (errors are always counted).
LOG_EVERY_S = 60.0

Sink = Callable[[Draft | Relay], Awaitable[None]]


@dataclasses.dataclass
class SensorHealth:
    """What the agent knows about one sensor, reported in heartbeats and ``status``."""

    name: str
    driver: str
    polls: int = 0
    samples: int = 0
    poll_failures: int = 0  # poll() raised, or the driver could not be built
    rejected_samples: int = 0  # samples the wire format refuses (bad kind, NaN, ...)
    last_error: str | None = None
    last_sample_ms: int | None = None
    driver_stats: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def errors(self) -> int:
        s = self.driver_stats
        driver_errors = sum(int(s.get(k, 0)) for k in ("checksum_errors", "timeouts",
                                                         "other_errors"))
        return driver_errors + self.poll_failures + self.rejected_samples

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["errors"] = self.errors
        return out


class SensorRunner:
    """Polls one sensor at its interval and hands its samples to the recorder."""

    def __init__(
        self, sensor: SensorConfig, driver: Driver | None, build: Callable[[], Driver],
        sink: Sink, clock: Clock, executor: Executor, *, device_id: str = "",
    ) -> None:
        self.sensor = sensor
        self.device_id = device_id
        self.driver = driver
        self._build = build
        self._sink = sink
        self._clock = clock
        self._executor = executor
        self.health = SensorHealth(sensor.name, sensor.driver)
        self._last_log = -LOG_EVERY_S

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        interval = self.sensor.interval_s
        next_at = time.monotonic()
        while not stop.is_set():
            if self.driver is None:
                try:
                    self.driver = await loop.run_in_executor(self._executor, self._build)
                    log.info("sensor %s: driver %s started", self.sensor.name, self.sensor.driver)
                except Exception as exc:
                    self._failed(f"driver could not start: {exc!r}")
                    await _sleep_unless(stop, max(interval, RETRY_BUILD_S))
                    continue
            await self._poll_once(loop, self.driver)
            next_at += interval
            now = time.monotonic()
            if next_at < now:
                next_at = now  # behind schedule (slow device): skip ticks rather than burst
            await _sleep_unless(stop, next_at - now)

    async def _poll_once(self, loop: asyncio.AbstractEventLoop, driver: Driver) -> None:
        self.health.polls += 1
        try:
            samples = await loop.run_in_executor(self._executor, driver.poll)
        except Exception as exc:  # a driver must not raise for device faults; guard anyway
            self._failed(f"poll failed: {exc!r}")
            return
        finally:
            self.health.driver_stats = dataclasses.asdict(driver.stats)
        if not samples:
            return
        time_ms = self._clock.now_ms()
        synced = self._clock.synced
        for sample in samples:
            try:
                item = draft_from_sample(self.sensor.name, sample, time_ms, synced,
                                         own_device_id=self.device_id)
            except Exception as exc:  # ProvenanceError for content; anything else is a bug
                self.health.rejected_samples += 1
                self._failed(f"sample refused: {exc}", count=False)
                continue
            self.health.samples += 1
            self.health.last_sample_ms = time_ms
            await self._sink(item)

    def _failed(self, message: str, *, count: bool = True) -> None:
        if count:
            self.health.poll_failures += 1
        self.health.last_error = message
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            log.warning("sensor %s: %s", self.sensor.name, message)

    def close(self) -> None:
        if self.driver is not None:
            try:
                self.driver.close()
            except Exception as exc:
                log.warning("sensor %s: close failed: %r", self.sensor.name, exc)
            self.driver = None


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set, whichever comes first."""
    if seconds <= 0:
        await asyncio.sleep(0)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
