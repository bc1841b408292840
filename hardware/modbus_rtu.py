"""Modbus RTU framing as pure functions (research §0: the Modbus serial line specification).

A frame is ``unit | function | PDU | CRC-16/MODBUS`` with the CRC sent low byte first
(reflected polynomial 0xA001, initial value 0xFFFF, no final XOR). The Modbus drivers talk
through pymodbus; this module builds and checks the same frames byte for byte so that the
research file's example frames can be tested, failed transactions can be diagnosed from the
raw bytes, and emulators can corrupt a frame on purpose.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import ChecksumError, FrameError

__all__ = [
    "READ_HOLDING",
    "READ_INPUT",
    "WRITE_MULTIPLE",
    "WRITE_SINGLE",
    "ExceptionReply",
    "ReadReply",
    "crc16",
    "decode_read_reply",
    "diagnose",
    "encode_read_reply",
    "encode_read_request",
    "encode_write_multiple",
    "encode_write_single",
    "find_read_reply",
    "with_crc",
]

READ_HOLDING = 0x03
READ_INPUT = 0x04
WRITE_SINGLE = 0x06
WRITE_MULTIPLE = 0x10
MAX_READ_REGISTERS = 125  # the spec's limit: 250 data bytes in one reply


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` as an integer (transmit it little-endian)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    """``body`` followed by its CRC, low byte first."""
    return body + crc16(body).to_bytes(2, "little")


def _check_unit(unit: int) -> None:
    if not 0 <= unit <= 247:
        raise ValueError(f"Modbus unit id must be 0..247, got {unit}")


def encode_read_request(unit: int, function: int, address: int, count: int) -> bytes:
    """FC03 / FC04 request: ``unit fc addrHi addrLo qtyHi qtyLo CRC``."""
    _check_unit(unit)
    if function not in (READ_HOLDING, READ_INPUT):
        raise ValueError(f"not a register read function: 0x{function:02X}")
    if not 1 <= count <= MAX_READ_REGISTERS or not 0 <= address + count - 1 <= 0xFFFF:
        raise ValueError(f"cannot read {count} registers from 0x{address:04X}")
    return with_crc(struct.pack(">BBHH", unit, function, address, count))


def encode_write_single(unit: int, address: int, value: int) -> bytes:
    """FC06 request; a device acknowledges it by echoing the same bytes."""
    _check_unit(unit)
    return with_crc(struct.pack(">BBHH", unit, WRITE_SINGLE, address, value & 0xFFFF))


def encode_write_multiple(unit: int, address: int, values: list[int]) -> bytes:
    """FC16 request: ``unit 10 addr qty byteCount data… CRC``."""
    _check_unit(unit)
    data = b"".join(struct.pack(">H", v & 0xFFFF) for v in values)
    return with_crc(struct.pack(">BBHHB", unit, WRITE_MULTIPLE, address, len(values), len(data))
                    + data)


def encode_read_reply(unit: int, function: int, registers: list[int]) -> bytes:
    """The reply a device sends to a FC03 / FC04 read."""
    data = b"".join(struct.pack(">H", r & 0xFFFF) for r in registers)
    return with_crc(bytes((unit, function, len(data))) + data)


@dataclass(frozen=True, slots=True)
class ReadReply:
    unit: int
    function: int
    registers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ExceptionReply:
    """A device refused the request: ``unit (fc|0x80) code CRC`` (§0)."""

    unit: int
    function: int
    code: int


def _check_crc(frame: bytes) -> None:
    expected = crc16(frame[:-2])
    received = int.from_bytes(frame[-2:], "little")
    if expected != received:
        raise ChecksumError("Modbus CRC mismatch", expected=expected, received=received)


def decode_read_reply(frame: bytes) -> ReadReply | ExceptionReply:
    """Decode one complete FC03 / FC04 reply (or exception reply); check its CRC."""
    if len(frame) < 5:
        raise FrameError(f"Modbus reply of {len(frame)} bytes is too short")
    unit, function = frame[0], frame[1]
    if function & 0x80:
        if len(frame) != 5:
            raise FrameError(f"exception reply must be 5 bytes, got {len(frame)}")
        _check_crc(frame)
        return ExceptionReply(unit, function & 0x7F, frame[2])
    if function not in (READ_HOLDING, READ_INPUT):
        raise FrameError(f"not a register read reply: function 0x{function:02X}")
    byte_count = frame[2]
    if byte_count % 2 or len(frame) != 5 + byte_count:
        raise FrameError(
            f"byte count {byte_count} does not fit a {len(frame)}-byte read reply"
        )
    _check_crc(frame)
    data = frame[3:-2]
    return ReadReply(unit, function, struct.unpack(f">{byte_count // 2}H", data))


def find_read_reply(received: bytes, unit: int, function: int, count: int,
                    ) -> tuple[int, ReadReply | ExceptionReply] | None:
    """The first valid reply to a read of ``count`` registers anywhere in ``received``, with
    its offset.

    Junk before a reply (line noise, a late echo) is skipped: this is how a failed
    transaction is resynchronised from its raw bytes.
    """
    head = bytes((unit, function, 2 * count))
    size = len(head) + 2 * count + 2
    exception_head = bytes((unit, function | 0x80))
    for start in range(len(received)):
        window = received[start:]
        if window.startswith(head) and len(window) >= size and _crc_ok(window[:size]):
            return start, decode_read_reply(window[:size])
        if window.startswith(exception_head) and len(window) >= 5 and _crc_ok(window[:5]):
            return start, decode_read_reply(window[:5])
    return None


def diagnose(received: bytes, unit: int, function: int, count: int) -> str:
    """Say why ``received`` is not the reply to a read of ``count`` registers.

    Returns ``"silent"`` (nothing came back), ``"checksum"`` (a reply-shaped frame with a
    bad CRC), ``"truncated"`` (the start of a reply, cut short), ``"garbage"`` (bytes that
    hold no reply at all) or ``"ok"`` when a valid reply is in there after all (see
    :func:`find_read_reply`). Used to sort a failed transaction into error counters.
    """
    if not received:
        return "silent"
    if find_read_reply(received, unit, function, count) is not None:
        return "ok"
    head = bytes((unit, function, 2 * count))
    size = len(head) + 2 * count + 2
    exception_head = bytes((unit, function | 0x80))
    found = set()
    for start in range(len(received)):
        window = received[start:]
        if window.startswith(exception_head) and len(window) >= 5:
            found.add("checksum")
        elif window.startswith(head):
            found.add("truncated" if len(window) < size else "checksum")
        elif head.startswith(window):
            found.add("truncated")
    for verdict in ("checksum", "truncated"):
        if verdict in found:
            return verdict
    return "garbage"


def _crc_ok(frame: bytes) -> bool:
    return crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")
