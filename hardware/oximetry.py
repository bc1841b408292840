"""Turn a 60-per-second oximeter stream into one reading per window (pure).

A signed reading per packet would be 60 signatures a second of mostly identical numbers; a
window summary keeps what a clinician needs: the typical value, its range, and how much of
the window was trustworthy. Packets the device marks invalid (finger out, searching, the
0x7F / 0xFF invalid codes) are counted but never enter the numbers: a window with no valid
packet carries flags and counts only, no SpO2 or pulse value at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from .base import Measurement
from .contec_protocol import RealTime

__all__ = ["OximetryWindow", "median_low", "summarise"]

T = TypeVar("T", int, float)


def median_low(values: list[T]) -> T:
    """The lower median, a value that is in ``values`` (as ``statistics.median_low``, without
    the half megabyte of RSS the ``statistics`` module costs the agent)."""
    if not values:
        raise ValueError("median_low of no values")
    return sorted(values)[(len(values) - 1) // 2]


def summarise(samples: list[RealTime]) -> tuple[Measurement, ...]:
    """Measurements for one window of real-time samples.

    Values are ``median_low`` (a value the device really reported, robust to a few
    artefacts) with the window's minimum and maximum.
    """
    valid = [s for s in samples if s.valid]
    out = [
        Measurement(name="finger_out", value=any(s.finger_out for s in samples), unit=None),
        Measurement(name="searching", value=any(s.searching for s in samples), unit=None),
        Measurement(name="valid_samples", value=len(valid), unit="count"),
        Measurement(name="samples", value=len(samples), unit="count"),
    ]
    if valid:
        spo2 = [s.spo2 for s in valid if s.spo2 is not None]
        pulse = [s.pulse_rate for s in valid if s.pulse_rate is not None]
        out += [
            Measurement(name="spo2", value=median_low(spo2), unit="%"),
            Measurement(name="spo2_min", value=min(spo2), unit="%"),
            Measurement(name="spo2_max", value=max(spo2), unit="%"),
            Measurement(name="pulse_rate", value=median_low(pulse), unit="beat/min"),
            Measurement(name="pulse_rate_min", value=min(pulse), unit="beat/min"),
            Measurement(name="pulse_rate_max", value=max(pulse), unit="beat/min"),
            Measurement(name="signal_strength", value=median_low([s.signal for s in valid]),
                        unit=None),
        ]
        perfusion = [s.pi_percent for s in valid if s.pi_percent is not None]
        if perfusion:
            out.append(Measurement(name="perfusion_index", value=median_low(perfusion), unit="%"))
    return tuple(out)


@dataclass
class OximetryWindow:
    """Collects ``size`` consecutive samples, then yields their summary."""

    size: int
    _samples: list[RealTime] = field(default_factory=list)

    def add(self, sample: RealTime) -> tuple[Measurement, ...] | None:
        self._samples.append(sample)
        if len(self._samples) < self.size:
            return None
        window, self._samples = self._samples, []
        return summarise(window)

    def discard(self) -> None:
        """Forget a partial window (the stream broke off: its samples are not contiguous)."""
        self._samples = []
