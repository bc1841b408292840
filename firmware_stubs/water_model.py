"""A drinking-water sampling point, as seen by its probes (seeded, deterministic in time).

Diurnal temperature and pH (photosynthesis lifts pH in the afternoon), turbidity spikes after
"rain" that decay over tens of minutes, free chlorine dosed every few hours and decaying
first-order in between (ORP follows chlorine), dissolved oxygen tracking temperature.
"""

from __future__ import annotations

import math

from .signals import Drift, EventTrain, day_phase, jitter

__all__ = ["WaterModel"]

CHLORINE_DOSE_MG_L = 1.2
CHLORINE_DOSE_EVERY_S = 6 * 3600.0
CHLORINE_DECAY_PER_H = 0.12


class WaterModel:
    def __init__(self, seed: int, *, start_hour: float = 6.0) -> None:
        self.seed = seed
        self.start_hour = start_hour
        self._weather = Drift(seed, "weather", 1.5)
        self._ph_drift = Drift(seed, "ph", 0.05)
        self._rain = EventTrain(seed, "rain", 3 * 3600.0)
        self._other: dict[str, Drift] = {}

    def _diurnal(self, t: float, peak_hour: float) -> float:
        return math.cos(2 * math.pi * (day_phase(t, self.start_hour) - peak_hour) / 24.0)

    def value(self, name: str, t: float) -> float:
        """The true value of quantity ``name`` at ``t`` simulated seconds."""
        noise = jitter(self.seed, name, t, 1.0)  # uniform in ±1, scaled per quantity
        temperature = 14.0 + 2.5 * self._diurnal(t, 15.0) + self._weather.at(t)
        turbidity = 0.35 + sum(
            (2.0 + 13.0 * size) * math.exp(-age / (1200.0 + 2400.0 * shape))
            for age, size, shape in self._rain.active(t, 6 * 3600.0)
        )
        since_dose = t % CHLORINE_DOSE_EVERY_S
        chlorine = CHLORINE_DOSE_MG_L * math.exp(-CHLORINE_DECAY_PER_H * since_dose / 3600.0)
        chlorine = max(0.05, chlorine - 0.02 * (turbidity - 0.35))  # turbidity consumes Cl2
        ph = 7.35 + 0.2 * self._diurnal(t, 16.0) + self._ph_drift.at(t) - 0.01 * turbidity
        match name:
            case "temperature":
                return temperature + 0.05 * noise
            case "ph":
                return ph + 0.01 * noise
            case "ph_electrode_potential":
                slope = 59.16 * (temperature + 273.15) / 298.15
                return -slope * (ph - 7.0) + 2.0 + 0.3 * noise
            case "turbidity":
                return turbidity + 0.02 * noise
            case "free_chlorine":
                return chlorine + 0.01 * noise
            case "orp":
                return 420.0 + 180.0 * chlorine + 2.0 * noise
            case "dissolved_oxygen":
                saturation = 14.62 - 0.3898 * temperature + 0.006969 * temperature**2
                return saturation * (0.93 + 0.04 * self._diurnal(t, 14.0)) + 0.02 * noise
            case "conductivity":
                return 0.45 + 0.02 * self._diurnal(t, 3.0) + 0.01 * turbidity + 0.002 * noise
            case "chlorophyll":
                return 3.0 + 1.5 * max(0.0, self._diurnal(t, 13.0)) + 0.05 * noise
            case "blue_green_algae":
                return 0.6 + 0.3 * max(0.0, self._diurnal(t, 14.0)) + 0.02 * noise
        # A configured profile may name anything; give it a plausible bounded wander.
        drift = self._other.setdefault(name, Drift(self.seed, name, 10.0))
        return 50.0 + drift.at(t) + 0.5 * noise
