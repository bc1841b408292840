"""A battery pack behind a JBD BMS: cycles, cell imbalance, heat and the odd protection trip.

Stepped once per simulated second from a seeded generator: discharge under a wandering load
until the weakest cell reaches its cut-off, rest, charge at constant current then constant
voltage with top balancing, rest, repeat. Cells differ in capacity and resistance (so they
drift apart), the pack warms with I²R and follows the day's ambient temperature, and now and
then a load surge trips discharge over-current or a charger overshoot trips cell over-voltage:
the BMS opens the FET, counts the event and recovers after its release delay.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field

from hardware.jbd_protocol import COUNTER_NAMES, PROTECTION_BITS, BasicInfo

from .signals import day_phase

__all__ = ["CHEMISTRIES", "BatteryPack", "Chemistry"]


@dataclass(frozen=True)
class Chemistry:
    ocv: tuple[tuple[float, float], ...]  # (state of charge, open-circuit volts)
    cv_volts: float  # charger's constant-voltage target per cell
    cutoff_volts: float  # discharge stops here (the load disconnects, not the BMS)
    balance_volts: float  # balancing starts above this
    overvoltage_volts: float

    def open_circuit(self, soc: float) -> float:
        socs = [p[0] for p in self.ocv]
        i = min(max(bisect.bisect_left(socs, soc), 1), len(socs) - 1)
        (s0, v0), (s1, v1) = self.ocv[i - 1], self.ocv[i]
        return v0 + (v1 - v0) * (min(max(soc, s0), s1) - s0) / (s1 - s0)


CHEMISTRIES = {
    "lfp": Chemistry(
        ocv=((0.0, 2.50), (0.03, 3.00), (0.08, 3.18), (0.15, 3.22), (0.30, 3.26), (0.50, 3.29),
             (0.70, 3.31), (0.90, 3.33), (0.97, 3.38), (1.0, 3.50)),
        cv_volts=3.50, cutoff_volts=3.00, balance_volts=3.40, overvoltage_volts=3.65,
    ),
    "nmc": Chemistry(
        ocv=((0.0, 3.00), (0.05, 3.30), (0.10, 3.45), (0.20, 3.55), (0.30, 3.62), (0.40, 3.68),
             (0.50, 3.74), (0.60, 3.82), (0.70, 3.90), (0.80, 3.98), (0.90, 4.07), (1.0, 4.18)),
        cv_volts=4.15, cutoff_volts=3.35, balance_volts=4.00, overvoltage_volts=4.25,
    ),
}

RELEASE_S = {"discharge_overcurrent": 20, "cell_overvoltage": 60}
BALANCE_AMPS = 0.05
MANUFACTURED = (2023 - 2000) << 9 | 5 << 5 | 17  # 2023-05-17


@dataclass
class _Cell:
    capacity_ah: float
    resistance_ohm: float
    soc: float


@dataclass
class BatteryPack:
    seed: int
    cells: int = 4
    chemistry: str = "lfp"
    capacity_ah: float = 100.0
    ntc_count: int = 3
    start_hour: float = 6.0
    surge_every_s: float = 3 * 3600.0  # mean interval of load surges that trip over-current
    overshoot_every_s: float = 8 * 3600.0  # mean interval of charger overshoots (cell OV)
    t: int = 0
    current_a: float = 0.0
    phase: str = "discharge"
    phase_until: int = 0
    host_fet_disable: int = 0  # 0xE1 bits written by the host
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))
    trips: dict[str, int] = field(default_factory=dict)  # protection -> release time
    balancing: int = 0
    discharged_ah: float = 0.0
    temperature_c: float = 22.0
    _cells: list[_Cell] = field(default_factory=list)
    _rng: random.Random = field(init=False)
    _load_factor: float = 1.0

    def __post_init__(self) -> None:
        if self.chemistry not in CHEMISTRIES:
            raise ValueError(f"chemistry must be one of {sorted(CHEMISTRIES)}")
        self._chem = CHEMISTRIES[self.chemistry]
        self._rng = random.Random(f"{self.seed}:battery")
        start_soc = 0.55 + 0.35 * self._rng.random()
        self._cells = [
            _Cell(self.capacity_ah * (1 + self._rng.gauss(0, 0.015)),
                  0.0015 * 100 / self.capacity_ah * (1 + self._rng.gauss(0, 0.1)),
                  min(1.0, max(0.05, start_soc + self._rng.gauss(0, 0.01))))
            for _ in range(self.cells)
        ]

    # --- simulation ------------------------------------------------------------------------

    def advance_to(self, t: float) -> None:
        while self.t + 1 <= t:
            self._step()

    def _ambient(self) -> float:
        hour = day_phase(self.t, self.start_hour)
        return 20.0 + 5.0 * math.cos(2 * math.pi * (hour - 15.0) / 24.0)

    def cell_volts(self) -> list[float]:
        return [self._chem.open_circuit(c.soc) + self.current_a * c.resistance_ohm
                for c in self._cells]

    def _trip(self, protection: str) -> None:
        self.counters[protection] += 1
        self.trips[protection] = self.t + RELEASE_S[protection]

    def _step(self) -> None:
        self.t += 1
        rng = self._rng
        c_rate = self.capacity_ah
        for protection, release in list(self.trips.items()):
            if self.t >= release:
                del self.trips[protection]
        volts = self.cell_volts()
        if self.phase == "discharge":
            if self.t % 60 == 0:
                self._load_factor = min(2.0, max(0.2, self._load_factor * math.exp(
                    rng.gauss(0, 0.15))))
            demand = -0.25 * c_rate * self._load_factor
            if rng.random() < 1 / self.surge_every_s:
                demand = -2.5 * c_rate  # a motor start or an inverter inrush
                self._trip("discharge_overcurrent")
            if min(volts) <= self._chem.cutoff_volts:
                self.phase, self.phase_until = "rest-empty", self.t + 1800
            self.current_a = demand if self.discharge_fet_on else 0.0
        elif self.phase == "charge":
            if max(volts) >= self._chem.cv_volts:
                self.current_a *= 0.995  # constant voltage: the current tapers
            else:
                self.current_a = 0.3 * c_rate
            if self.current_a < 0.03 * c_rate:
                self.phase, self.phase_until = "rest-full", self.t + 3600
            if rng.random() < 1 / self.overshoot_every_s:
                self._trip("cell_overvoltage")
            if not self.charge_fet_on:
                self.current_a = 0.0 if self.phase == "charge" else self.current_a
        else:
            self.current_a = 0.0
            if self.t >= self.phase_until:
                self.phase = "charge" if self.phase == "rest-empty" else "discharge"
                self.current_a = 0.3 * c_rate if self.phase == "charge" else 0.0
        if self.phase == "charge" and not self.charge_fet_on:
            self.current_a = 0.0
        self._update_cells(volts)
        heat = self.current_a**2 * sum(c.resistance_ohm for c in self._cells)
        self.temperature_c += (heat - (self.temperature_c - self._ambient())) / 3600.0

    def _update_cells(self, volts: list[float]) -> None:
        low = min(volts)
        self.balancing = 0
        for index, (cell, v) in enumerate(zip(self._cells, volts, strict=True)):
            amps = self.current_a
            if self.phase == "charge" and v > self._chem.balance_volts and v - low > 0.010:
                self.balancing |= 1 << index
                amps -= BALANCE_AMPS
            cell.soc = min(1.0, max(0.0, cell.soc + amps / 3600.0 / cell.capacity_ah))
        if self.current_a < 0:
            self.discharged_ah += -self.current_a / 3600.0

    # --- what the BMS reports ------------------------------------------------------------

    @property
    def charge_fet_on(self) -> bool:
        return not (self.host_fet_disable & 1) and "cell_overvoltage" not in self.trips

    @property
    def discharge_fet_on(self) -> bool:
        return not (self.host_fet_disable & 2) and "discharge_overcurrent" not in self.trips

    def basic_info(self) -> BasicInfo:
        soc = sum(c.soc for c in self._cells) / len(self._cells)
        protection = 0
        for name in self.trips:
            protection |= 1 << PROTECTION_BITS.index(name)
        ambient_offsets = (0.0, 0.4, 1.0 + 0.02 * abs(self.current_a))  # cells, middle, FETs
        ntc = tuple(
            round((self.temperature_c + ambient_offsets[i % 3] + 273.1) * 10)
            for i in range(self.ntc_count)
        )
        return BasicInfo(
            voltage_10mv=round(sum(self.cell_volts()) * 100),
            current_10ma=round(self.current_a * 100),
            remaining_10mah=round(soc * self.capacity_ah * 100),
            nominal_10mah=round(self.capacity_ah * 100),
            cycles=int(self.discharged_ah / self.capacity_ah),
            manufacture_date=MANUFACTURED,
            balance_bits=self.balancing,
            protection_bits=protection,
            software_version=0x80,
            soc_percent=round(soc * 100),
            fet_bits=int(self.charge_fet_on) | int(self.discharge_fet_on) << 1,
            cell_count=len(self._cells),
            ntc_dk=ntc,
        )

    def cell_millivolts(self) -> tuple[int, ...]:
        noise = random.Random(f"{self.seed}:cells:{self.t}")
        return tuple(round(v * 1000) + noise.randint(-1, 1) for v in self.cell_volts())
