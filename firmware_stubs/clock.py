"""Simulated time for the device models.

Signals are functions of simulated seconds since the emulator started, so a seed fixes them
completely. :class:`SimClock` maps wall time onto that axis at ``speed`` (a person watching a
battery cycle wants hours per minute), or, with ``step``, advances a fixed amount per request
so that a test gets the same values whatever its timing.
"""

from __future__ import annotations

import threading
import time

__all__ = ["SimClock"]


class SimClock:
    def __init__(self, *, speed: float = 1.0, step: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        if step is not None and step < 0:
            raise ValueError("step must not be negative")
        self.speed = speed
        self.step = step
        self._t0 = time.monotonic()
        self._stepped = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Simulated seconds since start, without advancing a stepped clock."""
        if self.step is not None:
            return self._stepped
        return (time.monotonic() - self._t0) * self.speed

    def tick(self) -> float:
        """Simulated time of a new request: a stepped clock advances by ``step`` first."""
        if self.step is None:
            return self.now()
        with self._lock:
            self._stepped += self.step
            return self._stepped
