"""Interop both ways: pycose verifies our envelopes; our verifier accepts pure-Python ecdsa ones."""

from __future__ import annotations

import hashlib

import cbor2
import ecdsa
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from pycose.algorithms import Es256
from pycose.headers import KID, Algorithm
from pycose.keys.curves import P256
from pycose.keys.ec2 import EC2Key
from pycose.messages import Sign1Message

from provenance import cbor
from provenance.envelope import ALG_ES256, COSE_SIGN1_TAG, sign_reading, to_be_signed
from provenance.errors import SignatureError
from provenance.keys import PrivateKey, PublicKey
from tests.support.signed import SignedReading

from .samples import example_reading, reading


def _pycose_key(key: PublicKey) -> EC2Key:
    numbers = key.key.public_numbers()
    return EC2Key(crv=P256, x=numbers.x.to_bytes(32, "big"), y=numbers.y.to_bytes(32, "big"))


@pytest.mark.parametrize("deterministic", [False, True])
def test_pycose_verifies_our_envelopes(deterministic: bool) -> None:
    key = PrivateKey.generate()
    for r in (example_reading(), reading(7)):
        data = sign_reading(r, key, deterministic=deterministic)
        message = Sign1Message.decode(data)
        message.key = _pycose_key(key.public)
        assert message.verify_signature()
        assert message.payload == r.to_payload()
        assert message.get_attr(KID) == key.kid
        assert message.get_attr(Algorithm) is Es256


def test_pycose_rejects_a_tampered_envelope() -> None:
    key = PrivateKey.generate()
    data = bytearray(sign_reading(reading(1), key))
    data[-1] ^= 0x01  # last signature byte
    message = Sign1Message.decode(bytes(data))
    message.key = _pycose_key(key.public)
    assert not message.verify_signature()


def _ecdsa_signed_envelope(payload: bytes) -> tuple[bytes, PublicKey]:
    """Build an envelope with python-ecdsa only: our code encodes, ecdsa signs."""
    sk = ecdsa.SigningKey.generate(curve=ecdsa.NIST256p, hashfunc=hashlib.sha256)
    public = PublicKey.from_der(sk.get_verifying_key().to_der())
    protected = cbor.encode({1: ALG_ES256, 4: public.kid})
    signature = sk.sign_deterministic(to_be_signed(protected, payload), hashfunc=hashlib.sha256,
                                      sigencode=ecdsa.util.sigencode_string)
    assert len(signature) == 64
    envelope = cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]),
                           canonical=True)
    return envelope, public


def test_envelope_signed_by_pure_python_ecdsa_verifies_with_ours() -> None:
    r = example_reading()
    envelope, public = _ecdsa_signed_envelope(r.to_payload())
    opened = SignedReading.open(envelope, public)
    assert opened.reading == r


def test_ecdsa_envelope_under_another_key_is_rejected() -> None:
    envelope, _ = _ecdsa_signed_envelope(reading(3).to_payload())
    other = PublicKey.from_crypto(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(SignatureError):
        SignedReading.open(envelope, other)


def test_python_ecdsa_verifies_our_signatures() -> None:
    key = PrivateKey.generate()
    data = sign_reading(reading(2), key)
    item = cbor2.loads(data)
    protected, _, payload, signature = item.value
    vk = ecdsa.VerifyingKey.from_der(key.public.der, hashfunc=hashlib.sha256)
    assert vk.verify(signature, to_be_signed(protected, payload), hashfunc=hashlib.sha256,
                     sigdecode=ecdsa.util.sigdecode_string)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.binary(max_size=70_000), st.binary(max_size=300))
def test_to_be_signed_is_the_deterministic_sig_structure(protected: bytes, payload: bytes,
                                                         aad: bytes) -> None:
    body_protected = b"" if protected == b"\xa0" else protected
    expected = cbor.encode(["Signature1", body_protected, aad, payload])
    assert to_be_signed(protected, payload, aad) == expected
