"""JBD smart-BMS emulator: the BMS end of the UART, byte for byte (research §2.1).

    python -m firmware_stubs.jbd_bms [--port P] [--seed 1] [--cells 4] [--chemistry lfp]

Answers 0x03 (basic info), 0x04 (cell voltages), 0x05 (name) and 0xAA (protection
counters); accepts the factory-mode, MOSFET-control (0xE1, applied to the pack) and balance
writes; refuses anything else with status 0x80. Like the real board it dozes off after
``--sleep-after`` seconds without traffic and ignores the first request that wakes it.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Self

from hardware.jbd_protocol import (
    REG_BASIC_INFO,
    REG_CELL_VOLTAGES,
    REG_DEVICE_NAME,
    REG_MOSFET_CONTROL,
    REG_PROTECTION_COUNTERS,
    STATUS_ERROR,
    FrameAssembler,
    encode_basic_info,
    encode_cell_voltages,
    encode_protection_counters,
    encode_reply,
)
from hardware.jbd_protocol import WRITE as JBD_WRITE
from hardware.jbd_protocol import Frame as JbdFrame

from .battery_model import CHEMISTRIES, BatteryPack
from .cli import EmulatorCommand, main
from .clock import SimClock
from .faults import LineFaults
from .serial_device import SerialDevice, SerialEmulator
from .transcript import Transcript

__all__ = ["COMMAND", "JbdBmsEmulator"]

DEVICE_NAME = b"JBD-SP04S034-L4S-100A-EMU"
_FACTORY_MODE = 0x00
_EXIT_FACTORY = 0x01
_BALANCE_CONTROL = 0xE2

_Report = tuple[str, dict[str, object]]
_Reply = tuple[bytes, _Report | None]  # the frame, and what it reports (for the transcript)


class JbdBmsEmulator(SerialEmulator):
    def __init__(self, *, seed: int = 1, cells: int = 4, chemistry: str = "lfp",
                 capacity_ah: float = 100.0, trip_every_s: float = 3 * 3600.0,
                 clock: SimClock | None = None, port: str | None = None,
                 sleep_after_s: float = 10.0, faults: LineFaults | None = None,
                 transcript: Transcript | None = None) -> None:
        self.pack = BatteryPack(seed, cells=cells, chemistry=chemistry, capacity_ah=capacity_ah,
                                surge_every_s=trip_every_s, overshoot_every_s=trip_every_s * 3)
        self.clock = clock or SimClock()
        self.sleep_after_s = sleep_after_s
        self.faults = faults or LineFaults(checksum_at=-2)
        self.transcript = transcript or Transcript()
        self.device = SerialDevice(port, self._on_bytes, name="jbd-bms")
        self._assembler = FrameAssembler()
        self._last_request = time.monotonic()
        self._lock = threading.Lock()
        self.factory_mode = False
        self.wake_ups = 0

    def _on_bytes(self, data: bytes) -> None:
        for item in self._assembler.feed(data):
            if isinstance(item, JbdFrame) and item.is_request:
                self._on_request(item)

    def _on_request(self, frame: JbdFrame) -> None:
        now = time.monotonic()
        asleep = self.sleep_after_s > 0 and now - self._last_request > self.sleep_after_s
        self._last_request = now
        if asleep:
            self.wake_ups += 1
            return  # the request only woke the BMS up
        with self._lock:
            if frame.first == JBD_WRITE:
                reply: _Reply = self._write(frame.second, frame.data)
            else:
                reply = self._read(frame.second)
        self._send(*reply)

    def _send(self, frame: bytes, report: _Report | None) -> None:
        wire, intact = self.faults.apply(frame)
        if report is not None:  # recorded first: the agent may read the reply at once
            self.transcript.record(report[0], report[1], intact=intact)
        self.device.write(wire)

    def _read(self, register: int) -> _Reply:
        pack = self.pack
        if register == REG_BASIC_INFO:
            pack.advance_to(self.clock.tick())
            info = pack.basic_info()
            values: dict[str, object] = {
                "pack_voltage": info.pack_voltage_v, "pack_current": info.pack_current_a,
                "remaining_capacity": info.remaining_capacity_ah,
                "nominal_capacity": info.nominal_capacity_ah,
                "state_of_charge": info.soc_percent, "cycle_count": info.cycles,
                "charge_fet": info.charge_fet_on, "discharge_fet": info.discharge_fet_on,
                "balance_bitmap": info.balance_bits, "protection_bitmap": info.protection_bits,
                **{f"temperature_{i}": t for i, t in enumerate(info.temperatures_c, 1)},
            }  # fmt: skip
            return encode_reply(register, encode_basic_info(info)), ("basic_info", values)
        if register == REG_CELL_VOLTAGES:
            pack.advance_to(self.clock.now())
            cells = pack.cell_millivolts()
            values = {f"cell_voltage_{i}": mv / 1000 for i, mv in enumerate(cells, 1)}
            return encode_reply(register, encode_cell_voltages(cells)), ("cells", values)
        if register == REG_PROTECTION_COUNTERS:
            pack.advance_to(self.clock.now())
            counts = dict(pack.counters)
            values = {f"protection_count_{k}": v for k, v in counts.items()}
            return encode_reply(register, encode_protection_counters(counts)), (
                "protection_counters", values)
        if register == REG_DEVICE_NAME:
            return encode_reply(register, DEVICE_NAME), None
        return encode_reply(register, b"", STATUS_ERROR), None

    def _write(self, register: int, data: bytes) -> _Reply:
        ok: _Reply = encode_reply(register, b""), None
        if register == _FACTORY_MODE and data == b"\x56\x78":
            self.factory_mode = True
            return ok
        if register == _EXIT_FACTORY:
            self.factory_mode = False
            return ok
        if register == REG_MOSFET_CONTROL and len(data) == 2:
            self.pack.host_fet_disable = int.from_bytes(data, "big") & 3
            return ok
        if register == _BALANCE_CONTROL or (self.factory_mode and 0x10 <= register <= 0xD7):
            return ok  # accepted; the model has no EEPROM to change
        return encode_reply(register, b"", STATUS_ERROR), None

    def start(self) -> Self:
        self._last_request = time.monotonic()
        return super().start()


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cells", type=int, default=4, help="cells in series")
    parser.add_argument("--chemistry", choices=sorted(CHEMISTRIES), default="lfp")
    parser.add_argument("--capacity", type=float, default=100.0, help="pack capacity, Ah")
    parser.add_argument("--trip-every", type=float, default=3 * 3600.0,
                        help="mean simulated seconds between over-current trips")
    parser.add_argument("--sleep-after", type=float, default=10.0,
                        help="seconds of silence before the BMS dozes off (0 = never)")


def _build(args: argparse.Namespace, clock: SimClock,
           transcript: Transcript) -> tuple[JbdBmsEmulator, str]:
    emulator = JbdBmsEmulator(
        seed=args.seed, cells=args.cells, chemistry=args.chemistry, capacity_ah=args.capacity,
        trip_every_s=args.trip_every, clock=clock, port=args.port,
        sleep_after_s=args.sleep_after, transcript=transcript,
    )
    return emulator, f"JBD BMS {args.cells}S {args.chemistry}"


COMMAND = EmulatorCommand("jbd_bms", "Emulate a JBD smart BMS.", _options, _build)


if __name__ == "__main__":
    main(command=COMMAND)
