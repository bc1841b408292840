"""Sensor faults in the agent's words, at most once a minute per sensor.

Drivers count device faults (timeouts, checksum errors, other errors) rather than raise, so
that one bad frame costs one reading and not the sensor; the counts reach heartbeats and
``status``. The log gets a summary: how many faults since the last line, of which kind, and
the last one, so a dead probe is one line a minute and not one per poll (or pymodbus's own
lines, which the log setup keeps quiet). Polls that raise are logged by the poller itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from .poller import SensorHealth

__all__ = ["FaultReport"]

log = logging.getLogger("agent.sensors")

#: At most one line per sensor this often.
EVERY_S = 60.0
_KINDS = (("timeouts", "timeout"), ("checksum_errors", "checksum error"),
          ("other_errors", "other error"))


class FaultReport:
    """Logs each sensor's new driver faults, rate-limited."""

    def __init__(self, every_s: float = EVERY_S) -> None:
        self._every_s = every_s
        self._reported: dict[str, dict[str, int]] = {}
        self._said_at: dict[str, float] = {}

    def review(self, sensors: Iterable[SensorHealth], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for health in sensors:
            if now - self._said_at.get(health.name, -self._every_s) < self._every_s:
                continue
            stats = health.driver_stats
            before = self._reported.get(health.name, {})
            new = {key: int(stats.get(key, 0)) - before.get(key, 0) for key, _ in _KINDS}
            total = sum(new.values())
            if total <= 0:
                continue
            kinds = ", ".join(f"{n} {word}{'s' if n > 1 else ''}"
                              for (key, word), n in zip(_KINDS, new.values(), strict=True) if n)
            since = (f"in the last {now - self._said_at[health.name]:.0f} s"
                     if health.name in self._said_at else "since start")
            last = stats.get("last_error")
            log.warning("sensor %s (%s): %d fault%s %s (%s)%s", health.name, health.driver,
                        total, "s" if total > 1 else "", since, kinds,
                        f"; last: {last}" if last else "")
            self._reported[health.name] = {key: int(stats.get(key, 0)) for key, _ in _KINDS}
            self._said_at[health.name] = now
