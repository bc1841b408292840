"""Water-quality probes over Modbus RTU, driven by a register-map profile.

Driver name ``modbus-water``. Settings: ``port`` (required), ``profile`` (a built-in name or
a profile table, see :mod:`hardware.water_profiles`), ``unit`` (slave id; the profile's
default), ``baudrate`` / ``parity`` / ``stopbits`` (the profile's defaults), ``timeout_s``
(0.5), ``trigger_wait_s`` (the profile's wait after a measurement trigger).
"""

from __future__ import annotations

import time

from provenance.errors import MalformedError

from .base import DriverStats, Measurement, Sample
from .modbus_link import ModbusLink
from .registry import register
from .settings import Settings
from .water_profiles import WaterProfile, resolve_profile

__all__ = ["KIND", "ModbusWaterDriver"]

KIND = "water-quality"


class ModbusWaterDriver:
    """Reads every field of a profile once per poll and returns one sample."""

    kind = KIND

    def __init__(self, *, name: str, profile: WaterProfile, link: ModbusLink, unit: int,
                 trigger_wait_s: float) -> None:
        self.name = name
        self.profile = profile
        self.stats = link.stats
        self._link = link
        self._unit = unit
        self._trigger_wait_s = trigger_wait_s
        self._blocks = profile.blocks()

    def poll(self) -> list[Sample]:
        self.stats.polls += 1
        trigger = self.profile.trigger
        if trigger is not None:
            if not self._link.write_registers(self._unit, trigger.address, list(trigger.values)):
                return []
            time.sleep(self._trigger_wait_s)
        measurements: list[Measurement] = []
        refused: str | None = None
        for block in self._blocks:
            registers = self._link.read(self._unit, self.profile.function, block.address,
                                        block.count)
            if registers is None:
                continue
            try:
                # A probe answering some blocks still measured those quantities: keep them.
                measurements.extend(block.decode(registers))
            except MalformedError as exc:
                # A good frame holding NaN (how some probes report a failed measurement) is
                # not a line fault: the sample is returned and the agent refuses all of it.
                refused = refused or str(exc)
        if not measurements and refused is None:
            return []
        self.stats.samples += 1
        return [Sample(KIND, tuple(measurements), refused=refused)]

    def close(self) -> None:
        self._link.close()


@register("modbus-water")
def create_modbus_water(settings: Settings) -> ModbusWaterDriver:
    profile = resolve_profile(settings.raw("profile"))
    line = settings.serial_line(
        baudrate=profile.baudrate, parity=profile.parity, stopbits=profile.stopbits
    )
    unit = settings.integer("unit", profile.default_unit, low=1, high=247)
    default_wait = profile.trigger.wait_s if profile.trigger else 0.0
    trigger_wait_s = settings.number("trigger_wait_s", default_wait, low=0.0, high=60.0)
    return ModbusWaterDriver(
        name="modbus-water", profile=profile, link=ModbusLink(line, DriverStats()), unit=unit,
        trigger_wait_s=trigger_wait_s,
    )
