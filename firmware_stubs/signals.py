"""Seeded signal building blocks shared by the device models.

Everything is a pure function of (seed, simulated time) or is stepped at a fixed rate from a
seeded generator, so the same seed gives the same signal on every machine. String seeds for
``random.Random`` are hashed with SHA-512 (unlike ``hash()``, which is salted per process).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

__all__ = ["Drift", "EventTrain", "day_phase", "jitter"]

DAY_S = 86_400.0


def day_phase(t: float, start_hour: float) -> float:
    """Hour of the simulated day (0..24) at ``t`` seconds after a start at ``start_hour``."""
    return (start_hour + t / 3600.0) % 24.0


def jitter(seed: int, name: str, t: float, scale: float) -> float:
    """White noise that is a pure function of its arguments (uniform in ±scale)."""
    return random.Random(f"{seed}:{name}:{t:.3f}").uniform(-scale, scale)


@dataclass
class Drift:
    """Slow wander: a sum of a few sines with seeded periods and phases (hours to days)."""

    seed: int
    name: str
    amplitude: float
    _terms: list[tuple[float, float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = random.Random(f"{self.seed}:drift:{self.name}")
        self._terms = [
            (rng.uniform(0.2, 1.0), rng.uniform(2 * 3600, 3 * DAY_S), rng.uniform(0, 2 * math.pi))
            for _ in range(3)
        ]

    def at(self, t: float) -> float:
        total = sum(weight for weight, _, _ in self._terms)
        return self.amplitude * sum(
            w * math.sin(2 * math.pi * t / period + phase) for w, period, phase in self._terms
        ) / total


@dataclass
class EventTrain:
    """A Poisson process of events with seeded sizes, generated lazily in time order."""

    seed: int
    name: str
    mean_interval_s: float
    _rng: random.Random = field(init=False)
    _events: list[tuple[float, float, float]] = field(default_factory=list)  # start, size, tau
    _horizon: float = 0.0

    def __post_init__(self) -> None:
        self._rng = random.Random(f"{self.seed}:events:{self.name}")

    def _extend(self, t: float) -> None:
        while self._horizon <= t:
            self._horizon += self._rng.expovariate(1.0 / self.mean_interval_s)
            self._events.append((self._horizon, self._rng.random(), self._rng.random()))

    def active(self, t: float, within_s: float) -> list[tuple[float, float, float]]:
        """Events that started in ``(t - within_s, t]``, as (age_s, size01, shape01)."""
        self._extend(t)
        return [(t - start, size, shape) for start, size, shape in self._events
                if 0 <= t - start < within_s]
