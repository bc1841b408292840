"""What a verifier needs of a signed payload, checked against every rule of wire format v1.

``read_head(payload)`` returns the fields a verifier binds and chains by (device, seq, boot,
time, prev, kind, gap), or raises the MalformedError that ``Reading.from_payload`` raises: the
payload is held to exactly the same rules, field checks and deterministic encoding included.

It exists for speed. Ingest and audit read one payload per reading, and building a ``Reading``
(CBOR decode, one object per measurement, a deterministic re-encode to compare) costs about
half as much as the ES256 verification itself. Nearly every payload has the shape agents
write: nine keys, measurements with a name, an optional unit and a number or boolean, all
text printable ASCII. Such a payload is recognised here from its bytes by compiled patterns
(one C call for the fixed part, one per measurement) that admit only the deterministic
encoding: sorted keys, shortest integer heads, and each float in the form the deterministic
encoder writes for its value (asked once per distinct float). Anything else, and every error
message, comes from ``Reading.from_payload``. The tests hold the two paths equal.
"""

from __future__ import annotations

import math
import re
import struct
from typing import NamedTuple

from . import cbor
from .reading import MAX_BOOT, MAX_MEASUREMENTS, MAX_SEQ, MAX_TIME_MS, Gap, Reading
from .wire import FORMAT_VERSION
from .wire import PayloadLabel as L

__all__ = ["ReadingHead", "read_head"]


class ReadingHead(NamedTuple):
    """The fields of a valid reading that a verifier needs (measurements and event left out)."""

    device_id: str
    seq: int
    boot: int
    time_ms: int
    prev: bytes
    kind: str
    gap: Gap | None
    commitment: bytes | None = None  # set for a private reading


def read_head(payload: bytes) -> ReadingHead:
    """The head of a payload that passes every rule of ``Reading.from_payload``; else its error."""
    head = _common_shape(payload)
    if head is not None:
        return head
    r = Reading.from_payload(payload)
    return ReadingHead(r.device_id, r.seq, r.boot, r.time_ms, r.prev, r.kind, r.gap,
                       r.commitment)


# --- the patterns -------------------------------------------------------------------------
#
# A text string is matched as its head (length 1-23 in the head byte, or 0x78 and one byte)
# and then a run of characters from a class that the next byte (a map label, a record's map
# head) is never in, so the run ends exactly where the string ends; its length is compared
# with the head's in Python. Every class is ASCII: one byte, one character.


def _int(major: int) -> bytes:
    """An integer of CBOR major type 0 or 1 in its shortest head: a value that fits a
    smaller head never takes a larger one."""
    base = major << 5
    a, b, c, d, e, f = (re.escape(bytes((base + k,))) for k in (0, 23, 24, 25, 26, 27))
    return (b"(?:[" + a + b"-" + b + b"]|" + c + rb"[\x18-\xff]|" + d + rb"[\x01-\xff].|"
            + e + rb"(?:[\x01-\xff].|\x00[\x01-\xff]).."
            + b"|" + f + rb"(?:[\x01-\xff]...|\x00[\x01-\xff]..|\x00\x00[\x01-\xff].|"
            rb"\x00\x00\x00[\x01-\xff])....)")


_UINT = _int(0)
# A number: an integer, or a float (finite and in its shortest form: checked in Python).
_NUMBER = rb"(?:" + _UINT + rb"|" + _int(1) + rb"|\xf9..|\xfa....|\xfb........)"
_TEXT_HEAD = rb"([\x61-\x77]|\x78[\x18-\x40])"  # 1-64 bytes
_PRINTABLE = rb"([\x20-\x7e]*)"

_HEAD = re.compile(
    b"\xa9"  # a map of exactly the nine required keys
    + bytes((L.VERSION, FORMAT_VERSION))
    + bytes((L.DEVICE,)) + _TEXT_HEAD + rb"([A-Za-z0-9][A-Za-z0-9._-]*)"
    + bytes((L.SEQ,)) + b"(" + _UINT + b")"
    + bytes((L.BOOT,)) + b"(" + _UINT + b")"
    + bytes((L.TIME,)) + b"(" + _UINT + b")"
    + bytes((L.SYNC,)) + rb"[\xf4\xf5]"
    + bytes((L.PREV,)) + rb"\x58\x20(.{32})"
    + bytes((L.KIND,)) + rb"([\x61-\x77]|\x78[\x18-\x20])([a-z0-9][a-z0-9-]*)"
    + bytes((L.MEASUREMENTS,)) + rb"([\x80-\x97]|\x98[\x18-\xff]|\x99\x01\x00)",
    re.DOTALL)

