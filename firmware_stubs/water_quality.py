"""Water-quality probe emulator: a pymodbus RTU server that serves a register-map profile.

    python -m firmware_stubs.water_quality --profile supmea-ph8001 [--unit 1] [--seed 1]

Any profile the ``modbus-water`` driver knows works, so the emulator and the driver agree by
construction on *where* values live, while the values themselves come from
:class:`~firmware_stubs.water_model.WaterModel`. Each value is quantised like the device
would (integer registers at their scale, floats rounded to the probe's resolution) and
recorded in the transcript under the driver's measurement name.

Aqualabo-style profiles measure when the trigger register is written and serve the last
measurement on reads, as the real sensor does (research §1.3). Yosemitech's non-standard
frames (quantity-0 reads, zero-length writes; §1.2) are only needed by probes with a
start/stop cycle; the Y4000 profile served here needs none, so a stock pymodbus server
suffices.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from hardware.base import Value
from hardware.registers import encode_value
from hardware.water_profiles import BUILTIN_PROFILES, RegisterField, WaterProfile

from .cli import EmulatorCommand, main
from .clock import SimClock
from .faults import LineFaults
from .modbus_host import ModbusEmulator, ModbusHost
from .transcript import Transcript
from .water_model import WaterModel

__all__ = ["COMMAND", "WaterProbeEmulator"]

_INT_RANGES = {"int16": (-0x8000, 0x7FFF), "uint16": (0, 0xFFFF),
               "int32": (-0x8000_0000, 0x7FFF_FFFF), "uint32": (0, 0xFFFF_FFFF)}


def quantise(field: RegisterField, true_value: float) -> tuple[Value, list[int]]:
    """What the probe reports for ``true_value``, and the registers that carry it."""
    if field.data_type == "float32":
        reported = round(true_value, field.decimals)
        return reported, encode_value(reported, "float32", field.byte_order)
    low, high = _INT_RANGES[field.data_type]
    raw = max(low, min(high, round(true_value * 10**field.decimals)))
    reported_int: Value = raw if field.decimals == 0 else raw / 10.0**field.decimals
    return reported_int, encode_value(raw, field.data_type, field.byte_order)


class WaterProbeEmulator(ModbusEmulator):
    def __init__(self, profile: WaterProfile, *, unit: int | None = None, seed: int = 1,
                 clock: SimClock | None = None, port: str | None = None,
                 faults: LineFaults | None = None, transcript: Transcript | None = None) -> None:
        self.profile = profile
        self.unit = profile.default_unit if unit is None else unit
        self.model = WaterModel(seed)
        self.clock = clock or SimClock()
        self._latest: dict[str, tuple[Value, list[int]]] = {}
        if profile.trigger is not None:
            self._measure(self.clock.now())  # the sensor holds its last measurement
        self.host = ModbusHost(
            [self._device()], port=port, baudrate=profile.baudrate, parity=profile.parity,
            stopbits=profile.stopbits, faults=faults, transcript=transcript,
        )

    def _device(self) -> SimDevice:
        blocks = [SimData(f.address, count=f.size, values=0, datatype=DataType.REGISTERS,
                          readonly=True) for f in self.profile.fields]
        trigger = self.profile.trigger
        if trigger is not None:
            blocks.append(SimData(trigger.address, count=len(trigger.values), values=0,
                                  datatype=DataType.REGISTERS))
        return SimDevice(self.unit, simdata=blocks, action=self._action)

    def _measure(self, t: float) -> None:
        for field in self.profile.fields:
            self._latest[field.name] = quantise(field, self.model.value(field.name, t))

    async def _action(self, function: int, start: int, address: int, count: int,
                      registers: list[int], values: Sequence[int] | Sequence[bool] | None,
                      ) -> ExcCodes | None:
        trigger = self.profile.trigger
        if values is not None:
            if trigger is not None and address == trigger.address:
                self._measure(self.clock.tick())
            return None
        if function != self.profile.function:
            return ExcCodes.ILLEGAL_FUNCTION
        fields = [f for f in self.profile.fields
                  if address <= f.address and f.address + f.size <= address + count]
        if trigger is None:
            t = self.clock.tick()
            for field in fields:
                self._latest[field.name] = quantise(field, self.model.value(field.name, t))
        for field in fields:
            words = self._latest[field.name][1]
            offset = field.address - start
            registers[offset : offset + len(words)] = words
        self.host.stage("read", {f.name: self._latest[f.name][0] for f in fields})
        return None


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="supmea-ph8001", choices=sorted(BUILTIN_PROFILES))
    parser.add_argument("--unit", type=int, default=None, help="slave id (profile default)")


def _build(args: argparse.Namespace, clock: SimClock,
           transcript: Transcript) -> tuple[WaterProbeEmulator, str]:
    emulator = WaterProbeEmulator(
        BUILTIN_PROFILES[args.profile], unit=args.unit, seed=args.seed, clock=clock,
        port=args.port, transcript=transcript,
    )
    return emulator, f"{args.profile} water probe (unit {emulator.unit})"


COMMAND = EmulatorCommand("water_quality", "Emulate a water-quality probe on Modbus RTU.",
                          _options, _build)


if __name__ == "__main__":
    main(command=COMMAND)
