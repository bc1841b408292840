"""COSE encryption (RFC 9052 §5, RFC 9053): sealed values and the data-key grants for readers.

Two message shapes, both built here from ``cryptography`` and the deterministic CBOR encoder:

* **Sealed values** — COSE_Encrypt0 (tag 16), A256GCM, under a subject's 256-bit data key:
  protected ``{1: 3}``, unprotected ``{4: data key id, 5: 12-byte IV}``. The IV is random for
  every message (a data key seals many readings; 96 random bits keep the collision chance
  negligible far beyond 2^32 messages per key, RFC 9053 §4.1's limit).
* **Grant** — COSE_Encrypt (tag 96) whose content is a data key, for one reader: the content
  is A256GCM-encrypted under a fresh content key, and that key is wrapped for the reader with
  ECDH-ES + A256KW (RFC 9053 §6.4: an ephemeral P-256 key, HKDF-SHA-256 over the COSE_KDF_Context
  ``[-5, [nil, nil, nil], [nil, nil, nil], [256, recipient protected]]``, then AES key wrap).
  The recipient's unprotected header names the reader's key id (``kid``, SHA-256 of its
  SubjectPublicKeyInfo, as for device keys) and carries the ephemeral public key (label -1).

Nothing here touches a file or the network. Decryption failures become :class:`DecryptionError`
with a sentence a person can act on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from . import cbor
from .errors import MalformedError, ProvenanceError
from .keys import PrivateKey, PublicKey

__all__ = [
    "ALG_A256GCM",
    "ALG_A256KW",
    "ALG_ECDH_ES_A256KW",
    "COSE_ENCRYPT0_TAG",
    "COSE_ENCRYPT_TAG",
    "DATA_KEY_SIZE",
    "DATA_KID_SIZE",
    "DecryptionError",
    "Grant",
    "Sealed",
    "decrypt0",
    "encrypt0",
    "grant_key",
    "new_data_key",
    "open_grant",
]

COSE_ENCRYPT0_TAG = 16
COSE_ENCRYPT_TAG = 96
ALG_A256GCM = 3
ALG_A256KW = -5
ALG_ECDH_ES_A256KW = -31
HDR_ALG, HDR_KID, HDR_IV, HDR_EPHEMERAL = 1, 4, 5, -1
DATA_KEY_SIZE = 32
DATA_KID_SIZE = 16
IV_SIZE = 12
# COSE_Key labels (RFC 9052 §7, RFC 9053 §7.1.1): kty EC2, crv P-256, x, y.
_KTY, _CRV, _X, _Y = 1, -1, -2, -3
_KTY_EC2, _CRV_P256 = 2, 1

_PROTECTED_GCM = cbor.encode({HDR_ALG: ALG_A256GCM})
_PROTECTED_KW = cbor.encode({HDR_ALG: ALG_ECDH_ES_A256KW})


class DecryptionError(ProvenanceError):
    """Sealed data that this key cannot open (wrong key, altered bytes, another reader)."""

    code = "cannot_decrypt"


def new_data_key() -> tuple[bytes, bytes]:
    """A fresh (data key id, data key): 16 random bytes of id, 32 random bytes of key."""
    return os.urandom(DATA_KID_SIZE), os.urandom(DATA_KEY_SIZE)


def _enc_structure(context: str, protected: bytes, external_aad: bytes) -> bytes:
    return cbor.encode([context, protected, external_aad])


# --- COSE_Encrypt0 -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sealed:
    """A decoded COSE_Encrypt0 of our profile (not yet decrypted)."""

    protected: bytes
    kid: bytes
    iv: bytes
    ciphertext: bytes

    @classmethod
    def decode(cls, data: bytes) -> Sealed:
        body = _decode_tagged(data, COSE_ENCRYPT0_TAG, 3, "COSE_Encrypt0")
        protected, unprotected, ciphertext = body
        alg, kid, iv = _headers(protected, unprotected, "COSE_Encrypt0")
        if alg != ALG_A256GCM:
            raise MalformedError(f"sealed values use algorithm {alg!r}, not A256GCM (3)",
                                 code="bad_sealed")
        if not isinstance(ciphertext, bytes) or len(ciphertext) < 16:
            raise MalformedError("sealed values carry no ciphertext", code="bad_sealed")
        return cls(protected, kid, iv, ciphertext)


def encrypt0(key: bytes, kid: bytes, plaintext: bytes, external_aad: bytes = b"") -> bytes:
    """COSE_Encrypt0 of ``plaintext`` under the A256GCM ``key`` named ``kid``."""
    iv = os.urandom(IV_SIZE)
    aad = _enc_structure("Encrypt0", _PROTECTED_GCM, external_aad)
    ciphertext = AESGCM(key).encrypt(iv, plaintext, aad)
    return cbor2.dumps(cbor2.CBORTag(COSE_ENCRYPT0_TAG, [
        _PROTECTED_GCM, {HDR_KID: kid, HDR_IV: iv}, ciphertext]), canonical=True)


def decrypt0(key: bytes, data: bytes | Sealed, external_aad: bytes = b"") -> bytes:
    """The plaintext of a COSE_Encrypt0, or DecryptionError."""
    sealed = data if isinstance(data, Sealed) else Sealed.decode(data)
    aad = _enc_structure("Encrypt0", sealed.protected, external_aad)
    try:
        return AESGCM(key).decrypt(sealed.iv, sealed.ciphertext, aad)
    except (InvalidTag, ValueError):
        raise DecryptionError(
            f"the sealed values do not open with data key {sealed.kid.hex()}: the key is "
            "another one or the bytes were altered") from None


# --- grants: COSE_Encrypt with one ECDH-ES + A256KW recipient ----------------------------


@dataclass(frozen=True, slots=True)
class Grant:
    """A decoded grant: which data key it carries, for which reader (not yet opened)."""

    data_kid: bytes
    reader_kid: bytes
    raw: bytes

    @classmethod
    def decode(cls, data: bytes) -> Grant:
        body = _decode_tagged(data, COSE_ENCRYPT_TAG, 4, "COSE_Encrypt grant")
        protected, unprotected, _ciphertext, recipients = body
        alg, data_kid, _iv = _headers(protected, unprotected, "grant")
        if alg != ALG_A256GCM:
            raise MalformedError("a grant's content must be A256GCM", code="bad_grant")
        if not (isinstance(recipients, list) and len(recipients) == 1
                and isinstance(recipients[0], list) and len(recipients[0]) == 3):
            raise MalformedError("a grant has exactly one recipient", code="bad_grant")
        r_protected, r_unprotected, wrapped = recipients[0]
        if r_protected != _PROTECTED_KW or not isinstance(r_unprotected, dict):
            raise MalformedError("a grant's recipient must use ECDH-ES + A256KW (-31)",
                                 code="bad_grant")
        reader_kid = r_unprotected.get(HDR_KID)
        if not isinstance(reader_kid, bytes) or not isinstance(wrapped, bytes):
            raise MalformedError("a grant's recipient names no reader key id", code="bad_grant")
        return cls(data_kid, reader_kid, data)


def grant_key(data_kid: bytes, data_key: bytes, reader: PublicKey) -> bytes:
    """A COSE_Encrypt carrying ``data_key`` that only ``reader``'s private key opens."""
    cek = os.urandom(DATA_KEY_SIZE)
    iv = os.urandom(IV_SIZE)
    ciphertext = AESGCM(cek).encrypt(iv, data_key, _enc_structure("Encrypt", _PROTECTED_GCM, b""))
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    kek = _kek(ephemeral.exchange(ec.ECDH(), reader.key), _PROTECTED_KW)
    numbers = ephemeral.public_key().public_numbers()
    epk = {_KTY: _KTY_EC2, _CRV: _CRV_P256, _X: numbers.x.to_bytes(32, "big"),
           _Y: numbers.y.to_bytes(32, "big")}
    recipient = [_PROTECTED_KW, {HDR_EPHEMERAL: epk, HDR_KID: reader.kid},
                 aes_key_wrap(kek, cek)]
    return cbor2.dumps(cbor2.CBORTag(COSE_ENCRYPT_TAG, [
        _PROTECTED_GCM, {HDR_KID: data_kid, HDR_IV: iv}, ciphertext, [recipient]]),
        canonical=True)


