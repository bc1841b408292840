"""Envelope.decode's common-shape path gives exactly what the strict path gives."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance import cbor
from provenance.envelope import CoseSign1, Envelope, sign_reading
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
