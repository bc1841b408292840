"""Register words to values and back, for every data type and byte order the probes use.

Modbus moves 16-bit registers, each big-endian on the wire. Wider values span consecutive
registers, and devices disagree on the order of their bytes (research §0): Aqualabo and Evoqua
send float32 big-endian (``ABCD``), Yosemitech sends it fully reversed (``DCBA``). The order is
written as the value's big-endian bytes A B C D in the order they appear on the wire.
"""

from __future__ import annotations

import struct

__all__ = [
    "BYTE_ORDERS",
    "DATA_TYPES",
    "decode_value",
    "encode_value",
    "register_count",
    "shortest_float32",
]

DATA_TYPES = ("int16", "uint16", "int32", "uint32", "float32")
BYTE_ORDERS = ("ABCD", "DCBA", "BADC", "CDAB")

_STRUCT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}


def register_count(data_type: str) -> int:
    """How many 16-bit registers one value of ``data_type`` occupies."""
    return 1 if data_type in ("int16", "uint16") else 2


def _wire_to_value_bytes(wire: bytes, order: str) -> bytes:
    if len(wire) == 2:
        return wire  # a single register is always big-endian
    value = bytearray(4)
    for position, letter in enumerate(order):
        value[ord(letter) - ord("A")] = wire[position]
    return bytes(value)


def _value_to_wire_bytes(value: bytes, order: str) -> bytes:
    if len(value) == 2:
        return value
    return bytes(value[ord(letter) - ord("A")] for letter in order)


def decode_value(registers: tuple[int, ...] | list[int], data_type: str,
                 order: str = "ABCD") -> int | float:
    """Decode one value from its registers (exactly :func:`register_count` of them)."""
    wire = struct.pack(f">{len(registers)}H", *registers)
    (value,) = struct.unpack(_STRUCT[data_type], _wire_to_value_bytes(wire, order))
    if data_type == "float32":
        return shortest_float32(value)
    return int(value)


def encode_value(value: int | float, data_type: str, order: str = "ABCD") -> list[int]:
    """The registers a device puts on the wire for ``value``."""
    raw = struct.pack(_STRUCT[data_type], value)
    wire = _value_to_wire_bytes(raw, order)
    return list(struct.unpack(f">{len(wire) // 2}H", wire))


def shortest_float32(value: float) -> float:
    """The shortest decimal that reads back as the same float32.

    A probe that means 7.4 sends the float32 nearest 7.4, which widens to
    7.400000095367432; publishing that would suggest precision nobody measured.
    """
    target = struct.pack(">f", value)
    if value != value or value in (float("inf"), float("-inf")):
        return value
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        try:
            if struct.pack(">f", candidate) == target:
                return candidate
        except OverflowError:  # rounding up near the float32 maximum
            continue
    return value
