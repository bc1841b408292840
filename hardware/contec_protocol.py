"""Contec pulse-oximeter serial protocols, as pure functions (research §3.1 and §3.2).

**V7.0** (CMS50D+ newer firmware, CMS50E, …; 115200 8N1): a packet is a type byte with bit 7
clear, a "high-bit byte" with bit 7 set whose bits 0..6 carry bit 7 of data bytes 2..8, then
the data bytes with bit 7 forced to 1. A byte with bit 7 clear therefore always starts a
packet; there is no checksum. Real-time data (type 0x01) streams at 60 packets/s after the
host sends command 0xA1.

**Legacy 5-byte stream** (CMS50D+ fw 4.5 / "BCI"): the opposite sync rule; only the first
byte of a packet has bit 7 set. The device streams at about 60 Hz with no command.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import FrameError
from .frame_hunt import INCOMPLETE, Damaged, Found, FrameHunter, Verdict

__all__ = [
    "CMD_DEVICE_ID",
    "CMD_KEEP_ALIVE",
    "CMD_START_REALTIME",
    "CMD_STOP_REALTIME",
    "PACKET_LENGTHS",
    "TYPE_COMMAND",
    "TYPE_REALTIME",
    "LegacyAssembler",
    "Packet",
    "PacketAssembler",
    "RealTime",
    "decode_legacy",
    "decode_realtime",
    "encode_command",
    "encode_legacy",
    "encode_packet",
    "encode_realtime",
]

TYPE_REALTIME = 0x01
TYPE_COMMAND = 0x7D
CMD_START_REALTIME = 0xA1
CMD_STOP_REALTIME = 0xA2
CMD_DEVICE_ID = 0xAA
CMD_PI_SUPPORT = 0xAC
CMD_KEEP_ALIVE = 0xAF

#: Total packet length (type and high-bit byte included) per packet type, V7.0 table.
PACKET_LENGTHS = {
    0x01: 9, 0x04: 9, 0x05: 9, 0x07: 8, 0x08: 8, 0x09: 6, 0x0A: 4, 0x0B: 4, 0x0C: 2,
    0x0D: 3, 0x0E: 3, 0x0F: 8, 0x10: 3, 0x11: 9, 0x12: 8, 0x15: 9, TYPE_COMMAND: 9,
}  # fmt: skip

PULSE_INVALID = 0xFF
SPO2_INVALID = 0x7F
PI_INVALID = 0xFFFF
PI_MAX = 2200  # PI % = value / 100, valid in (0, 22.00]


def encode_packet(packet_type: int, data: bytes) -> bytes:
    """Restore-able packet: type, high-bit byte, data with bit 7 forced on (§3.1)."""
    if packet_type & 0x80 or len(data) > 7:
        raise ValueError("packet type must have bit 7 clear and carry at most 7 data bytes")
    high = 0x80
    for index, byte in enumerate(data):
        high |= (byte >> 7) << index
    return bytes((packet_type, high)) + bytes(b | 0x80 for b in data)


def encode_command(command: int, extra: bytes = b"") -> bytes:
    """A host command (type 0x7D, 9 bytes, unused bytes 0x00), e.g. 0xA1 start real-time."""
    data = bytes((command,)) + extra
    return encode_packet(TYPE_COMMAND, data + bytes(7 - len(data)))


@dataclass(frozen=True, slots=True)
class Packet:
    """One V7.0 packet with the bit 7 of every data byte restored."""

    type: int
    data: bytes


class _V7Format:
    """A byte with bit 7 clear starts a packet; one inside a packet means it was cut short."""

    name = "V7.0"
    max_frame = max(PACKET_LENGTHS.values())

    def next_start(self, buf: bytearray, at: int) -> int:
        # Data bytes (bit 7 set) with no packet start are line noise; undocumented types
        # (0x02, 0x03, 0x06, …; §3.1) have unknown lengths: hunt on to the next sync byte.
        for index in range(at, len(buf)):
            if not buf[index] & 0x80 and buf[index] in PACKET_LENGTHS:
                return index
        return len(buf)

    def judge(self, buf: bytearray, at: int) -> Verdict[Packet]:
        length = PACKET_LENGTHS[buf[at]]
        end = min(at + length, len(buf))
        cut = next((i for i in range(at + 1, end) if not buf[i] & 0x80), None)
        if cut is not None:
            return Damaged(cut - at, FrameError(
                f"packet 0x{buf[at]:02X} cut short after {cut - at} bytes"))
        if len(buf) < at + length:
            return INCOMPLETE
        high = buf[at + 1]
        restored = bytes(
            (byte & 0x7F) | ((high >> index) & 1) << 7
            for index, byte in enumerate(buf[at + 2 : at + length])
        )
        return Found(length, Packet(buf[at], restored))


class PacketAssembler(FrameHunter[Packet]):
    """Cuts V7.0 packets out of the stream. A bit-7-clear byte inside a packet means the
    packet was cut short: it is reported and the byte starts the next packet."""

    def __init__(self) -> None:
        super().__init__(_V7Format())


@dataclass(frozen=True, slots=True)
class RealTime:
    """One real-time sample. ``spo2`` / ``pulse_rate`` / ``pi_percent`` are ``None`` when
    the device marks them invalid; flags are as the device sets them."""

    signal: int
    pleth: int
    bar: int
    spo2: int | None
    pulse_rate: int | None
    pi_percent: float | None
    finger_out: bool
    searching: bool
    beep: bool = False
    searching_too_long: bool = False

    @property
    def valid(self) -> bool:
        """Whether SpO2 and pulse may be used: finger in, pulse found, both values present
        (0 is what devices send while they start up)."""
        return (not self.finger_out and not self.searching and bool(self.spo2)
                and bool(self.pulse_rate))


def decode_realtime(data: bytes) -> RealTime:
    """Type 0x01 data bytes 2..8 (already restored), field table in research §3.1."""
    if len(data) != 7:
        raise FrameError(f"real-time data must be 7 bytes, got {len(data)}")
    status, pleth, bar, pulse, spo2, pi_lo, pi_hi = data
    pi_raw = pi_lo | pi_hi << 8
    pi_flag_invalid = bool(bar & 0x10)
    pi = None if pi_flag_invalid or pi_raw == PI_INVALID or not 0 < pi_raw <= PI_MAX else (
        pi_raw / 100)
    return RealTime(
        signal=status & 0x0F,
        searching_too_long=bool(status & 0x10),
        beep=bool(status & 0x40),
        finger_out=bool(status & 0x80),
        pleth=pleth & 0x7F,
        searching=bool(pleth & 0x80),
        bar=bar & 0x0F,
        pulse_rate=None if pulse == PULSE_INVALID else pulse,
        spo2=None if spo2 == SPO2_INVALID or spo2 > 100 else spo2,
        pi_percent=pi,
    )


def encode_realtime(sample: RealTime) -> bytes:
    """The 9-byte type 0x01 packet for ``sample`` (the emulator's side of the wire)."""
    status = (sample.signal & 0x0F) | sample.searching_too_long << 4 | sample.beep << 6 | (
        sample.finger_out << 7)
    pleth = (sample.pleth & 0x7F) | sample.searching << 7
    pi_raw = PI_INVALID if sample.pi_percent is None else round(sample.pi_percent * 100)
    bar = (sample.bar & 0x0F) | (sample.pi_percent is None) << 4
    data = bytes((
        status, pleth, bar,
        PULSE_INVALID if sample.pulse_rate is None else sample.pulse_rate,
        SPO2_INVALID if sample.spo2 is None else sample.spo2,
        pi_raw & 0xFF, pi_raw >> 8,
    ))  # fmt: skip
    return encode_packet(TYPE_REALTIME, data)


# --- legacy 5-byte stream (§3.2) -------------------------------------------------------


LEGACY_LENGTH = 5


class _LegacyFormat:
    """The sync byte is the one with bit 7 set; a second one inside a packet cuts it short."""

    name = "legacy"
    max_frame = LEGACY_LENGTH

    def next_start(self, buf: bytearray, at: int) -> int:
        return next((i for i in range(at, len(buf)) if buf[i] & 0x80), len(buf))

    def judge(self, buf: bytearray, at: int) -> Verdict[bytes]:
        end = min(at + LEGACY_LENGTH, len(buf))
        cut = next((i for i in range(at + 1, end) if buf[i] & 0x80), None)
        if cut is not None:
            return Damaged(cut - at, FrameError(f"legacy packet cut short after {cut - at} bytes"))
        if len(buf) < at + LEGACY_LENGTH:
            return INCOMPLETE
        return Found(LEGACY_LENGTH, bytes(buf[at : at + LEGACY_LENGTH]))


class LegacyAssembler(FrameHunter[bytes]):
    """Cuts 5-byte packets out of the legacy stream (sync byte = the one with bit 7 set)."""

    def __init__(self) -> None:
        super().__init__(_LegacyFormat())


def decode_legacy(packet: bytes) -> RealTime:
    """A 5-byte packet: flags/signal, pleth, bar/flags/PR bit 7, PR bits 0-6, SpO2."""
    if len(packet) != 5 or not packet[0] & 0x80:
        raise FrameError("legacy packet must be 5 bytes starting with a sync byte")
    b1, pleth, b3, pulse_low, spo2 = packet
    pulse = pulse_low | (b3 & 0x40) << 1
    # Byte 1 bit 5 means "SpO2 dropping" on a CMS50D+ but "probe unplugged" on BCI devices;
    # only the two bits both sources call finger-out / no-finger are trusted here.
    finger_out = bool(b1 & 0x10) or bool(b3 & 0x10)
    return RealTime(
        signal=b1 & 0x0F,
        beep=bool(b1 & 0x40),
        finger_out=finger_out,
        pleth=pleth,
        bar=b3 & 0x0F,
        searching=bool(b3 & 0x20),
        pulse_rate=None if pulse == PULSE_INVALID else pulse,
        spo2=None if spo2 == SPO2_INVALID or spo2 > 100 else spo2,
        pi_percent=None,
    )


def encode_legacy(sample: RealTime) -> bytes:
    pulse = PULSE_INVALID if sample.pulse_rate is None else sample.pulse_rate
    b1 = 0x80 | (sample.signal & 0x0F) | sample.finger_out << 4 | sample.beep << 6
    b3 = (sample.bar & 0x0F) | sample.finger_out << 4 | sample.searching << 5 | (
        (pulse >> 7) & 1) << 6
    spo2 = SPO2_INVALID if sample.spo2 is None else sample.spo2
    return bytes((b1, sample.pleth & 0x7F, b3, pulse & 0x7F, spo2 & 0x7F))
