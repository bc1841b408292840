"""JBD / Jiabaida / Xiaoxiang smart-BMS UART protocol, as pure functions (research §2.1).

Frames, both directions::

    to the BMS:   DD | A5 read / 5A write | register | length | data | checksum(2) | 77
    from the BMS: DD | register | status (00 ok, 80 error) | length | data | checksum(2) | 77

The checksum is 0x10000 minus the sum of the bytes from offset 2 to the end of the data
(register + length + data in a request; status + length + data in a reply), low 16 bits,
sent high byte first. All 16-bit values are big-endian.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass

from .errors import ChecksumError, FrameError
from .frame_hunt import INCOMPLETE, Damaged, FalseStart, Found, FrameHunter, Verdict

__all__ = [
    "COUNTER_NAMES",
    "PROTECTION_BITS",
    "REG_BASIC_INFO",
    "REG_CELL_VOLTAGES",
    "REG_DEVICE_NAME",
    "REG_PROTECTION_COUNTERS",
    "BasicInfo",
    "Frame",
    "FrameAssembler",
    "checksum",
    "decode_basic_info",
    "decode_cell_voltages",
    "decode_protection_counters",
    "encode_basic_info",
    "encode_cell_voltages",
    "encode_protection_counters",
    "encode_read",
    "encode_reply",
    "encode_write",
]

START, END = 0xDD, 0x77
READ, WRITE = 0xA5, 0x5A
STATUS_OK, STATUS_ERROR = 0x00, 0x80
REG_BASIC_INFO = 0x03
REG_CELL_VOLTAGES = 0x04
REG_DEVICE_NAME = 0x05
REG_PROTECTION_COUNTERS = 0xAA
REG_MOSFET_CONTROL = 0xE1

#: Protection status word (basic info offset 16), bit n -> name.
PROTECTION_BITS = (
    "cell_overvoltage", "cell_undervoltage", "pack_overvoltage", "pack_undervoltage",
    "charge_overtemperature", "charge_undertemperature", "discharge_overtemperature",
    "discharge_undertemperature", "charge_overcurrent", "discharge_overcurrent",
    "short_circuit", "afe_error", "fet_software_lock", "charge_timeout",
)  # fmt: skip

#: The 11 counters of register 0xAA, in wire order.
COUNTER_NAMES = (
    "short_circuit", "charge_overcurrent", "discharge_overcurrent", "cell_overvoltage",
    "cell_undervoltage", "charge_overtemperature", "charge_undertemperature",
    "discharge_overtemperature", "discharge_undertemperature", "pack_overvoltage",
    "pack_undervoltage",
)  # fmt: skip

_KELVIN_OFFSET_DK = 2731  # NTC temperatures travel in 0.1 K


def checksum(body: bytes) -> int:
    """The JBD checksum over ``body`` (the bytes from frame offset 2 to the end of data)."""
    return (0x10000 - sum(body)) & 0xFFFF


def _frame(second: int, third: int, data: bytes) -> bytes:
    if len(data) > 255:
        raise ValueError("a JBD frame carries at most 255 data bytes")
    body = bytes((third, len(data))) + data
    return bytes((START, second)) + body + checksum(body).to_bytes(2, "big") + bytes((END,))


def encode_read(register: int) -> bytes:
    """Request to read a register, e.g. ``DD A5 03 00 FF FD 77`` for basic info."""
    return _frame(READ, register, b"")


def encode_write(register: int, data: bytes) -> bytes:
    """Request to write a register, e.g. ``DD 5A E1 02 00 01 FF 1C 77`` (charge FET off)."""
    return _frame(WRITE, register, data)


def encode_reply(register: int, data: bytes, status: int = STATUS_OK) -> bytes:
    """A reply as the BMS sends it."""
    return _frame(register, status, data)


@dataclass(frozen=True, slots=True)
class Frame:
    """One checked frame. In a reply ``first`` is the register and ``second`` the status;
    in a request ``first`` is A5 / 5A and ``second`` the register."""

    first: int
    second: int
    data: bytes

    @property
    def is_request(self) -> bool:
        return self.first in (READ, WRITE)


class _JbdFormat:
    name = "JBD"
    max_frame = 7 + 255

    def next_start(self, buf: bytearray, at: int) -> int:
        start = buf.find(START, at)
        return len(buf) if start < 0 else start

    def judge(self, buf: bytearray, at: int) -> Verdict[Frame]:
        if len(buf) < at + 4 or len(buf) < at + 7 + buf[at + 3]:
            return INCOMPLETE
        total = 7 + buf[at + 3]
        frame = bytes(buf[at : at + total])
        if frame[-1] != END:
            # Not a frame after all (or a truncated one): hunt from the next byte.
            return FalseStart(FrameError(f"JBD frame without end marker: {frame[:8].hex(' ')}…"))
        expected, received = checksum(frame[2:-3]), int.from_bytes(frame[-3:-1], "big")
        if expected != received:
            return Damaged(total, ChecksumError("JBD checksum mismatch", expected=expected,
                                                received=received))
        return Found(total, Frame(frame[1], frame[2], frame[4:-3]))


class FrameAssembler(FrameHunter[Frame]):
    """Cuts frames out of a byte stream, skipping junk and resynchronising on ``DD``.

    :meth:`feed` returns checked frames and the protocol errors met, in stream order.
    ``skipped`` counts bytes dropped while hunting for a frame start.
    """

    def __init__(self) -> None:
        super().__init__(_JbdFormat())


@dataclass(frozen=True, slots=True)
class BasicInfo:
    """Register 0x03, as raw wire integers (scaling is in the properties)."""

    voltage_10mv: int
    current_10ma: int  # signed; negative = discharge
    remaining_10mah: int
    nominal_10mah: int
    cycles: int
    manufacture_date: int  # bits 15-9 year-2000, 8-5 month, 4-0 day
    balance_bits: int  # cells 1-32
    protection_bits: int
    software_version: int
    soc_percent: int
    fet_bits: int  # bit0 charge FET on, bit1 discharge FET on
    cell_count: int
    ntc_dk: tuple[int, ...]  # 0.1 K
    extra: bytes = b""  # newer firmware appends bytes of uncertain layout (§2.1)

    @property
    def pack_voltage_v(self) -> float:
        return self.voltage_10mv / 100

    @property
    def pack_current_a(self) -> float:
        return self.current_10ma / 100

    @property
    def remaining_capacity_ah(self) -> float:
        return self.remaining_10mah / 100

    @property
    def nominal_capacity_ah(self) -> float:
        return self.nominal_10mah / 100

    @property
    def temperatures_c(self) -> tuple[float, ...]:
        return tuple((raw - _KELVIN_OFFSET_DK) / 10 for raw in self.ntc_dk)

    @property
    def charge_fet_on(self) -> bool:
        return bool(self.fet_bits & 1)

    @property
    def discharge_fet_on(self) -> bool:
        return bool(self.fet_bits & 2)

    @property
    def manufactured(self) -> dt.date | None:
        word = self.manufacture_date
        try:
            return dt.date(2000 + (word >> 9), (word >> 5) & 0x0F, word & 0x1F)
        except ValueError:
            return None  # unprogrammed EEPROM; not a reason to drop the reading

    @property
    def software_version_text(self) -> str:
        return f"{self.software_version >> 4}.{self.software_version & 0x0F}"

    @property
    def active_protections(self) -> tuple[str, ...]:
        return tuple(
            name for bit, name in enumerate(PROTECTION_BITS) if self.protection_bits >> bit & 1
        )


_BASIC_HEAD = struct.Struct(">HhHHHHHHHBBBBB")  # 23 bytes up to and including the NTC count


def decode_basic_info(data: bytes) -> BasicInfo:
    """Decode the 0x03 payload (table in research §2.1)."""
    if len(data) < _BASIC_HEAD.size:
        raise FrameError(f"basic info of {len(data)} bytes is shorter than 23")
    (voltage, current, remaining, nominal, cycles, date, bal_lo, bal_hi, protection,
     version, soc, fets, cells, ntcs) = _BASIC_HEAD.unpack_from(data)
    end = _BASIC_HEAD.size + 2 * ntcs
    if len(data) < end:
        raise FrameError(f"basic info announces {ntcs} NTCs but has {len(data)} bytes")
    temps = struct.unpack_from(f">{ntcs}H", data, _BASIC_HEAD.size)
    return BasicInfo(voltage, current, remaining, nominal, cycles, date,
                     bal_lo | bal_hi << 16, protection, version, soc, fets, cells, temps,
                     bytes(data[end:]))


def encode_basic_info(info: BasicInfo) -> bytes:
    head = _BASIC_HEAD.pack(
        info.voltage_10mv, info.current_10ma, info.remaining_10mah, info.nominal_10mah,
        info.cycles, info.manufacture_date, info.balance_bits & 0xFFFF, info.balance_bits >> 16,
        info.protection_bits, info.software_version, info.soc_percent, info.fet_bits,
        info.cell_count, len(info.ntc_dk),
    )
    return head + struct.pack(f">{len(info.ntc_dk)}H", *info.ntc_dk) + info.extra


def decode_cell_voltages(data: bytes) -> tuple[int, ...]:
    """Register 0x04: one uint16 per cell, millivolts."""
    if len(data) % 2:
        raise FrameError(f"cell voltage payload has an odd length {len(data)}")
    return struct.unpack(f">{len(data) // 2}H", data)


def encode_cell_voltages(millivolts: tuple[int, ...] | list[int]) -> bytes:
    return struct.pack(f">{len(millivolts)}H", *millivolts)


def decode_protection_counters(data: bytes) -> dict[str, int]:
    """Register 0xAA: 11 uint16 event counters."""
    if len(data) < 2 * len(COUNTER_NAMES):
        raise FrameError(f"protection counters need 22 bytes, got {len(data)}")
    values = struct.unpack_from(f">{len(COUNTER_NAMES)}H", data)
    return dict(zip(COUNTER_NAMES, values, strict=True))


def encode_protection_counters(counts: dict[str, int]) -> bytes:
    return struct.pack(f">{len(COUNTER_NAMES)}H", *(counts.get(n, 0) for n in COUNTER_NAMES))
