"""COSE_Sign1 (RFC 9052) with ES256 (RFC 9053): the signed envelope around every payload.

Two levels:

* ``CoseSign1.decode`` reads any COSE_Sign1 message (tag 18 or untagged), as RFC 9052 allows,
  so that standard COSE test vectors can be checked against it.
* ``Envelope.decode`` reads our wire-format profile: tag 18 required, a protected header that
  is exactly the deterministic encoding of ``{1: -7, 4: kid}`` (ES256, a 32-byte ``kid``), an
  empty unprotected header, an attached payload. ``Envelope.verify`` is the signature check
  every verifier runs (ingest and audit): nothing else rebuilds the Sig_structure.

No map anywhere may repeat a key (RFC 8949 §5.6): a decoder that keeps the first of two
values and one that keeps the last would read two different messages from the same bytes.

An envelope's identity is its exact bytes as received: ``Envelope.hash`` (SHA-256 of those bytes)
is what a device chains with ``prev`` and what a Merkle leaf commits to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2

from . import cbor
from .errors import MalformedError, SignatureError, UnsupportedAlgorithmError
from .keys import KID_SIZE, SIGNATURE_SIZE, PrivateKey, PublicKey, is_low_s
from .reading import Reading
from .wire import ALG_ES256, COSE_SIGN1_TAG, HDR_ALG, HDR_KID

__all__ = [
    "ALG_ES256",
    "COSE_SIGN1_TAG",
    "CoseSign1",
    "Envelope",
    "SignedParts",
    "sign",
    "sign_reading",
    "signed_parts",
    "to_be_signed",
]

_EMPTY_MAP = b"\xa0"


def to_be_signed(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """The RFC 9052 §4.4 Sig_structure for COSE_Sign1:
    ``["Signature1", body_protected, external_aad, payload]`` in deterministic CBOR.

    A protected bucket holding an encoded empty map (h'a0') is read as empty (RFC 9052 §3).
    Built from bytes directly: it runs once per verified reading, and the generic encoder
    costs several times more (tests hold the two byte-identical).
    """
    body_protected = b"" if protected == _EMPTY_MAP else protected
    return b"".join((_SIG1_HEAD, _bstr_head(len(body_protected)), body_protected,
                     _bstr_head(len(external_aad)), external_aad,
                     _bstr_head(len(payload)), payload))


_SIG1_HEAD = b"\x84\x6aSignature1"  # array(4), text(10) "Signature1"


def _bstr_head(length: int) -> bytes:
    """The CBOR head of a byte string of ``length`` bytes (major type 2, shortest form)."""
    if length < 24:
        return bytes((0x40 | length,))
    if length < 0x100:
        return bytes((0x58, length))
    if length < 0x10000:
        return b"\x59" + length.to_bytes(2, "big")
    if length < 0x1_0000_0000:
        return b"\x5a" + length.to_bytes(4, "big")
    return b"\x5b" + length.to_bytes(8, "big")


@dataclass(frozen=True, slots=True)
class CoseSign1:
    """A decoded COSE_Sign1 message (structure checked, signature not yet)."""

    raw: bytes = field(repr=False)
    protected: bytes
    protected_header: Mapping[Any, Any]
    unprotected_header: Mapping[Any, Any]
    payload: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    tagged: bool

    @classmethod
    def decode(cls, data: bytes) -> CoseSign1:
        data = _as_bytes(data)
        item = cbor.decode(data, what="envelope")
        tagged = isinstance(item, cbor2.CBORTag)
        if tagged:
            if item.tag != COSE_SIGN1_TAG:
                raise MalformedError(
                    f"CBOR tag {item.tag} is not COSE_Sign1 ({COSE_SIGN1_TAG})", code="not_cose"
                )
            item = item.value
        if not isinstance(item, list) or len(item) != 4:
            raise MalformedError("COSE_Sign1 must be an array of 4 items", code="not_cose")
        protected, unprotected, payload, signature = item
        if not isinstance(protected, bytes):
            raise MalformedError("protected header must be a byte string", code="not_cose")
        if not isinstance(unprotected, dict):
            raise MalformedError("unprotected header must be a map", code="not_cose")
        if payload is None:
            raise MalformedError("detached payloads are not supported", code="not_cose")
        if not isinstance(payload, bytes):
            raise MalformedError("payload must be a byte string", code="not_cose")
        if not isinstance(signature, bytes):
            raise MalformedError("signature must be a byte string", code="not_cose")
        protected_header: Any = {}
        if protected:
            protected_header = cbor.decode(protected, what="protected header")
            if not isinstance(protected_header, dict):
                raise MalformedError("protected header must encode a map", code="not_cose")
        overlap = set(protected_header) & set(unprotected)
        if overlap:
            raise MalformedError(f"header labels {overlap} in both buckets", code="not_cose")
        return cls(data, protected, protected_header, unprotected, payload, signature, tagged)

    @property
    def alg(self) -> object:
        if HDR_ALG in self.protected_header:
            return self.protected_header[HDR_ALG]
        return self.unprotected_header.get(HDR_ALG)

    @property
    def kid(self) -> bytes | None:
        kid = self.protected_header.get(HDR_KID, self.unprotected_header.get(HDR_KID))
        return kid if isinstance(kid, bytes) else None

    def to_be_signed(self, external_aad: bytes = b"") -> bytes:
        return to_be_signed(self.protected, self.payload, external_aad)

    def verify(self, key: PublicKey, external_aad: bytes = b"") -> None:
        """Raise unless ``alg`` is ES256 and the signature verifies under ``key``."""
        if self.alg != ALG_ES256:
            raise UnsupportedAlgorithmError(f"algorithm {self.alg!r} is not ES256 ({ALG_ES256})")
        if len(self.signature) != SIGNATURE_SIZE:
            raise SignatureError(f"ES256 signature must be {SIGNATURE_SIZE} bytes")
        key.verify(self.signature, self.to_be_signed(external_aad))


@dataclass(frozen=True, slots=True)
class Envelope:
    """A COSE_Sign1 message in the SensorLedger profile."""

    message: CoseSign1

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        data = _as_bytes(data)
        # Nearly every envelope has exactly the shape we sign: recognise its bytes (ingest and
        # audit decode one envelope per reading); anything else, and every error message,
        # comes from the strict path.
        common = _common_shape(data)
        if common is not None:
            return cls(common)
        msg = CoseSign1.decode(data)
        if not msg.tagged:
            raise MalformedError("envelope must carry CBOR tag 18", code="not_cose")
        alg = msg.protected_header.get(HDR_ALG)
        if alg != ALG_ES256:
            raise UnsupportedAlgorithmError(
                f"protected alg {alg!r} is not ES256 ({ALG_ES256})"
            )
        kid = msg.protected_header.get(HDR_KID)
        if not isinstance(kid, bytes) or len(kid) != KID_SIZE:
            raise MalformedError(f"protected kid must be {KID_SIZE} bytes", code="bad_kid")
        if len(msg.signature) != SIGNATURE_SIZE:
            raise MalformedError(
                f"ES256 signature must be {SIGNATURE_SIZE} bytes (r || s), got "
                f"{len(msg.signature)}", code="bad_signature")
        if set(msg.protected_header) != {HDR_ALG, HDR_KID} or msg.unprotected_header:
            raise MalformedError(
                "envelope headers must be exactly protected {alg, kid} and unprotected {}",
                code="not_cose",
            )
        if msg.protected != _protected_header(kid):
            raise MalformedError(
                "protected header must be the deterministic encoding of {1: -7, 4: kid} "
                f"({_protected_header(kid)[:6].hex()}…), got {msg.protected[:6].hex()}…",
                code="not_cose",
            )
        return cls(msg)

    @property
    def raw(self) -> bytes:
        return self.message.raw

    @property
    def kid(self) -> bytes:
        kid = self.message.protected_header[HDR_KID]
        assert isinstance(kid, bytes)
        return kid

    @property
    def payload(self) -> bytes:
        return self.message.payload

    @property
    def hash(self) -> bytes:
        """SHA-256 of the envelope bytes: the value the device's next ``prev`` carries."""
        return hashlib.sha256(self.message.raw).digest()

    @property
    def signature(self) -> bytes:
        return self.message.signature

    @property
    def low_s(self) -> bool:
        """True when the signature is in its canonical low-S form (see :func:`is_low_s`)."""
        return is_low_s(self.message.signature)

    def verify(self, key: PublicKey) -> None:
        """Raise unless the kid names ``key`` and the signature verifies under it.

        The one signature check of the collector's ingest and audit, so it does only what
        decoding has not: the algorithm (ES256) and the signature's size are settled then.
        Either form of the signature (low-S or high-S) verifies here; refusing the high-S
        form is a collector's admission rule (``high_s``), not a property of COSE.
        """
        kid = self.message.protected_header[HDR_KID]
        if key.kid != kid:
            raise SignatureError(
                f"envelope kid {kid.hex()[:16]}… does not name key {key.kid.hex()[:16]}…"
            )
        message = self.message
        key.verify(message.signature, to_be_signed(message.protected, message.payload))

    def parts(self) -> SignedParts:
        """``(kid, payload, Sig_structure, signature)``, as :func:`signed_parts` gives them."""
        message = self.message
        return (self.kid, message.payload, to_be_signed(message.protected, message.payload),
                message.signature)

    def reading(self) -> Reading:
        return Reading.from_payload(self.message.payload)


