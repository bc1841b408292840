"""What a verifier needs of a signed payload, checked against every rule of wire format v1.

``read_head(payload)`` returns the fields a verifier binds and chains by (device, seq, boot,
time, prev, kind, gap), or raises the MalformedError that ``Reading.from_payload`` raises: the
payload is held to exactly the same rules, field checks and deterministic encoding included.

It exists for speed. Ingest and audit read one payload per reading, and building a ``Reading``
(CBOR decode, one object per measurement, a deterministic re-encode to compare) costs about
half as much as the ES256 verification itself. Nearly every payload has the shape agents
write: nine keys, measurements with a name, an optional unit and a number or boolean, all
text printable ASCII. Such a payload is recognised here from its bytes by compiled patterns
that admit only the deterministic encoding: sorted keys, shortest integer heads, and each
float in the form the deterministic encoder writes for its value. Two C calls read nearly every
payload: one for the fixed part, one for all its measurements (a pattern per count, with every
text length, map size and float form checked in the pattern; a float passes there when its bits
alone show it is in its shortest form). A payload that pattern leaves out goes measurement by
measurement (one C call each, floats asked of the encoder once per distinct value). Anything
else, and every error message, comes from ``Reading.from_payload``. The tests hold the paths
equal.
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


def _text(length: int) -> bytes:
    """A text string of printable ASCII of exactly ``length`` bytes, head included."""
    head = bytes((0x60 + length,)) if length < 24 else bytes((0x78, length))
    return re.escape(head) + rb"[\x20-\x7e]{%d}" % length


# Any text of 1-64 printable bytes, its length checked by the pattern: one alternative per
# length (the engine rejects an alternative on its first, literal byte).
_SIZED_TEXT = (b"(?:" + b"|".join(_text(n) for n in range(1, 24)) + b"|\x78(?:"
               + b"|".join(_text(n)[1:] for n in range(24, 65)) + b"))")
# Floats whose bits alone show they are finite and in the form the deterministic encoder
# writes (the tests hold each to the encoder): a half below 2**15 (the encoder writes larger
# ones as singles); a single with one of its 13 low mantissa bits set (not a half); a double
# with one of its 29 low mantissa bits set (not a single). Other floats are asked of the
# encoder, measurement by measurement.
_LOW_5_CLEAR = rb"[\x00\x20\x40\x60\x80\xa0\xc0\xe0]"
_PLAIN_FLOAT = (rb"\xf9[\x00-\x77\x80-\xf7]."
                rb"|\xfa(?:[^\x7f\xff].|[\x7f\xff][\x00-\x7f])(?:[^" + _LOW_5_CLEAR[1:-1]
                + rb"].|.[^\x00])"
                rb"|\xfb(?:[^\x7f\xff].|[\x7f\xff][\x00-\xef])..(?:[^" + _LOW_5_CLEAR[1:-1]
                + rb"]...|.(?:[^\x00]..|\x00[^\x00].|\x00\x00[^\x00]))")
_PLAIN_NUMBER = rb"(?:" + _UINT + rb"|" + _int(1) + rb"|" + _PLAIN_FLOAT + rb")"
_VALUE = rb"(?:\x02" + _PLAIN_NUMBER + rb"|\x04[\xf4\xf5])"
_TIME = rb"\x06" + _PLAIN_NUMBER
# One SenML record, its map size matching the keys it holds: {0: name, 2/4: value},
# {0: name, 1: unit, 2/4: value}, {0: name, 2/4: value, 6: time}, or all four.
_SIZED_RECORD = (rb"(?:\xa2\x00" + _SIZED_TEXT + _VALUE
                 + rb"|\xa3\x00" + _SIZED_TEXT + rb"(?:\x01" + _SIZED_TEXT + _VALUE + rb"|"
                 + _VALUE + _TIME + rb")"
                 + rb"|\xa4\x00" + _SIZED_TEXT + rb"\x01" + _SIZED_TEXT + _VALUE + _TIME + rb")")
_records_of: dict[int, re.Pattern[bytes]] = {}  # measurement count -> its pattern


def _records(count: int) -> re.Pattern[bytes]:
    """The pattern of exactly ``count`` plain records (compiled once per count)."""
    pattern = _records_of.get(count)
    if pattern is None:
        pattern = _records_of[count] = re.compile(b"(?:%s){%d}" % (_SIZED_RECORD, count),
                                                  re.DOTALL)
    return pattern


_make = tuple.__new__
_FLOAT_FORMS = {0xF9: ">e", 0xFA: ">f", 0xFB: ">d"}
# Verdicts on float encodings seen (sensor values repeat), bounded.
_float_ok: dict[bytes, bool] = {}


def _length(head: bytes) -> int:
    """The length a text string's head declares (the pattern has checked the head)."""
    return head[0] - 0x60 if head[0] != 0x78 else head[1]


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
    if ((dev_head[0] - 0x60 if dev_head[0] != 0x78 else dev_head[1]) != len(dev)
            or (kind_head[0] - 0x60 if kind_head[0] != 0x78 else kind_head[1]) != len(kind)
            or kind == b"gap"):
        return None  # (a gap record carries its range: not this shape)
    count = n[0] - 0x80 if n[0] < 0x98 else n[1] if n[0] == 0x98 else 256
    if count > MAX_MEASUREMENTS:
        return None
    if ((_records_of.get(count) or _records(count)).fullmatch(payload, m.end()) is None
            and not _records_one_by_one(payload, m.end(), count)):
        return None
    seq = seq_raw[0] if len(seq_raw) == 1 else int.from_bytes(seq_raw[1:], "big")
    boot = boot_raw[0] if len(boot_raw) == 1 else int.from_bytes(boot_raw[1:], "big")
    time_ms = time_raw[0] if len(time_raw) == 1 else int.from_bytes(time_raw[1:], "big")
    if seq > MAX_SEQ or boot > MAX_BOOT or time_ms > MAX_TIME_MS:
        return None
    # (tuple.__new__: a NamedTuple's own __new__ is a Python call, and this runs per reading)
    return _make(ReadingHead, (dev.decode("ascii"), seq, boot, time_ms, prev,
                               kind.decode("ascii"), None, None))


def _records_one_by_one(payload: bytes, pos: int, count: int) -> bool:
    """True when ``payload`` from ``pos`` is exactly ``count`` valid records of the common
    shape, read one at a time (any float: its form is asked of the encoder)."""
    match_record = _RECORD.match
    float_ok = _float_ok.get
    for _ in range(count):
        r = match_record(payload, pos)
        if r is None:
            return False
        size, name_head, name, unit_head, unit, v, t = r.groups()
        if _length(name_head) != len(name):
            return False
        if unit is None:
            if size[0] - 0xA0 != 2 + (t is not None):
                return False
        elif size[0] - 0xA0 != 3 + (t is not None) or _length(unit_head) != len(unit):
            return False
        if v is not None and v[0] >= 0xF9 and not (float_ok(v) or _number_ok(v)):
            return False
        if t is not None and not _number_ok(t):
            return False
        pos = r.end()
    return pos == len(payload)
