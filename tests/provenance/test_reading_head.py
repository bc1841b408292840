"""``read_head`` is ``Reading.from_payload``, faster: the same verdict on every payload."""

from __future__ import annotations

import math
import random
import re
import struct

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance import cbor, reading_head
from provenance.errors import MalformedError
from provenance.reading import GENESIS_PREV, MAX_SEQ, Reading
from provenance.reading_head import ReadingHead, _common_shape, read_head
from provenance.senml import Measurement

from .samples import example_reading


def strict(payload: bytes) -> ReadingHead | str:
    """What the general path says: the head, or the error code."""
    try:
        r = Reading.from_payload(payload)
    except MalformedError as exc:
        return exc.code
    return ReadingHead(r.device_id, r.seq, r.boot, r.time_ms, r.prev, r.kind, r.gap)


def fast(payload: bytes) -> ReadingHead | str:
    try:
        return read_head(payload)
    except MalformedError as exc:
        return exc.code


def water(**overrides: object) -> Reading:
    base = Reading(device_id="wq-01", seq=7, boot=2, time_ms=1_790_000_000_000,
                   clock_synced=True, prev=GENESIS_PREV, kind="water-quality",
                   measurements=(Measurement(name="ph", value=7.25, unit="pH"),
                                 Measurement(name="turbidity", value=0.3, unit="NTU"),
                                 Measurement(name="count", value=480),
                                 Measurement(name="alarm", value=False, time_offset=-1.5)))
    return Reading(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **overrides})


PAYLOAD = water().to_payload()


def test_the_common_shape_takes_the_fast_path() -> None:
    assert _common_shape(PAYLOAD) == strict(PAYLOAD)


_names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=64)
_numbers = st.one_of(
    st.integers(-(2**64), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(width=16, allow_nan=False, allow_infinity=False),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
)
_measurements = st.builds(
    Measurement, name=_names | st.text(min_size=1, max_size=64),
    value=_numbers | st.booleans() | st.text(max_size=30),
    unit=st.none() | _names, time_offset=st.none() | _numbers)


@settings(max_examples=400, deadline=None)
@given(device=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True),
       kind=st.from_regex(r"[a-z0-9][a-z0-9-]{0,31}", fullmatch=True).filter(lambda k: k != "gap"),
       seq=st.integers(0, MAX_SEQ), boot=st.integers(0, 2**32 - 1),
       time_ms=st.integers(0, 2**53 - 1),
       measurements=st.lists(_measurements, max_size=6).map(tuple))
def test_valid_readings_read_the_same(device: str, kind: str, seq: int, boot: int,
                                      time_ms: int, measurements: tuple[Measurement, ...]) -> None:
    payload = water(device_id=device, kind=kind, seq=seq, boot=boot, time_ms=time_ms,
                    measurements=measurements).to_payload()
    assert fast(payload) == strict(payload)
    shape = _common_shape(payload)
    assert shape is None or shape == strict(payload)


def test_every_small_corruption_reads_the_same() -> None:
    rng = random.Random(13)
    for pos in range(len(PAYLOAD)):
        for value in {0x00, 0x01, 0x17, 0x18, 0x60, 0x78, 0x7F, 0xF9, 0xFA, 0xFB, 0xFF,
                      PAYLOAD[pos] ^ 1, PAYLOAD[pos] ^ 0x80, rng.randrange(256)}:
            mutated = PAYLOAD[:pos] + bytes((value,)) + PAYLOAD[pos + 1:]
            assert fast(mutated) == strict(mutated), (pos, value)
    for end in range(len(PAYLOAD)):
        assert fast(PAYLOAD[:end]) == strict(PAYLOAD[:end]), end
    assert fast(PAYLOAD + b"\x00") == strict(PAYLOAD + b"\x00")


def _swap_float(payload: bytes, value: float, fmt: str, head: int) -> bytes:
    short = cbor2.dumps(value, canonical=True)
    assert short in payload
    return payload.replace(short, bytes((head,)) + struct.pack(fmt, value), 1)