def open_grant(data: bytes, reader: PrivateKey) -> tuple[bytes, bytes]:
    """(data key id, data key) from a grant for ``reader``; DecryptionError otherwise."""
    grant = Grant.decode(data)
    if grant.reader_kid != reader.public.kid:
        raise DecryptionError(
            f"this grant is for reader key {grant.reader_kid.hex()[:16]}…, not for "
            f"{reader.public.kid.hex()[:16]}…")
    protected, unprotected, ciphertext, recipients = _decode_tagged(
        data, COSE_ENCRYPT_TAG, 4, "COSE_Encrypt grant")
    _alg, _kid, iv = _headers(protected, unprotected, "grant")
    r_protected, r_unprotected, wrapped = recipients[0]
    epk = r_unprotected.get(HDR_EPHEMERAL)
    if not (isinstance(epk, dict) and epk.get(_KTY) == _KTY_EC2 and epk.get(_CRV) == _CRV_P256
            and isinstance(epk.get(_X), bytes) and isinstance(epk.get(_Y), bytes)):
        raise MalformedError("a grant's ephemeral key must be a P-256 COSE_Key", code="bad_grant")
    try:
        peer = PublicKey.from_coordinates(epk[_X], epk[_Y])
        kek = _kek(reader.key.exchange(ec.ECDH(), peer.key), r_protected)
        cek = aes_key_unwrap(kek, wrapped)
        data_key = AESGCM(cek).decrypt(iv, ciphertext,
                                       _enc_structure("Encrypt", protected, b""))
    except (InvalidUnwrap, InvalidTag, ValueError, ProvenanceError):
        raise DecryptionError("the grant does not open with this reader key: the key is "
                              "another one or the grant was altered") from None
    if len(data_key) != DATA_KEY_SIZE:
        raise DecryptionError("the grant carries no 256-bit data key")
    return grant.data_kid, data_key


