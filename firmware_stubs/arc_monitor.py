"""Arc-fault monitor emulator: a Fonrich MMPS-style map plus an Acrel ASJ relay (research §4).

    python -m firmware_stubs.arc_monitor [--port P] [--seed 1] [--channels 8] [--unit 1]
                                         [--residual-unit 2] [--arc-every 1800]

One pymodbus RTU server answers for two slaves on the line: the arc monitor (FC03 and FC04
share its map, research §4.1) and the residual-current relay (FC03, §4.2). Registers are
refreshed from :class:`~firmware_stubs.arc_model.ArcModel` on every read, so alarms, counters
and intensities are those of the simulated instant.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from hardware.arc_protocol import (
    ALARM_BLOCK,
    ARC_BITMAP,
    INTENSITY_10MIN,
    INTENSITY_MAX,
    INTENSITY_REALTIME,
    MAX_CHANNELS,
    RESIDUAL_ALARM_STATUS,
    RESIDUAL_CURRENT,
    STATUS_BLOCK,
    encode_alarm_bitmaps,
)

from .arc_model import RESIDUAL_ALARM_MA, RESIDUAL_WARNING_MA, ArcModel
from .cli import EmulatorCommand, main
from .clock import SimClock
from .faults import LineFaults
from .modbus_host import ModbusEmulator, ModbusHost
from .transcript import Transcript

__all__ = ["COMMAND", "ArcMonitorEmulator"]

_STATUS_END = 0x0123
_ALARM_END = 0x0158
_INTENSITY_END = 0x0297
_THRESHOLDS = 0x0B00
_RESIDUAL_END = 0x0024


def _word(value: int) -> int:
    return value & 0xFFFF


class ArcMonitorEmulator(ModbusEmulator):
    def __init__(self, *, seed: int = 1, channels: int = 8, unit: int = 1,
                 residual_unit: int | None = 2, arc_every_s: float = 1800.0,
                 clock: SimClock | None = None, port: str | None = None,
                 faults: LineFaults | None = None, transcript: Transcript | None = None) -> None:
        self.model = ArcModel(seed, channels=channels, arc_every_s=arc_every_s)
        self.clock = clock or SimClock()
        self.unit = unit
        regs = DataType.REGISTERS
        devices = [SimDevice(unit, simdata=[
            SimData(STATUS_BLOCK, count=_STATUS_END - STATUS_BLOCK + 1, datatype=regs),
            SimData(ALARM_BLOCK, count=_ALARM_END - ALARM_BLOCK + 1, datatype=regs),
            SimData(INTENSITY_REALTIME, count=_INTENSITY_END - INTENSITY_REALTIME + 1,
                    datatype=regs),
            # thresholds (research §4.1): release %, bus V low/high, temps, currents
            SimData(_THRESHOLDS, values=[100, 300, 1000, 800, 800, 0, 0, 100], datatype=regs),
        ], action=self._monitor_action)]
        if residual_unit is not None:
            devices.append(SimDevice(residual_unit, simdata=[
                SimData(0, count=_RESIDUAL_END + 1, datatype=DataType.REGISTERS),
            ], action=self._relay_action))
        self.host = ModbusHost(devices, port=port, faults=faults, transcript=transcript)

    def _registers(self) -> tuple[dict[int, int], dict[int, tuple[str, object]]]:
        """Every register of the monitor now, and the ones the driver publishes by name."""
        model = self.model
        currents = model.channel_currents_ma()
        temps = model.temperatures_dc()
        total = sum(currents)
        alarms = model.alarm_channels()
        low, high = encode_alarm_bitmaps(alarms)
        trip = int(model.bus_alarm) | int(bool(alarms)) << 1
        words = dict(zip(range(STATUS_BLOCK, _STATUS_END + 1), [
            model.bus_voltage(), _word(temps[0]), _word(temps[1]), 0, model.channels, 0,
            _word(round(total / 10)), _word(round(total / model.channels)),
            *(_word(c) for c in currents),
        ], strict=True))
        alarm_block = [trip, 0, 0, 0, 0, 0, low, high, model.bus_count, *model.counts]
        alarm_block += [0] * (_ALARM_END - ALARM_BLOCK + 1 - len(alarm_block))
        words.update(zip(range(ALARM_BLOCK, _ALARM_END + 1), alarm_block, strict=True))
        for base, series in ((INTENSITY_REALTIME, model.intensity),
                             (INTENSITY_MAX, model.intensity_max),
                             (INTENSITY_10MIN, model.intensity_10min)):
            words.update(zip(range(base, base + MAX_CHANNELS), series, strict=True))
        named: dict[int, tuple[str, object]] = {
            STATUS_BLOCK: ("bus_voltage", model.bus_voltage()),
            STATUS_BLOCK + 1: ("temperature_1", temps[0] / 10),
            STATUS_BLOCK + 2: ("temperature_2", temps[1] / 10),
            STATUS_BLOCK + 6: ("total_current", round(total / 10) / 100),
            ALARM_BLOCK: ("bus_arc", model.bus_alarm),
            ARC_BITMAP: ("arc_alarm_bitmap", low | high << 16),
            ARC_BITMAP + 2: ("bus_arc_count", model.bus_count),
        }
        for i in range(model.channels):  # the strings wired; the rest of the map reads 0
            channel = i + 1
            named[STATUS_BLOCK + 8 + i] = (f"channel_current_{channel}", currents[i] / 1000)
            named[ARC_BITMAP + 3 + i] = (f"arc_count_{channel}", model.counts[i])
            named[INTENSITY_REALTIME + i] = (f"arc_intensity_{channel}", model.intensity[i])
            named[INTENSITY_10MIN + i] = (f"arc_peak_intensity_{channel}",
                                          model.intensity_10min[i])
        return words, named

    async def _monitor_action(self, function: int, start: int, address: int, count: int,
                              registers: list[int], values: Sequence[int] | Sequence[bool] | None,
                              ) -> ExcCodes | None:
        if values is not None:
            return None if address >= _THRESHOLDS else ExcCodes.ILLEGAL_ADDRESS
        self.model.advance_to(self.clock.tick())
        words, named = self._registers()
        for register, word in words.items():
            registers[register - start] = word
        self.host.stage(f"read 0x{address:04X}", {
            name: value for register, (name, value) in named.items()
            if address <= register < address + count
        })
        return None

    async def _relay_action(self, function: int, start: int, address: int, count: int,
                            registers: list[int], values: Sequence[int] | Sequence[bool] | None,
                            ) -> ExcCodes | None:
        if values is not None:
            return None
        model = self.model
        model.advance_to(self.clock.tick())
        leak = round(model.leak_ma)
        registers[RESIDUAL_CURRENT - start] = leak
        registers[0x0008 - start] = RESIDUAL_ALARM_MA  # rated operating current
        registers[0x0009 - start] = RESIDUAL_WARNING_MA  # pre-warning current
        status = model.residual_status_bits()
        registers[RESIDUAL_ALARM_STATUS - start] = status
        report: dict[str, object] = {}
        if address <= RESIDUAL_CURRENT < address + count:
            report["residual_current"] = leak
        if address <= RESIDUAL_ALARM_STATUS < address + count:
            report.update(residual_warning=bool(status & 1), residual_alarm=bool(status & 2))
        self.host.stage(f"relay 0x{address:04X}", report)
        return None


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channels", type=int, default=8, help="strings wired, 1-24")
    parser.add_argument("--unit", type=int, default=1, help="the arc monitor's slave id")
    parser.add_argument("--residual-unit", type=int, default=2,
                        help="slave id of the residual-current relay (0 = none)")
    parser.add_argument("--arc-every", type=float, default=1800.0,
                        help="mean simulated seconds between arcs")


def _build(args: argparse.Namespace, clock: SimClock,
           transcript: Transcript) -> tuple[ArcMonitorEmulator, str]:
    emulator = ArcMonitorEmulator(
        seed=args.seed, channels=args.channels, unit=args.unit,
        residual_unit=args.residual_unit or None, arc_every_s=args.arc_every,
        clock=clock, port=args.port, transcript=transcript,
    )
    return emulator, f"arc monitor ({args.channels} channels)"


COMMAND = EmulatorCommand("arc_monitor",
                          "Emulate a PV arc-fault monitor and a residual-current relay.",
                          _options, _build)


if __name__ == "__main__":
    main(command=COMMAND)