def _protected_header(kid: bytes) -> bytes:
    """The one protected header an envelope may carry: deterministic {1: -7, 4: kid}."""
    return _PROTECTED_PREFIX + kid


def _as_bytes(data: object) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedError("a COSE message must be bytes", code="not_cose")
    return bytes(data)


# Every envelope we sign starts with these bytes: tag 18, array(4), the protected header as a
# 38-byte bstr holding the deterministic {1: -7, 4: bstr(32)}, then the kid itself.
_COMMON_HEAD = b"\xd2\x84\x58\x26\xa2\x01\x26\x04\x58\x20"
_PROTECTED_PREFIX = _COMMON_HEAD[4:]  # map(2), 1: -7, 4: bstr(32) head; the kid follows
_KID_END = len(_COMMON_HEAD) + KID_SIZE
_PROTECTED = slice(4, _KID_END)
# ... then {} (a0), the payload bstr, and the signature as bstr(64).
_SIGNATURE_HEAD = b"\x58\x40"
_TAIL = len(_SIGNATURE_HEAD) + SIGNATURE_SIZE


def _payload_span(data: bytes) -> tuple[int, int] | None:
    """Where the payload lies in ``data`` when ``data`` is, byte for byte, the shape we sign:
    tag 18, our exact protected header, an empty unprotected header, a payload with the
    shortest length head, a 64-byte signature and nothing after it. Anything else (None) goes
    the strict way.

    Read by slicing, not by a CBOR decoder: this runs once per reading on ingest and audit,
    and every byte it accepts is checked (the tests hold it equal to the strict path).
    """
    size = len(data)
    if size < _KID_END + 2 + _TAIL or not data.startswith(_COMMON_HEAD) or data[_KID_END] != 0xA0:
        return None
    head = data[_KID_END + 1]
    start = _KID_END + 2
    if head < 0x58:
        if head < 0x40:
            return None
        length = head - 0x40
    elif head == 0x58:
        length, start = data[start], start + 1
        if length < 24:
            return None
    elif head == 0x59:
        length, start = int.from_bytes(data[start:start + 2], "big"), start + 2
        if length < 0x100:
            return None
    else:
        return None
    end = start + length
    if size != end + _TAIL or data[end:end + 2] != _SIGNATURE_HEAD:
        return None
    return start, end


