"""P-256 device and collector keys, key ids, and raw (r || s) ES256 signatures.

A key id (``kid``) is the SHA-256 of the public key's DER SubjectPublicKeyInfo. It travels in
envelopes only as a hint: verifiers look the key up in their own registry by kid and never
trust a key carried inside a message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .errors import KeyFormatError, SignatureError

__all__ = [
    "KID_SIZE",
    "P256_ORDER",
    "SIGNATURE_SIZE",
    "PrivateKey",
    "PublicKey",
    "der_signature",
    "is_low_s",
    "key_id",
    "low_s",
]

KID_SIZE = 32
SIGNATURE_SIZE = 64
_COORD = 32
#: n, the order of the P-256 group: (r, s) and (r, n - s) are both valid signatures.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_HALF_ORDER = P256_ORDER // 2
_HALF_ORDER_BYTES = _HALF_ORDER.to_bytes(_COORD, "big")
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
# RFC 6979: the same key and message give the same signature (reproducible examples).
_ECDSA_SHA256_DETERMINISTIC = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


# SEQUENCE, INTEGER heads for a 32-byte s (top bit clear) and a 32- or 33-byte r.
_DER_INT32 = b"\x02\x20"
_DER_HEAD_SHORT_R = b"\x30\x44" + _DER_INT32
_DER_HEAD_LONG_R = b"\x30\x45\x02\x21\x00"


def der_signature(signature: bytes) -> bytes:
    """The DER ``ECDSA-Sig-Value`` (X9.62) of a raw 64-byte r || s signature, as OpenSSL wants.

    Each half becomes a minimal positive INTEGER: leading zero bytes dropped, one zero byte
    put back when the top bit is set. Built from the bytes (every verification calls it), and
    held byte-identical to cryptography's ``encode_dss_signature`` by the tests.
    """
    # Nearly every signature: neither half starts with a zero byte, and s (low-S, so below
    # n/2) has its top bit clear; r takes a zero byte in front when its top bit is set.
    if len(signature) == SIGNATURE_SIZE and signature[0] and 0 < signature[_COORD] < 0x80:
        return b"".join((_DER_HEAD_SHORT_R if signature[0] < 0x80 else _DER_HEAD_LONG_R,
                         signature[:_COORD], _DER_INT32, signature[_COORD:]))
    r = signature[:_COORD].lstrip(b"\0") or b"\0"
    if r[0] > 0x7F:
        r = b"\0" + r
    s = signature[_COORD:].lstrip(b"\0") or b"\0"
    if s[0] > 0x7F:
        s = b"\0" + s
    return b"\x30%c\x02%c%s\x02%c%s" % (len(r) + len(s) + 4, len(r), r, len(s), s)


def is_low_s(signature: bytes) -> bool:
    """True when the raw r || s signature has ``s <= n/2``: the one form of the two that
    verify (BIP 146, EIP-2). Anyone can turn a signature into its high-S twin without the
    key, so a verifier that accepts both lets a third party make a second, different envelope
    of a genuine reading."""
    # Big-endian halves of equal length compare as the numbers they are.
    return signature[_COORD:] <= _HALF_ORDER_BYTES if len(signature) == SIGNATURE_SIZE else (
        int.from_bytes(signature[_COORD:], "big") <= _HALF_ORDER)


def low_s(signature: bytes) -> bytes:
    """The low-S form of a raw r || s signature (unchanged if it is low-S already)."""
    s = int.from_bytes(signature[_COORD:], "big")
    if s <= _HALF_ORDER:
        return signature
    return signature[:_COORD] + (P256_ORDER - s).to_bytes(_COORD, "big")


def key_id(spki_der: bytes) -> bytes:
    """The key id of a public key: SHA-256 over its DER SubjectPublicKeyInfo."""
    return hashlib.sha256(spki_der).digest()


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A P-256 public key with its DER encoding and key id computed once."""

    key: ec.EllipticCurvePublicKey = field(repr=False)
    der: bytes = field(repr=False)
    kid: bytes

    @classmethod
    def from_crypto(cls, key: ec.EllipticCurvePublicKey) -> PublicKey:
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyFormatError(f"expected a P-256 key, got curve {key.curve.name}")
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(key=key, der=der, kid=key_id(der))

    @classmethod
    def from_der(cls, der: bytes) -> PublicKey:
        try:
            key = serialization.load_der_public_key(der)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyFormatError(f"not a DER SubjectPublicKeyInfo: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise KeyFormatError(f"expected an EC public key, got {type(key).__name__}")
        return cls.from_crypto(key)

    @classmethod
    def from_pem(cls, pem: bytes | str) -> PublicKey:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyFormatError(f"not a PEM public key: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise KeyFormatError(f"expected an EC public key, got {type(key).__name__}")
        return cls.from_crypto(key)

    @classmethod
    def from_coordinates(cls, x: bytes, y: bytes) -> PublicKey:
        """From the affine coordinates (as in a COSE_Key or JWK)."""
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
        except ValueError as exc:
            raise KeyFormatError(f"not a point on P-256: {exc}") from exc
        return cls.from_crypto(key)

    def to_pem(self) -> str:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    @property
    def kid_hex(self) -> str:
        return self.kid.hex()

    def verify(self, signature: bytes, message: bytes) -> None:
        """Check a raw r || s ES256 signature over ``message``; raise SignatureError if it fails."""
        if len(signature) != SIGNATURE_SIZE:
            raise SignatureError(
                f"ES256 signature must be {SIGNATURE_SIZE} bytes (r || s), got {len(signature)}"
            )
        self.verify_der(der_signature(signature), message)

    def verify_der(self, der: bytes, message: bytes) -> None:
        """:meth:`verify` of a signature already in DER (:func:`der_signature`): a batch
        verifier converts every signature first, then checks them back to back."""
        try:
            self.key.verify(der, message, _ECDSA_SHA256)
        except InvalidSignature:
            raise SignatureError(
                f"signature does not verify under key {self.kid.hex()[:16]}…"
            ) from None


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """A P-256 signing key."""

    key: ec.EllipticCurvePrivateKey = field(repr=False)
    public: PublicKey

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls.from_crypto(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_crypto(cls, key: ec.EllipticCurvePrivateKey) -> PrivateKey:
        return cls(key=key, public=PublicKey.from_crypto(key.public_key()))

    @classmethod
    def from_scalar(cls, d: bytes) -> PrivateKey:
        """From the raw private scalar (as in a COSE_Key ``d`` or a test vector)."""
        return cls.from_crypto(ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: bytes) -> PrivateKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyFormatError(f"not an unencrypted PEM private key: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise KeyFormatError("expected a P-256 (secp256r1) private key")
        return cls.from_crypto(key)

    def to_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def kid(self) -> bytes:
        return self.public.kid

    def sign(self, message: bytes, *, deterministic: bool = False) -> bytes:
        """ES256 over ``message``; returns the raw 64-byte r || s signature, always low-S
        (:func:`is_low_s`): collectors refuse the high-S form.

        ``deterministic`` uses RFC 6979 nonces, so documented examples reproduce byte for byte.
        """
        algorithm = _ECDSA_SHA256_DETERMINISTIC if deterministic else _ECDSA_SHA256
        r, s = decode_dss_signature(self.key.sign(message, algorithm))
        s = min(s, P256_ORDER - s)
        return r.to_bytes(_COORD, "big") + s.to_bytes(_COORD, "big")
