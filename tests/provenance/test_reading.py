"""Readings: construction checks every invariant; from_payload parses only what v1 allows."""

from __future__ import annotations

import dataclasses

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from provenance import cbor
from provenance.envelope import Envelope, sign_reading
from provenance.errors import MalformedError, ProvenanceError, SignatureError
from provenance.keys import PrivateKey
from provenance.reading import GENESIS_PREV, Gap, Reading, check_device_id
from provenance.senml import Measurement
from tests.support.signed import SignedReading

from .samples import example_reading, reading

KEY = PrivateKey.generate()


def test_payload_round_trip() -> None:
    r = example_reading()
    assert Reading.from_payload(r.to_payload()) == r


def test_chain_prev_is_the_hash_of_the_previous_envelope() -> None:
    first = sign_reading(reading(0), KEY)
    second = reading(1, prev=Envelope.decode(first).hash)
    opened = SignedReading.open(sign_reading(second, KEY), KEY.public)
    import hashlib

    assert opened.reading.prev == hashlib.sha256(first).digest()


@pytest.mark.parametrize(
    "change",
    [
        {"device_id": "bad/topic"},
        {"device_id": ""},
        {"device_id": "x" * 65},
        {"seq": -1},
        {"seq": 2**63},
        {"seq": True},
        {"boot": -1},
        {"time_ms": 1.5},
        {"clock_synced": 1},
        {"prev": b"\x00" * 31},
        {"kind": "Water Quality"},
        {"kind": "gap"},  # gap kind without a range
        {"gap": Gap(0, 1)},  # a range on a non-gap reading
        {"measurements": [Measurement(name="x", value=1)]},  # list, not tuple
        {"event": {"": 1}},
        {"event": {"k" * 24: 1}},
        {"event": {"k": [1, 2]}},
        {"event": {"k": float("inf")}},
    ],
)
def test_invalid_readings_cannot_be_built(change: dict[str, object]) -> None:
    with pytest.raises(MalformedError):
        dataclasses.replace(reading(5), **change)  # type: ignore[arg-type]


def test_gap_record_must_follow_its_range() -> None:
    ok = dataclasses.replace(reading(10), kind="gap", measurements=(), gap=Gap(3, 9))
    assert ok.gap is not None and ok.gap.count == 7
    assert Reading.from_payload(ok.to_payload()) == ok
    with pytest.raises(MalformedError):
        dataclasses.replace(ok, gap=Gap(3, 10))
    with pytest.raises(MalformedError):
        Gap(5, 4)


def _payload_with(**entries: object) -> bytes:
    body = cbor2.loads(reading(1).to_payload())
    for key, value in entries.items():
        k = int(key[1:])
        if value is _DROP:
            del body[k]
        else:
            body[k] = value
    return cbor.encode(body)


_DROP = object()


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\xff\x00", "not_cbor"),
        (cbor.encode([1, 2, 3]), "bad_payload"),
        (_payload_with(k1=2), "bad_version"),
        (_payload_with(k3=_DROP), "bad_payload"),
        (_payload_with(k12="extra"), "bad_payload"),
        (_payload_with(k9="not a list"), "bad_payload"),
        (_payload_with(k3=-5), "bad_payload"),
        (_payload_with(k10=[1]), "bad_payload"),
        (_payload_with(k11=[1]), "bad_payload"),
        (_payload_with(k8="gap", k11=[5, 3]), "bad_payload"),  # reversed gap range
        # an optional key that is present must carry its value; null is not "absent"
        (_payload_with(k10=None), "bad_payload"),
        (_payload_with(k11=None), "bad_payload"),
        (_payload_with(k9=[{0: "x", 2: 1, 1: None}]), "bad_payload"),
        (_payload_with(k9=[{0: "x", 2: 1, 6: None}]), "bad_payload"),
        (reading(1).to_payload() + b"\x00", "not_cbor"),
        # the same map, but keys in non-deterministic order
        (bytes.fromhex("a2") + cbor2.dumps(2) + cbor2.dumps("x") + cbor2.dumps(1) + cbor2.dumps(1),
         "bad_payload"),
    ],
)
def test_bad_payloads_are_refused_with_a_reason(payload: bytes, code: str) -> None:
    with pytest.raises(MalformedError) as err:
        Reading.from_payload(payload)
    assert err.value.code == code
    assert err.value.diagnostics()


def test_non_deterministic_encoding_is_refused() -> None:
    body = cbor2.loads(reading(1).to_payload())
    shuffled = dict(sorted(body.items(), reverse=True))
    loose = cbor2.dumps(shuffled)  # insertion order, not sorted
    assert loose != reading(1).to_payload()
    with pytest.raises(MalformedError) as err:
        Reading.from_payload(loose)
    assert err.value.code == "not_deterministic"


def test_check_device_id() -> None:
    assert check_device_id("ph-probe_1.a") == "ph-probe_1.a"
    for bad in ("+", "#", "a/b", " a", "-a", 5):
        with pytest.raises(MalformedError):
            check_device_id(bad)


@given(
    seq=st.integers(1, 2**63 - 1),
    boot=st.integers(0, 2**32 - 1),
    time_ms=st.integers(0, 2**53 - 1),
    synced=st.booleans(),
    prev=st.binary(min_size=32, max_size=32),
    values=st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10, 10**9),
                    max_size=8),
    event=st.none() | st.dictionaries(
        st.text(st.characters(max_codepoint=0x7FF), min_size=1, max_size=11),
                                      st.integers(0, 1000) | st.text(max_size=10), max_size=4),
)
def test_any_valid_reading_survives_sign_and_open(
    seq: int, boot: int, time_ms: int, synced: bool, prev: bytes, values: list[float],
    event: dict[str, object] | None,
) -> None:
    r = Reading(
        device_id="dev-h", seq=seq, boot=boot, time_ms=time_ms, clock_synced=synced, prev=prev,
        kind="battery",
        measurements=tuple(Measurement(name=f"m{i}", value=v) for i, v in enumerate(values)),
        event=event,  # type: ignore[arg-type]
    )
    assert SignedReading.open(sign_reading(r, KEY), KEY.public).reading == r


@given(position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_any_flipped_bit_is_caught(position: int, bit: int) -> None:
    data = bytearray(sign_reading(example_reading(), KEY))
    data[position % len(data)] ^= 1 << bit
    with pytest.raises(ProvenanceError):
        SignedReading.open(bytes(data), KEY.public)


def test_envelope_under_the_wrong_key_is_refused() -> None:
    other = PrivateKey.generate()
    with pytest.raises(SignatureError):
        SignedReading.open(sign_reading(reading(0), KEY), other.public)


def test_first_reading_uses_the_genesis_prev() -> None:
    assert reading(0).prev == GENESIS_PREV == bytes(32)
