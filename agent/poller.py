"""Polling sensors: one task per sensor, blocking driver calls in worker threads.

A driver's ``poll`` blocks on serial or Modbus I/O, so each call runs in the agent's thread
pool (one thread per sensor, so a slow device never delays another). Each sensor's driver runs
inside a :class:`~hardware.running.RunningDriver`, the one crash guard: whatever goes wrong
with one sensor (an exception from ``poll``, a driver that could not even be built) is counted
in that sensor's :class:`SensorHealth` and retried at its next tick; so is a sample the wire
format refuses. The other sensors never notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import replace

from hardware.base import Driver
from hardware.running import RunningDriver, SensorHealth

from .clock import Clock
from .config import SensorConfig
from .signer import Draft, Relay, draft_from_sample

__all__ = ["SensorHealth", "SensorRunner"]

log = logging.getLogger(__name__)

#: How long to wait before building a driver again after it failed to start.
RETRY_BUILD_S = 5.0

Sink = Callable[[Draft | Relay], Awaitable[None]]


class SensorRunner:
    """Polls one sensor at its interval and hands its samples to the recorder."""

    def __init__(
        self, sensor: SensorConfig, driver: Driver | None, build: Callable[[], Driver],
        sink: Sink, clock: Clock, executor: Executor, *, device_id: str = "",
    ) -> None:
        self.sensor = sensor
        self.device_id = device_id
        self.running = RunningDriver(sensor.name, sensor.driver, build, driver=driver,
                                     logger=log)
        self._sink = sink
        self._clock = clock
        self._executor = executor

    @property
    def health(self) -> SensorHealth:
        return self.running.health

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        interval = self.sensor.interval_s
        next_at = time.monotonic()
        while not stop.is_set():
            started = self.running.started or await loop.run_in_executor(
                self._executor, self.running.start)
            if not started:
                await _sleep_unless(stop, max(interval, RETRY_BUILD_S))
                continue
            await self._poll_once(loop)
            next_at += interval
            now = time.monotonic()
            if next_at < now:
                next_at = now  # behind schedule (slow device): skip ticks rather than burst
            await _sleep_unless(stop, next_at - now)

    async def _poll_once(self, loop: asyncio.AbstractEventLoop) -> None:
        samples = await loop.run_in_executor(self._executor, self.running.poll)
        if not samples:
            return
        time_ms = self._clock.now_ms()
        synced = self._clock.synced
        for sample in samples:
            try:
                item = draft_from_sample(self.sensor.name, sample, time_ms, synced,
                                         own_device_id=self.device_id)
            except Exception as exc:  # ProvenanceError for content; anything else is a bug
                self.running.refused(str(exc))
                continue
            self.running.accepted(time_ms)
            if self.sensor.private and isinstance(item, Draft):
                item = replace(item, subject=self.sensor.subject or self.device_id)
            await self._sink(item)

    def close(self) -> None:
        self.running.close()


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set, whichever comes first."""
    if seconds <= 0:
        await asyncio.sleep(0)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
