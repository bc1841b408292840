"""C2SP tlog-cosignature (c2sp.org/tlog-cosignature), the Ed25519 ``cosignature/v1`` type.

A cosignature is a note signature line on a checkpoint, by a *cosigner* (a witness) that checked
the checkpoint extends every earlier one it saw of that log::

    — <cosigner name> base64(key id || u64 big-endian timestamp || 64-byte Ed25519 signature)

Key id = ``SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4]``; the signed message is::

    cosignature/v1
    time <timestamp, decimal>
    <the checkpoint note text: origin, size, root, extension lines>

The verifier key prints as ``name+hex(key id)+base64(0x04 || public key)`` and the signer key as
``PRIVATE+KEY+name+hex(key id)+base64(0x04 || 32-byte seed)``, the form of
:mod:`provenance.note` with the type byte 0x04. :class:`CosignatureVerifier` is a
:class:`~provenance.note.NoteVerifier`, so :func:`provenance.note.open_note` checks
cosignatures beside the log's own signatures. The Ed25519 message does not bind the cosigner
name: one key per cosigner.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import NoteKeyError
from .note import (
    Ed25519NoteSigner,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    parse_verifier_key,
)

__all__ = [
    "MAX_TIMESTAMP",
    "SIG_COSIGNATURE",
    "CosignatureSigner",
    "CosignatureVerifier",
    "cosignature_key_id",
    "cosigned_message",
    "parse_any_verifier_key",
    "signature_time",
]

SIG_COSIGNATURE = 0x04
"""Signature type byte of timestamped Ed25519 cosignatures (cosignature/v1)."""

MAX_TIMESTAMP = (1 << 63) - 1
_HEADER = b"cosignature/v1\n"
_KEY_SIZE = 32
_SIG_SIZE = 8 + 64


def cosignature_key_id(name: str, public_key: bytes) -> int:
    """``SHA-256(name || 0x0A || 0x04 || key)[:4]`` as uint32."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([SIG_COSIGNATURE]) + public_key)
    return int.from_bytes(digest.digest()[:4], "big")


def cosigned_message(checkpoint_text: str, timestamp: int) -> bytes:
    """The bytes an Ed25519 cosignature signs: header line, time line, checkpoint text."""
    return _HEADER + f"time {timestamp}\n".encode() + checkpoint_text.encode("utf-8")


def signature_time(signature: NoteSignature) -> int | None:
    """The timestamp of a cosignature line (None when it is not cosignature-shaped)."""
    if len(signature.signature) != _SIG_SIZE:
        return None
    return int.from_bytes(signature.signature[:8], "big")


class CosignatureVerifier(NoteVerifier):
    """A cosigner's public key (type 0x04); ``verify`` takes the note text and the signature
    bytes after the key id (timestamp and Ed25519 signature)."""

    __slots__ = ("_key", "_raw", "key_id", "name")
    sig_type = SIG_COSIGNATURE

    def __init__(self, name: str, public_key: bytes) -> None:
        # Reuse the note module's name and key checks through an Ed25519 verifier.
        checked = _ed25519_check(name, public_key)
        self.name = name
        self._raw = bytes(public_key)
        self._key = checked
        self.key_id = cosignature_key_id(name, self._raw)

    @property
    def key_material(self) -> bytes:
        return self._raw

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != _SIG_SIZE:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp == 0 or timestamp > MAX_TIMESTAMP:
            return False
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            return False
        try:
            self._key.verify(signature[8:], cosigned_message(text, timestamp))
        except InvalidSignature:
            return False
        return True


def _ed25519_check(name: str, public_key: bytes) -> Ed25519PublicKey:
    from .note import Ed25519NoteVerifier

    Ed25519NoteVerifier(name, public_key)  # raises NoteKeyError for a bad name or key
    return Ed25519PublicKey.from_public_bytes(public_key)


class CosignatureSigner(NoteSigner):
    """A cosigner's private key: signs checkpoint texts as timestamped cosignatures."""

    __slots__ = ("_key", "_seed", "_verifier")

    def __init__(self, name: str, seed: bytes) -> None:
        if len(seed) != _KEY_SIZE:
            raise NoteKeyError(f"an Ed25519 seed is {_KEY_SIZE} bytes, got {len(seed)}")
        self._seed = bytes(seed)
        self._key = Ed25519PrivateKey.from_private_bytes(self._seed)
        self._verifier = CosignatureVerifier(name, self._key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls, name: str) -> CosignatureSigner:
        return cls(name, Ed25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def from_skey(cls, skey: str) -> CosignatureSigner:
        """From ``PRIVATE+KEY+name+hex(key id)+base64(0x04 || seed)``; the key id is checked."""
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteKeyError("a cosigner key reads PRIVATE+KEY+<name>+<key id>+<base64 key>")
        _, _, name, id_hex, key_b64 = parts
        try:
            raw = base64.b64decode(key_b64.encode("ascii"), validate=True)
            key_id = int(id_hex, 16)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise NoteKeyError("cosigner key: bad key id or base64") from None
        if len(raw) != 1 + _KEY_SIZE or raw[0] != SIG_COSIGNATURE:
            raise NoteKeyError("cosigner key is not a type 0x04 Ed25519 32-byte seed")
        signer = cls(name, raw[1:])
        if signer.key_id != key_id or len(id_hex) != 8:
            raise NoteKeyError(f"cosigner key id {id_hex} does not match its key")
        return signer

    @property
    def skey(self) -> str:
        body = base64.b64encode(bytes([SIG_COSIGNATURE]) + self._seed).decode("ascii")
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{body}"

    @property
    def verifier(self) -> CosignatureVerifier:
        return self._verifier

    def sign(self, message: bytes) -> bytes:
        """Cosign the checkpoint text ``message`` now."""
        return self.sign_at(message.decode("utf-8"), int(time.time()))

    def sign_at(self, checkpoint_text: str, timestamp: int) -> bytes:
        if not 0 < timestamp <= MAX_TIMESTAMP:
            raise NoteKeyError(f"cosignature timestamp {timestamp} is not in 1..2**63-1")
        signature = self._key.sign(cosigned_message(checkpoint_text, timestamp))
        return timestamp.to_bytes(8, "big") + signature

    def cosign(self, checkpoint_text: str, timestamp: int | None = None) -> NoteSignature:
        """The cosignature line (as a :class:`NoteSignature`) on ``checkpoint_text``."""
        when = int(time.time()) if timestamp is None else timestamp
        return NoteSignature(self.name, self.key_id, self.sign_at(checkpoint_text, when))

    def note_signer(self) -> Ed25519NoteSigner:
        """The same key as a plain Ed25519 note signer (type 0x01, so another key id), for the
        cosigner's own reports, e.g. a proof of misbehaviour."""
        return Ed25519NoteSigner(self.name, self._seed)

    def __repr__(self) -> str:
        return f"CosignatureSigner({self.verifier.vkey!r})"


def parse_any_verifier_key(vkey: str) -> NoteVerifier:
    """A verifier key of type 0x01, 0x02 or 0x04 (a cosigner)."""
    parts = vkey.strip().split("+", 2)
    if len(parts) == 3:
        try:
            raw = base64.b64decode(parts[2].encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raw = b""
        if raw[:1] == bytes([SIG_COSIGNATURE]):
            verifier = CosignatureVerifier(parts[0], raw[1:])
            if f"{verifier.key_id:08x}" != parts[1].lower() or verifier.vkey != vkey.strip():
                raise NoteKeyError(f"cosigner key id {parts[1]} does not match its key")
            return verifier
    return parse_verifier_key(vkey)

