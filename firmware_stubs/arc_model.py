"""A PV combiner box with arc-fault detection, plus a residual-current relay (seeded).

Stepped once per simulated second. String currents follow the sun; arcs strike random
channels (a loose connector), last a few seconds at an intensity well above the alarm
threshold, and leave the alarm latched for a hold time before it clears by itself. Each
alarm adds one to that channel's history counter, which never decreases. Bus arcs are rarer.
The leakage current idles at a few mA and now and then climbs through the relay's warning
and alarm levels (damp insulation) before falling back.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from hardware.arc_protocol import MAX_CHANNELS

from .signals import day_phase

__all__ = ["ArcModel"]

ALARM_HOLD_S = 10
CHANNEL_THRESHOLD = 40  # the manuals' default arc threshold (0-128 scale)
RESIDUAL_WARNING_MA = 50
RESIDUAL_ALARM_MA = 100


@dataclass
class ArcModel:
    seed: int
    channels: int = 8
    arc_every_s: float = 1800.0  # mean interval between arcs, whole box
    bus_arc_every_s: float = 6 * 3600.0
    leak_every_s: float = 2 * 3600.0
    start_hour: float = 10.0
    t: int = 0
    alarm_until: list[int] = field(default_factory=lambda: [0] * MAX_CHANNELS)
    arc_until: list[int] = field(default_factory=lambda: [0] * MAX_CHANNELS)
    counts: list[int] = field(default_factory=lambda: [0] * MAX_CHANNELS)
    intensity: list[int] = field(default_factory=lambda: [0] * MAX_CHANNELS)
    intensity_max: list[int] = field(default_factory=lambda: [0] * MAX_CHANNELS)
    intensity_10min: list[int] = field(default_factory=lambda: [0] * MAX_CHANNELS)
    bus_alarm_until: int = 0
    bus_arc_until: int = 0
    bus_count: int = 0
    leak_ma: float = 6.0
    _leak_target: float = 6.0
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise ValueError(f"channels must be 1..{MAX_CHANNELS}")
        self._rng = random.Random(f"{self.seed}:arcs")
        self._offsets = [1 + self._rng.gauss(0, 0.03) for _ in range(MAX_CHANNELS)]

    def advance_to(self, t: float) -> None:
        while self.t + 1 <= t:
            self._step()

    def _step(self) -> None:
        self.t += 1
        rng, t = self._rng, self.t
        if t % 600 == 0:
            self.intensity_10min = [0] * MAX_CHANNELS
        for ch in range(self.channels):
            if t >= self.arc_until[ch] and rng.random() < 1 / (self.arc_every_s * self.channels):
                self.arc_until[ch] = t + rng.randint(1, 4)
                if t >= self.alarm_until[ch]:
                    self.counts[ch] = (self.counts[ch] + 1) & 0xFFFF
            arcing = t < self.arc_until[ch]
            if arcing:
                self.alarm_until[ch] = self.arc_until[ch] + ALARM_HOLD_S
            level = rng.randint(60, 127) if arcing else rng.randint(3, 18)
            self.intensity[ch] = level
            self.intensity_max[ch] = max(self.intensity_max[ch], level)
            self.intensity_10min[ch] = max(self.intensity_10min[ch], level)
        if t >= self.bus_arc_until and rng.random() < 1 / self.bus_arc_every_s:
            self.bus_arc_until = t + rng.randint(1, 3)
            if t >= self.bus_alarm_until:
                self.bus_count = (self.bus_count + 1) & 0xFFFF
        if t < self.bus_arc_until:
            self.bus_alarm_until = self.bus_arc_until + ALARM_HOLD_S
        if rng.random() < 1 / self.leak_every_s:
            self._leak_target = rng.uniform(40.0, 140.0)
        elif self._leak_target > 10 and rng.random() < 1 / 600:
            self._leak_target = rng.uniform(4.0, 9.0)
        self.leak_ma += (self._leak_target - self.leak_ma) / 60.0 + rng.gauss(0, 0.2)
        self.leak_ma = max(0.0, self.leak_ma)

    # --- what the devices report -----------------------------------------------------------

    def alarm_channels(self) -> set[int]:
        return {ch + 1 for ch in range(self.channels) if self.t < self.alarm_until[ch]}

    @property
    def bus_alarm(self) -> bool:
        return self.t < self.bus_alarm_until

    def sun(self) -> float:
        hour = day_phase(self.t, self.start_hour)
        return max(0.0, math.sin(math.pi * (hour - 6.0) / 12.0))

    def channel_currents_ma(self) -> list[int]:
        sun = self.sun()
        noise = random.Random(f"{self.seed}:currents:{self.t}")
        return [
            round(9000 * sun * self._offsets[ch] + noise.uniform(-20, 20))
            if ch < self.channels and sun > 0 else 0
            for ch in range(MAX_CHANNELS)
        ]

    def bus_voltage(self) -> int:
        return round(620 + 160 * self.sun()) if self.sun() > 0.02 else 0

    def temperatures_dc(self) -> tuple[int, int]:
        base = 250 + 150 * self.sun()
        return round(base), round(base + 35)

    def residual_status_bits(self) -> int:
        warning = self.leak_ma >= RESIDUAL_WARNING_MA
        return int(warning) | int(self.leak_ma >= RESIDUAL_ALARM_MA) << 1
