"""One configured sensor's driver as the agent runs it, like Telegraf's ``RunningInput``.

A driver knows its device; :class:`RunningDriver` knows what the agent needs of every driver.
It builds the driver (again, after a failed start), times each poll, keeps the sensor's
:class:`SensorHealth`, and turns whatever a driver raises into a fault of this one sensor, so
that one dead sensor never stops the poll of the others. This is the only crash guard around
a driver: drivers count device faults (checksums, timeouts, resyncs) in their
:class:`~hardware.base.DriverStats` and let anything else raise to here.

The agent adds what only it can judge: a sample the wire format refuses is counted with
:meth:`RunningDriver.refused`, one it accepts with :meth:`RunningDriver.accepted`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from .base import Driver, Sample

__all__ = ["LOG_EVERY_S", "RunningDriver", "SensorHealth"]

log = logging.getLogger(__name__)

#: Log a repeated fault at most this often per sensor (faults are always counted).
LOG_EVERY_S = 60.0

_DRIVER_ERRORS = ("checksum_errors", "timeouts", "other_errors")


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
    poll_s: float | None = None  # how long the last poll took
    driver_stats: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def errors(self) -> int:
        s = self.driver_stats
        driver_errors = sum(int(s.get(k, 0)) for k in _DRIVER_ERRORS)
        return driver_errors + self.poll_failures + self.rejected_samples

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["errors"] = self.errors
        return out


class RunningDriver:
    """Builds, polls and closes one sensor's driver; never raises from any of them.

    ``build`` makes the driver (in the caller's worker thread: opening a port may block).
    ``driver`` is one already built at start-up, or ``None`` to build it at the first
    :meth:`start`.
    """

    def __init__(self, sensor: str, driver_name: str, build: Callable[[], Driver], *,
                 driver: Driver | None = None, logger: logging.Logger = log) -> None:
        self.health = SensorHealth(sensor, driver_name)
        self.driver = driver
        self._build = build
        self._log = logger
        self._last_log = -LOG_EVERY_S

    @property
    def started(self) -> bool:
        return self.driver is not None

    def start(self) -> bool:
        """Build the driver unless it runs already; a failure is counted, not raised."""
        return self._running() is not None

    def _running(self) -> Driver | None:
        if self.driver is None:
            try:
                self.driver = self._build()
            except Exception as exc:
                self.fault(f"driver could not start: {exc!r}")
                return None
            self._log.info("sensor %s: driver %s started", self.health.name,
                           self.health.driver)
        return self.driver

    def poll(self) -> list[Sample]:
        """One timed poll: the driver's samples, or ``[]`` with the fault counted."""
        driver = self._running()
        if driver is None:
            return []
        self.health.polls += 1
        started = time.perf_counter()
        try:
            return driver.poll()
        except Exception as exc:  # a driver bug or a fault it did not catch: this sensor's
            self.fault(f"poll failed: {exc!r}")
            return []
        finally:
            self.health.poll_s = round(time.perf_counter() - started, 6)
            self.health.driver_stats = dataclasses.asdict(driver.stats)

    def accepted(self, time_ms: int) -> None:
        """The agent took one sample of the last poll (drafted or relayed)."""
        self.health.samples += 1
        self.health.last_sample_ms = time_ms

    def refused(self, reason: str) -> None:
        """The agent refused one sample of the last poll (the wire format cannot carry it)."""
        self.health.rejected_samples += 1
        self._report(f"sample refused: {reason}")

    def fault(self, message: str) -> None:
        """Count a failure of this sensor (a poll that raised, a driver that did not start)."""
        self.health.poll_failures += 1
        self._report(message)

    def _report(self, message: str) -> None:
        self.health.last_error = message
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            self._log.warning("sensor %s: %s", self.health.name, message)

    def close(self) -> None:
        driver, self.driver = self.driver, None
        if driver is None:
            return
        try:
            driver.close()
        except Exception as exc:
            self._log.warning("sensor %s: close failed: %r", self.health.name, exc)
