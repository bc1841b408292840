"""Keys and key files."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.errors import KeyFormatError, SignatureError
from provenance.keyfile import KeyFileError, load_private_key, load_public_key, save_private_key
from provenance.keys import P256_ORDER, PrivateKey, PublicKey, der_signature, is_low_s


def test_kid_is_sha256_of_spki_der() -> None:
    key = PrivateKey.generate()
    assert key.kid == hashlib.sha256(key.public.der).digest()
    assert PublicKey.from_pem(key.public.to_pem()).kid == key.kid
    assert PublicKey.from_der(key.public.der).kid == key.kid


def test_signatures_are_raw_and_verify() -> None:
    key = PrivateKey.generate()
    sig = key.sign(b"message")
    assert len(sig) == 64
    key.public.verify(sig, b"message")
    with pytest.raises(SignatureError):
        key.public.verify(sig, b"massage")
    with pytest.raises(SignatureError):
        key.public.verify(sig[:63], b"message")


def test_deterministic_signing_repeats() -> None:
    key = PrivateKey.generate()
    assert key.sign(b"m", deterministic=True) == key.sign(b"m", deterministic=True)
    assert key.sign(b"m") != key.sign(b"m")


def test_save_is_owner_only_and_never_overwrites(tmp_path: Path) -> None:
    key = PrivateKey.generate()
    path = save_private_key(key, tmp_path / "keys" / "device.pem")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_private_key(path).kid == key.kid
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        save_private_key(PrivateKey.generate(), path)
    assert load_private_key(path).kid == key.kid


def test_group_readable_key_is_refused(tmp_path: Path) -> None:
    path = save_private_key(PrivateKey.generate(), tmp_path / "k.pem")
    os.chmod(path, 0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_private_key(path)


def test_missing_and_malformed_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_private_key(tmp_path / "absent.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    os.chmod(bad, 0o600)
    with pytest.raises(KeyFormatError):
        load_private_key(bad)
    pub = tmp_path / "pub.pem"
    pub.write_text(PrivateKey.generate().public.to_pem())
    assert len(load_public_key(pub).kid) == 32


def test_non_p256_keys_are_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    p384 = ec.generate_private_key(ec.SECP384R1())
    pem = p384.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    with pytest.raises(KeyFormatError):
        PrivateKey.from_pem(pem)
    ed = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(KeyFormatError):
        PublicKey.from_pem(ed)


def test_a_key_of_an_unknown_algorithm_is_a_key_format_error() -> None:
    """A flipped byte in the algorithm OID must not escape as a cryptography exception."""
    der = bytearray(PrivateKey.generate().public.der)
    oid = bytes.fromhex("2a8648ce3d0201")  # id-ecPublicKey
    at = bytes(der).index(oid)
    der[at + len(oid) - 1] ^= 0x04
    with pytest.raises(KeyFormatError):
        PublicKey.from_der(bytes(der))


@settings(max_examples=500)
@given(st.binary(min_size=64, max_size=64))
def test_der_signature_equals_cryptographys_encoding(raw: bytes) -> None:
    expected = encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                    int.from_bytes(raw[32:], "big"))
    assert der_signature(raw) == expected


@pytest.mark.parametrize("raw", [
    bytes(64),                                  # r = s = 0
    b"\x80" + bytes(63),                        # top bit set: a zero byte goes in front
    bytes(31) + b"\x01" + bytes(31) + b"\xff",  # one-byte integers
    bytes(5) + b"\x7f" * 27 + b"\xff" * 32,
])
def test_der_signature_edge_cases(raw: bytes) -> None:
    expected = encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                    int.from_bytes(raw[32:], "big"))
    assert der_signature(raw) == expected


_HALF = P256_ORDER // 2


@settings(max_examples=500)
@given(st.binary(min_size=32, max_size=32),
       st.one_of(st.integers(0, 2**256 - 1), st.integers(_HALF - 2, _HALF + 2)))
def test_is_low_s_is_s_at_most_half_the_order(r: bytes, s: int) -> None:
    signature = r + s.to_bytes(32, "big")
    assert is_low_s(signature) == (s <= _HALF)