# One SenML record: {0: name, ?1: unit, 2: number / 4: bool, ?6: number}.
_RECORD = re.compile(
    rb"([\xa2-\xa4])\x00" + _TEXT_HEAD + _PRINTABLE
    + rb"(?:\x01" + _TEXT_HEAD + _PRINTABLE + rb")?"
    + rb"(?:\x02(" + _NUMBER + rb")|\x04[\xf4\xf5])"
    + rb"(?:\x06(" + _NUMBER + rb"))?",
    re.DOTALL)

_FLOAT_FORMS = {0xF9: ">e", 0xFA: ">f", 0xFB: ">d"}
# Verdicts on float encodings seen (sensor values repeat), bounded.
_float_ok: dict[bytes, bool] = {}


def _length(head: bytes) -> int:
    """The length a text string's head declares (the pattern has checked the head)."""
    return head[0] - 0x60 if head[0] != 0x78 else head[1]


def _uint(data: bytes) -> int:
    """The value of a CBOR unsigned integer (the pattern has checked its head)."""
    if len(data) == 1:
        return data[0]
    return int.from_bytes(data[1:], "big")


def _number_ok(number: bytes | None) -> bool:
    """False for a float that is not finite or is not in the form the deterministic encoder
    writes for its value (which the general path compares with); integers and absent values
    pass (the pattern has checked their heads)."""
    if number is None or number[0] < 0xF9:
        return True
    ok = _float_ok.get(number)
    if ok is None:
        value: float = struct.unpack(_FLOAT_FORMS[number[0]], number[1:])[0]
        ok = math.isfinite(value) and cbor.encode(value) == number
        if len(_float_ok) >= 65_536:
            _float_ok.clear()
        _float_ok[number] = ok
    return ok


def _common_shape(payload: bytes) -> ReadingHead | None:
    """The head of ``payload`` when its bytes are, in full, a valid deterministic reading of
    the common shape; None sends it the general way (which may still accept it)."""
    m = _HEAD.match(payload)
    if m is None:
        return None
    dev_head, dev, seq_raw, boot_raw, time_raw, prev, kind_head, kind, n = m.groups()
    if _length(dev_head) != len(dev) or _length(kind_head) != len(kind) or kind == b"gap":
        return None  # (a gap record carries its range: not this shape)
    count = n[0] - 0x80 if n[0] < 0x98 else n[1] if n[0] == 0x98 else 256
    if count > MAX_MEASUREMENTS:
        return None
    pos = m.end()
    match_record = _RECORD.match
    float_ok = _float_ok.get
    for _ in range(count):  # (inlined: this loop is most of the time a payload takes)
        r = match_record(payload, pos)
        if r is None:
            return None
        size, name_head, name, unit_head, unit, v, t = r.groups()
        if (name_head[0] - 0x60 if name_head[0] != 0x78 else name_head[1]) != len(name):
            return None
        if unit is None:
            if size[0] - 0xA0 != 2 + (t is not None):
                return None
        elif (size[0] - 0xA0 != 3 + (t is not None)
              or (unit_head[0] - 0x60 if unit_head[0] != 0x78 else unit_head[1]) != len(unit)):
            return None
        if v is not None and v[0] >= 0xF9 and not (float_ok(v) or _number_ok(v)):
            return None
        if t is not None and not _number_ok(t):
            return None
        pos = r.end()
    if pos != len(payload):
        return None
    seq, boot, time_ms = _uint(seq_raw), _uint(boot_raw), _uint(time_raw)
    if seq > MAX_SEQ or boot > MAX_BOOT or time_ms > MAX_TIME_MS:
        return None
    return ReadingHead(dev.decode("ascii"), seq, boot, time_ms, prev, kind.decode("ascii"), None)
