"""A patient on a fingertip pulse oximeter, 60 samples a second (seeded, deterministic).

SpO2 and pulse wander slowly, with occasional desaturations; the displayed numbers update
once a second like a real device's. The pleth wave follows the pulse. Three kinds of trouble
come and go: the finger slips out (the device flags it, pleth reads 0x40, values invalid),
the device searches for the pulse after the finger returns (values invalid), and motion
artefacts that the device does *not* flag: noisy numbers with a weak signal, which is what
the driver's window median is for.
"""

from __future__ import annotations

import math

from hardware.contec_protocol import RealTime

from .signals import Drift, EventTrain, jitter

__all__ = ["RATE_HZ", "OximeterModel"]

RATE_HZ = 60
SEARCH_S = 4.0


class OximeterModel:
    def __init__(self, seed: int, *, finger_out_every_s: float = 480.0,
                 motion_every_s: float = 240.0, desaturation_every_s: float = 900.0) -> None:
        """The ``*_every_s`` are mean intervals between troubles (Poisson)."""
        self.seed = seed
        self._spo2_drift = Drift(seed, "spo2", 1.2)
        self._pulse_drift = Drift(seed, "pulse", 9.0)
        self._pi_drift = Drift(seed, "pi", 1.0)
        self._desaturations = EventTrain(seed, "desaturation", desaturation_every_s)
        self._finger_out = EventTrain(seed, "finger-out", finger_out_every_s)
        self._motion = EventTrain(seed, "motion", motion_every_s)

    def _finger_state(self, t: float) -> str:
        for age, size, _ in self._finger_out.active(t, 45.0 + SEARCH_S):
            out_for = 5.0 + 40.0 * size * size
            if age < out_for:
                return "out"
            if age < out_for + SEARCH_S:
                return "searching"
        return "in"

    def sample(self, index: int) -> RealTime:
        """The device's real-time packet number ``index`` (60 per simulated second)."""
        t = index / RATE_HZ
        second = math.floor(t)  # displayed values refresh once a second
        state = self._finger_state(t)
        if state == "out":
            return RealTime(signal=0, pleth=0x40, bar=0, spo2=None, pulse_rate=None,
                            pi_percent=None, finger_out=True, searching=False)
        pulse = 72.0 + self._pulse_drift.at(second) + 2.0 * math.sin(second / 4.0)
        dip = sum(depth * 10.0 * math.sin(math.pi * min(1.0, age / 60.0))
                  for age, depth, _ in self._desaturations.active(second, 60.0))
        spo2 = 97.0 + self._spo2_drift.at(second) - dip
        signal = 6 + round(jitter(self.seed, "signal", second, 1.49))
        if self._motion.active(second, 6.0):
            spo2 -= 4.0 + 8.0 * abs(jitter(self.seed, "motion-spo2", second, 1.0))
            pulse += 25.0 * jitter(self.seed, "motion-pulse", second, 1.0)
            signal = 1
        beat = (t * pulse / 60.0) % 1.0
        wave = math.exp(-((beat - 0.2) ** 2) / 0.01) + 0.35 * math.exp(-((beat - 0.5) ** 2) / 0.02)
        pleth = max(0, min(127, round(20 + 80 * wave + jitter(self.seed, "pleth", t, 2.0))))
        searching = state == "searching"
        return RealTime(
            signal=signal,
            pleth=pleth,
            bar=min(15, pleth // 8),
            spo2=None if searching else max(70, min(100, round(spo2))),
            pulse_rate=None if searching else max(30, min(250, round(pulse))),
            pi_percent=round(max(0.3, 2.5 + self._pi_drift.at(second)), 2),
            finger_out=False,
            searching=searching,
            beep=beat < pulse / 60.0 / RATE_HZ,  # the packet in which the beat starts
        )
