"""``read_head`` is ``Reading.from_payload``, faster: the same verdict on every payload."""

from __future__ import annotations

import random
import struct

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
