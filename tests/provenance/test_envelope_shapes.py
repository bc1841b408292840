"""Envelope.decode's common-shape path gives exactly what the strict path gives."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance import cbor
from provenance import envelope as envelope_module
from provenance.envelope import CoseSign1, Envelope, sign, sign_reading, signed_parts, to_be_signed
from provenance.errors import ProvenanceError
from provenance.keys import PrivateKey

from .samples import reading

KEY = PrivateKey.generate()
ENVELOPES = [sign_reading(reading(seq), KEY) for seq in range(5)]


@pytest.mark.parametrize("raw", ENVELOPES)
def test_common_shape_equals_the_strict_decode(raw: bytes) -> None:
    fast = Envelope.decode(raw).message
    strict = CoseSign1.decode(raw)
    assert fast == strict
    assert dict(fast.protected_header) == dict(strict.protected_header)


def mutate(raw: bytes, how: str) -> bytes:
    protected, unprotected, payload, sig = cbor2.loads(raw).value
    if how == "unprotected header":
        return cbor.encode(cbor2.CBORTag(18, [protected, {4: b"x"}, payload, sig]))
    if how == "untagged":
        return cbor.encode([protected, unprotected, payload, sig])
    if how == "other algorithm":
        return cbor.encode(cbor2.CBORTag(18, [cbor.encode({1: -35, 4: KEY.kid}),
                                              unprotected, payload, sig]))
    if how == "trailing bytes":
        return raw + b"\x00"
    if how == "short signature":
        return cbor.encode(cbor2.CBORTag(18, [protected, unprotected, payload, sig[:63]]))
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["unprotected header", "untagged", "other algorithm",
                                 "trailing bytes", "short signature"])
def test_every_other_shape_is_refused_by_the_strict_path(how: str) -> None:
    with pytest.raises(ProvenanceError) as err:
        Envelope.decode(mutate(ENVELOPES[0], how))
    assert err.value.code in {"not_cose", "not_cbor", "wrong_algorithm", "bad_signature"}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_the_cores_error(data: bytes) -> None:
    try:
        envelope = Envelope.decode(data)
    except ProvenanceError:
        return
    assert len(envelope.kid) == 32 and envelope.message.protected.endswith(envelope.kid)


def _outcome(raw: bytes) -> object:
    try:
        return Envelope.decode(raw).message
    except ProvenanceError as exc:
        return type(exc)


def _both_ways(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    fast = _outcome(raw)
    with monkeypatch.context() as m:
        m.setattr(envelope_module, "_common_shape", lambda data: None)
        strict = _outcome(raw)
    return fast, strict


@pytest.mark.parametrize("size", [0, 1, 23, 24, 25, 255, 256, 257, 65535, 65536])
def test_every_payload_length_head_decodes_as_the_strict_path_does(
        size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = sign(bytes(range(256)) * (size // 256) + bytes(size % 256), KEY)
    fast, strict = _both_ways(raw, monkeypatch)
    assert isinstance(fast, CoseSign1) and fast == strict
    # The recogniser takes every payload up to 64 KiB; longer ones go the strict way.
    assert (envelope_module._common_shape(raw) is not None) == (size < 65536)


def test_a_longer_than_needed_length_head_is_left_to_the_strict_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    protected, _, payload, sig = cbor2.loads(ENVELOPES[0]).value
    assert 24 <= len(payload) < 256
    head = b"\x59" + len(payload).to_bytes(2, "big")  # 2-byte length where 1 byte suffices
    raw = (b"\xd2\x84\x58\x26" + protected + b"\xa0" + head + payload + b"\x58\x40" + sig)
    assert cbor2.loads(raw).value[2] == payload
    fast, strict = _both_ways(raw, monkeypatch)
    assert fast == strict


def test_every_single_byte_change_decodes_as_the_strict_path_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    raw = ENVELOPES[1]
    variants = [raw[:cut] for cut in range(len(raw))] + [raw + b"\x00"]
    for position in range(len(raw)):
        for value in {0x00, 0x18, 0x40, 0x58, 0x59, 0xA0, 0xFF, raw[position] ^ 0x01}:
            variants.append(raw[:position] + bytes((value,)) + raw[position + 1:])
    for variant in variants:
        fast, strict = _both_ways(variant, monkeypatch)
        assert fast == strict, variant.hex()


def _strict_parts(raw: bytes) -> object:
    try:
        message = CoseSign1.decode(raw)
        Envelope.decode(raw)  # the profile's rules, for the error
    except ProvenanceError as exc:
        return type(exc)
    return (message.kid, message.payload, to_be_signed(message.protected, message.payload),
            message.signature)


def test_signed_parts_are_the_strict_decoders_and_verify() -> None:
    for raw in ENVELOPES:
        parts = signed_parts(raw)
        assert parts is not None and parts == _strict_parts(raw) == Envelope.decode(raw).parts()
        kid, _, sig_structure, signature = parts
        assert kid == KEY.kid
        KEY.public.verify(signature, sig_structure)


@pytest.mark.parametrize("size", [0, 1, 23, 24, 255, 256, 65535])
def test_signed_parts_for_every_payload_length_head(size: int) -> None:
    raw = sign(bytes(range(256)) * (size // 256) + bytes(size % 256), KEY)
    assert signed_parts(raw) == _strict_parts(raw)


def test_every_single_byte_change_gives_the_strict_parts_or_none() -> None:
    """The fast reader gives what the strict decoder gives, or leaves the bytes to it."""
    raw = ENVELOPES[2]
    variants = [raw[:cut] for cut in range(len(raw))] + [raw + b"\x00"]
    for position in range(len(raw)):
        for value in {0x00, 0x18, 0x40, 0x58, 0x59, 0xA0, 0xFF, raw[position] ^ 0x01}:
            variants.append(raw[:position] + bytes((value,)) + raw[position + 1:])
    taken = 0
    for variant in variants:
        parts = signed_parts(variant)
        if parts is not None:
            taken += 1
            assert parts == _strict_parts(variant), variant.hex()
    assert taken > len(raw)  # changes inside the kid, payload and signature keep the shape
    assert signed_parts(bytearray(raw)) is None  # not bytes: the strict decoder's to judge