@pytest.mark.parametrize("payload, code", [
    (_swap_float(PAYLOAD, 7.25, ">d", 0xFB), "not_deterministic"),  # a half as a double
    (_swap_float(PAYLOAD, 7.25, ">f", 0xFA), "not_deterministic"),  # a half as a single
    (PAYLOAD.replace(b"\x03\x07", b"\x03\x18\x07", 1), "not_deterministic"),  # seq too long
    (PAYLOAD.replace(b"\x6dwater-quality", b"\x63gap", 1), "bad_payload"),  # gap, no range
])
def test_what_the_deterministic_form_forbids_is_refused_the_same(payload: bytes,
                                                                 code: str) -> None:
    assert _common_shape(payload) is None
    assert fast(payload) == strict(payload) == code


def test_other_shapes_take_the_general_path() -> None:
    for reading in (example_reading(), water(measurements=(Measurement(name="é", value=1),))):
        payload = reading.to_payload()
        assert _common_shape(payload) is None
        assert fast(payload) == strict(payload)


# The measurements pattern admits a float by its bits alone; each it admits must be exactly
# what the deterministic encoder writes for its value (finite, in its shortest form).
_PLAIN_FLOAT = re.compile(reading_head._PLAIN_FLOAT, re.DOTALL)


def _encoder_writes(encoding: bytes) -> bool:
    fmt = {0xF9: ">e", 0xFA: ">f", 0xFB: ">d"}[encoding[0]]
    value = struct.unpack(fmt, encoding[1:])[0]
    return math.isfinite(value) and cbor.encode(value) == encoding


def test_every_half_the_pattern_admits_is_the_encoders_form() -> None:
    admitted = 0
    for bits in range(1 << 16):
        encoding = b"\xf9" + bits.to_bytes(2, "big")
        if _PLAIN_FLOAT.fullmatch(encoding):
            admitted += 1
            assert _encoder_writes(encoding), encoding.hex()
        else:  # every half the encoder writes is admitted: none goes the slow way
            assert not _encoder_writes(encoding), encoding.hex()
    assert admitted == 2 * 0x7800


@settings(max_examples=3000, deadline=None)
@given(st.binary(min_size=4, max_size=4) | st.binary(min_size=8, max_size=8))
def test_every_single_and_double_the_pattern_admits_is_the_encoders_form(bits: bytes) -> None:
    encoding = (b"\xfa" if len(bits) == 4 else b"\xfb") + bits
    if _PLAIN_FLOAT.fullmatch(encoding):
        assert _encoder_writes(encoding), encoding.hex()


@settings(max_examples=3000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False)
       | st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_floats_of_full_precision_take_the_pattern(value: float) -> None:
    """The pattern leaves out only floats whose encoding ends in zero bits (a single that
    could be a half but for its range, a double that could nearly be a single)."""
    encoding = cbor.encode(value)
    if encoding[0] == 0xFA and (encoding[3] & 0x1F or encoding[4]):
        assert _PLAIN_FLOAT.fullmatch(encoding)
    if encoding[0] == 0xFB and (encoding[5] & 0x1F or encoding[6:] != b"\0\0\0"):
        assert _PLAIN_FLOAT.fullmatch(encoding)


def test_a_float_the_pattern_leaves_out_is_read_one_measurement_at_a_time() -> None:
    # 65536.0 is written as a single (too large for a half) whose low mantissa bits are all
    # zero: the pattern of all measurements leaves it out, the reading one by one takes it.
    payload = water(measurements=(Measurement(name="p", value=65536.0, unit="Pa"),)).to_payload()
    assert b"\xfa\x47\x80\x00\x00" in payload
    head = reading_head._HEAD.match(payload)
    assert head is not None
    assert reading_head._records(1).fullmatch(payload, head.end()) is None
    assert _common_shape(payload) == strict(payload)


def test_every_text_length_is_checked_by_the_pattern() -> None:
    for length in range(1, 65):
        name = "n" * length
        payload = water(measurements=(Measurement(name=name, value=1),)).to_payload()
        head = reading_head._HEAD.match(payload)
        assert head is not None
        assert reading_head._records(1).fullmatch(payload, head.end()), length
        assert fast(payload) == strict(payload)
        # the same bytes with the text's declared length one off
        at = payload.index(name.encode()) - 1
        for declared in (length - 1, length + 1):
            if 1 <= declared < 24 and length < 24:
                mutated = payload[:at] + bytes((0x60 + declared,)) + payload[at + 1:]
                assert reading_head._records(1).fullmatch(mutated, head.end()) is None
                assert fast(mutated) == strict(mutated)
