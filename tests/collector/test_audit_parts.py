"""The audit's one-decode envelope reader agrees with the strict core decoder."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.audit import envelope_parts
from provenance import cbor
from provenance.envelope import Envelope
from provenance.errors import ProvenanceError
from tests.support.collector import Device

DEVICE = Device("parts-01")
ENVELOPES = [DEVICE.next() for _ in range(5)]


@pytest.mark.parametrize("raw", ENVELOPES)
def test_valid_envelopes_give_the_same_parts(raw: bytes) -> None:
    e = Envelope.decode(raw)
    assert envelope_parts(raw) == (e.kid, e.message.protected, e.message.payload,
                                   e.message.signature)


def mutate(raw: bytes, how: str) -> bytes:
    tag = cbor2.loads(raw)
    protected, unprotected, payload, sig = tag.value
    if how == "unprotected header":
        return cbor.encode(cbor2.CBORTag(18, [protected, {4: b"x"}, payload, sig]))
    if how == "untagged":
        return cbor.encode([protected, unprotected, payload, sig])
    if how == "other algorithm":
        return cbor.encode(cbor2.CBORTag(18, [cbor.encode({1: -35, 4: DEVICE.key.kid}),
                                              unprotected, payload, sig]))
    if how == "trailing bytes":
        return raw + b"\x00"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["unprotected header", "untagged", "other algorithm",
                                 "trailing bytes"])
def test_anything_else_is_judged_by_the_core(how: str) -> None:
    bad = mutate(ENVELOPES[0], how)
    with pytest.raises(ProvenanceError) as core:
        Envelope.decode(bad)
    if how == "trailing bytes":
        # One decode cannot see trailing bytes; the Merkle root over the stored bytes does.
        assert envelope_parts(bad)[2] == Envelope.decode(ENVELOPES[0]).payload
        return
    with pytest.raises(ProvenanceError) as ours:
        envelope_parts(bad)
    assert ours.value.code == core.value.code


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_the_cores_error(data: bytes) -> None:
    try:
        kid, protected, payload, signature = envelope_parts(data)
        assert isinstance(payload, bytes) and isinstance(signature, bytes)
    except ProvenanceError:
        return
    assert len(kid) == 32 and protected.endswith(kid)