def _common_shape(data: bytes) -> CoseSign1 | None:
    """The message when ``data`` has the shape we sign (:func:`_payload_span`)."""
    span = _payload_span(data)
    if span is None:
        return None
    start, end = span
    kid = data[len(_COMMON_HEAD):_KID_END]
    return CoseSign1(data, data[_PROTECTED], {HDR_ALG: ALG_ES256, HDR_KID: kid}, {},
                     data[start:end], data[end + 2:], True)


#: What a verifier needs of an envelope: (kid, payload, Sig_structure, raw r || s signature).
SignedParts = tuple[bytes, bytes, bytes, bytes]


def signed_parts(data: bytes) -> SignedParts | None:
    """``(kid, payload, Sig_structure, signature)`` of an envelope in the shape we sign, read
    from its bytes with no object built: a batch verifier's fast path (ingest and audit run it
    once per reading). Check ``PublicKey.verify(signature, sig_structure)`` under the key
    enrolled for ``kid``; that is exactly :meth:`Envelope.verify`.

    None for anything else, which :meth:`Envelope.decode` reads the strict way (then
    :meth:`Envelope.parts`). The tests hold the two paths equal.

    The Sig_structure is the envelope's own bytes, re-framed: ``["Signature1", protected,
    external_aad, payload]`` holds the protected bstr exactly as the envelope does (bytes 2..41),
    an empty external_aad (h'40') where the envelope has its empty unprotected map (h'a0'), and
    the payload bstr with the envelope's (shortest) length head.
    """
    if data.__class__ is not bytes:
        return None
    span = _payload_span(data)
    if span is None:
        return None
    end = span[1]
    return (data[len(_COMMON_HEAD):_KID_END], data[span[0]:end],
            b"".join((_SIG1_HEAD, data[2:_KID_END], b"\x40", data[_KID_END + 1:end])),
            data[end + 2:])


def sign(payload: bytes, key: PrivateKey, *, deterministic: bool = False) -> bytes:
    """Wrap ``payload`` in a tagged COSE_Sign1 signed with ES256 by ``key``."""
    protected = cbor.encode({HDR_ALG: ALG_ES256, HDR_KID: key.kid})
    signature = key.sign(to_be_signed(protected, payload), deterministic=deterministic)
    return cbor.encode(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


def sign_reading(reading: Reading, key: PrivateKey, *, deterministic: bool = False) -> bytes:
    """Encode and sign a reading; returns the envelope bytes to publish."""
    return sign(reading.to_payload(), key, deterministic=deterministic)