def _kek(shared_secret: bytes, recipient_protected: bytes) -> bytes:
    """RFC 9053 §5: HKDF-SHA-256, no salt, info = COSE_KDF_Context for A256KW."""
    context = cbor.encode([ALG_A256KW, [None, None, None], [None, None, None],
                           [256, recipient_protected]])
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context).derive(
        shared_secret)


# --- shared decoding ---------------------------------------------------------------------


def _decode_tagged(data: bytes, tag: int, size: int, what: str) -> list[Any]:
    if not isinstance(data, bytes):
        raise MalformedError(f"{what} must be bytes", code="bad_sealed")
    value = cbor.decode(data, what=what)
    if not (isinstance(value, cbor2.CBORTag) and value.tag == tag):
        raise MalformedError(f"{what} must carry CBOR tag {tag}", code="bad_sealed")
    body = value.value
    if not (isinstance(body, list) and len(body) == size):
        raise MalformedError(f"{what} must be an array of {size}", code="bad_sealed")
    return body


def _headers(protected: object, unprotected: object, what: str) -> tuple[int, bytes, bytes]:
    if not isinstance(protected, bytes) or not isinstance(unprotected, dict):
        raise MalformedError(f"{what} headers are malformed", code="bad_sealed")
    p = cbor.decode(protected, what=f"{what} protected header") if protected else {}
    if not isinstance(p, dict):
        raise MalformedError(f"{what} protected header is not a map", code="bad_sealed")
    alg = p.get(HDR_ALG)
    kid = unprotected.get(HDR_KID)
    iv = unprotected.get(HDR_IV)
    if not isinstance(kid, bytes) or not isinstance(iv, bytes) or len(iv) != IV_SIZE:
        raise MalformedError(f"{what} needs a kid and a 12-byte IV in its unprotected header",
                             code="bad_sealed")
    if not isinstance(alg, int):
        raise MalformedError(f"{what} names no algorithm", code="bad_sealed")
    return alg, kid, iv
