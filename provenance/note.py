"""C2SP signed notes (c2sp.org/signed-note): text signed by one or more named keys.

A note is UTF-8 text ending in a newline, a blank line, then one line per signature::

    — <key name> base64(4-byte big-endian key id || signature)

Two signature types are supported, the two a SensorLedger checkpoint carries:

``0x01`` Ed25519 (RFC 8032) over the note text. Key id = ``SHA-256(name || 0x0A || 0x01 ||
32-byte public key)[:4]``. This is what ``golang.org/x/mod/sumdb/note`` and the witness network
speak; verifier keys print as ``name+hex(key id)+base64(0x01 || public key)`` and signer keys as
``PRIVATE+KEY+name+hex(key id)+base64(0x01 || 32-byte seed)``, exactly as that package does.

``0x02`` ECDSA with SHA-256, as github.com/transparency-dev/witness implements it (the
signed-note specification points there): key id = ``SHA-256(DER SubjectPublicKeyInfo)[:4]``
(the key name is *not* hashed in), the signature is the ASN.1 DER ``ECDSA-Sig-Value`` over
SHA-256 of the note text, and the verifier key is ``name+hex(key id)+base64(0x02 || DER SPKI)``.
Only P-256 is accepted here, the curve of :mod:`provenance.keys`; for a P-256 key the key id is
the first four bytes of our ``kid``.

Verification follows the specification: signatures from keys not in the trusted set (name and
key id both matching) are ignored; a trusted key's signature that fails rejects the whole note
(:class:`NoteSignatureError`); a note with no verified trusted signature is rejected
(:class:`UnverifiedNoteError`). Parsing is strict (:class:`NoteFormatError`): valid UTF-8, no
control characters but newline, at most :data:`MAX_NOTE_SIZE` bytes and
:data:`MAX_SIGNATURES` signature lines, canonical base64, valid key names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from .errors import (
    KeyFormatError,
    NoteFormatError,
    NoteKeyError,
    NoteSignatureError,
    UnverifiedNoteError,
)
from .keys import PrivateKey, PublicKey

__all__ = [
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "SIG_ECDSA",
    "SIG_ED25519",
    "EcdsaNoteSigner",
    "EcdsaNoteVerifier",
    "Ed25519NoteSigner",
    "Ed25519NoteVerifier",
    "Note",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "VerifiedNote",
    "ecdsa_key_id",
    "ed25519_key_id",
    "open_note",
    "parse_note",
    "parse_verifier_key",
    "sign_note",
]

SIG_ED25519 = 0x01
"""Signature type byte of Ed25519 note signatures."""

SIG_ECDSA = 0x02
"""Signature type byte of ECDSA note signatures (transparency-dev/witness form)."""

MAX_NOTE_SIZE = 256 * 1024
"""Largest note accepted, in bytes: room for far more than 16 post-quantum signatures."""

MAX_SIGNATURES = 100
"""Most signature lines accepted on one note (the specification asks for at least 16)."""

_SIG_PREFIX = "— "
_ED25519_KEY_SIZE = 32
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_ECDSA_SHA256_DETERMINISTIC = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _is_space(char: str) -> bool:
    """Unicode white space as Go's ``unicode.IsSpace`` sees it."""
    return char.isspace() or unicodedata.category(char) in ("Zs", "Zl", "Zp")


def _check_name(name: str, error: type[Exception]) -> None:
    if not name:
        raise error("a note key name must not be empty")
    if "+" in name or any(_is_space(c) for c in name):
        raise error(f"note key name {name!r} must not contain spaces or '+'")
    _check_text_chars(name, error)


def _check_text_chars(text: str, error: type[Exception]) -> None:
    bad = next((c for c in text if c < " " and c != "\n"), None)
    if bad is not None:
        raise error(f"control character U+{ord(bad):04X} is not allowed in a signed note")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise error(f"not encodable as UTF-8: {exc.reason}") from None


def _b64decode(text: str, what: str, error: type[Exception]) -> bytes:
    """Standard padded base64, canonical only (re-encoding gives the same text)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise error(f"{what} is not standard base64: {text[:40]!r}") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise error(f"{what} is not canonical base64: {text[:40]!r}")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def ed25519_key_id(name: str, public_key: bytes) -> int:
    """Key id of an Ed25519 note key: ``SHA-256(name || 0x0A || 0x01 || key)[:4]``, as uint32."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([SIG_ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def ecdsa_key_id(spki_der: bytes) -> int:
    """Key id of an ECDSA note key: ``SHA-256(DER SubjectPublicKeyInfo)[:4]``, as uint32."""
    return int.from_bytes(hashlib.sha256(spki_der).digest()[:4], "big")


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


class NoteVerifier(ABC):
    """A trusted public note key: its name, key id, signature type and verifier key string."""

    __slots__ = ()
    name: str
    key_id: int
    sig_type: int

    @property
    @abstractmethod
    def key_material(self) -> bytes:
        """The public key bytes that follow the type byte in the verifier key."""

    @abstractmethod
    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (without the key id) is valid over ``message``."""

    @property
    def vkey(self) -> str:
        """The verifier key string ``name+hex(key id)+base64(type || public key)``."""
        return f"{self.name}+{self.key_id:08x}+{_b64(bytes([self.sig_type]) + self.key_material)}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.vkey!r})"


class Ed25519NoteVerifier(NoteVerifier):
    """An Ed25519 note key (signature type 0x01)."""

    __slots__ = ("_key", "_raw", "key_id", "name")
    sig_type = SIG_ED25519

    def __init__(self, name: str, public_key: bytes) -> None:
        _check_name(name, NoteKeyError)
        if len(public_key) != _ED25519_KEY_SIZE:
            raise NoteKeyError(
                f"an Ed25519 public key is {_ED25519_KEY_SIZE} bytes, got {len(public_key)}"
            )
        self.name = name
        self._raw = bytes(public_key)
        try:
            self._key = Ed25519PublicKey.from_public_bytes(self._raw)
        except ValueError as exc:
            raise NoteKeyError(f"not an Ed25519 public key: {exc}") from None
        self.key_id = ed25519_key_id(name, self._raw)

    @property
    def key_material(self) -> bytes:
        return self._raw

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class EcdsaNoteVerifier(NoteVerifier):
    """A P-256 ECDSA note key (signature type 0x02), built from a :class:`PublicKey`."""

    __slots__ = ("key", "key_id", "name")
    sig_type = SIG_ECDSA

    def __init__(self, name: str, key: PublicKey) -> None:
        _check_name(name, NoteKeyError)
        self.name = name
        self.key = key
        self.key_id = ecdsa_key_id(key.der)

    @property
    def key_material(self) -> bytes:
        return self.key.der

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            r, s = decode_dss_signature(signature)
        except ValueError:
            return False
        if encode_dss_signature(r, s) != signature:
            return False  # only the one DER encoding, as Go's VerifyASN1 insists
        try:
            self.key.key.verify(signature, message, _ECDSA_SHA256)
        except InvalidSignature:
            return False
        return True


class NoteSigner(ABC):
    """A private note key that signs note texts."""

    __slots__ = ()

    @property
    @abstractmethod
    def verifier(self) -> NoteVerifier:
        """The matching public key."""

    @abstractmethod
    def sign(self, message: bytes) -> bytes:
        """The signature over ``message``, without the key id."""

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def key_id(self) -> int:
        return self.verifier.key_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.verifier.vkey!r})"


class Ed25519NoteSigner(NoteSigner):
    """An Ed25519 note signing key, with the ``PRIVATE+KEY+...`` text form of x/mod's note."""

    __slots__ = ("_key", "_seed", "_verifier")

    def __init__(self, name: str, seed: bytes) -> None:
        if len(seed) != _ED25519_KEY_SIZE:
            raise NoteKeyError(
                f"an Ed25519 private key seed is {_ED25519_KEY_SIZE} bytes, got {len(seed)}"
            )
        self._seed = bytes(seed)
        self._key = Ed25519PrivateKey.from_private_bytes(self._seed)
        self._verifier = Ed25519NoteVerifier(name, self._key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls, name: str) -> Ed25519NoteSigner:
        return cls(name, Ed25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def from_skey(cls, skey: str) -> Ed25519NoteSigner:
        """From ``PRIVATE+KEY+name+hex(key id)+base64(0x01 || seed)``; the key id is checked."""
        parts = skey.strip().split("+", 4)  # base64 may itself hold '+'
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteKeyError("a note signer key reads PRIVATE+KEY+<name>+<key id>+<base64 key>")
        _, _, name, id_hex, key_b64 = parts
        key_id = _parse_key_id(id_hex)
        raw = _b64decode(key_b64, "signer key", NoteKeyError)
        if len(raw) != 1 + _ED25519_KEY_SIZE or raw[0] != SIG_ED25519:
            raise NoteKeyError("signer key is not an Ed25519 (type 0x01) 32-byte seed")
        signer = cls(name, raw[1:])
        if signer.key_id != key_id:
            raise NoteKeyError(
                f"signer key id {key_id:08x} does not match its key (computed "
                f"{signer.key_id:08x})"
            )
        return signer

    @property
    def skey(self) -> str:
        """The signer key string; keep it secret."""
        body = _b64(bytes([SIG_ED25519]) + self._seed)
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{body}"

    @property
    def verifier(self) -> Ed25519NoteVerifier:
        return self._verifier

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:  # never print the seed
        return f"Ed25519NoteSigner({self.verifier.vkey!r})"


class EcdsaNoteSigner(NoteSigner):
    """A P-256 :class:`PrivateKey` signing notes as type 0x02.

    ``deterministic`` uses RFC 6979 nonces, so documented examples reproduce byte for byte.
    """

    __slots__ = ("_deterministic", "_key", "_verifier")

    def __init__(self, name: str, key: PrivateKey, *, deterministic: bool = False) -> None:
        self._key = key
        self._deterministic = deterministic
        self._verifier = EcdsaNoteVerifier(name, key.public)

    @property
    def verifier(self) -> EcdsaNoteVerifier:
        return self._verifier

    def sign(self, message: bytes) -> bytes:
        algorithm = _ECDSA_SHA256_DETERMINISTIC if self._deterministic else _ECDSA_SHA256
        return self._key.key.sign(message, algorithm)


def _parse_key_id(id_hex: str) -> int:
    if len(id_hex) != 8 or any(c not in "0123456789abcdefABCDEF" for c in id_hex):
        raise NoteKeyError(f"a note key id is 8 hex digits, got {id_hex!r}")
    return int(id_hex, 16)


def parse_verifier_key(vkey: str) -> NoteVerifier:
    """A verifier from its ``name+hex(key id)+base64(type || public key)`` string.

    Types 0x01 (Ed25519) and 0x02 (ECDSA P-256) are understood; the key id must match the key
    (else :class:`NoteKeyError`).
    """
    parts = vkey.strip().split("+", 2)  # base64 may itself hold '+'
    if len(parts) != 3:
        raise NoteKeyError(
            "a note verifier key reads <name>+<8 hex digit key id>+<base64 key>, "
            f"got {len(parts)} '+'-separated part(s)"
        )
    name, id_hex, key_b64 = parts
    key_id = _parse_key_id(id_hex)
    raw = _b64decode(key_b64, "verifier key", NoteKeyError)
    if len(raw) < 2:
        raise NoteKeyError("verifier key has no key material")
    verifier: NoteVerifier
    if raw[0] == SIG_ED25519:
        verifier = Ed25519NoteVerifier(name, raw[1:])
    elif raw[0] == SIG_ECDSA:
        try:
            public = PublicKey.from_der(raw[1:])
        except KeyFormatError as exc:
            raise NoteKeyError(f"ECDSA verifier key: {exc}") from None
        if public.der != raw[1:]:
            raise NoteKeyError("ECDSA verifier key is not in canonical DER SPKI form")
        verifier = EcdsaNoteVerifier(name, public)
    else:
        raise NoteKeyError(f"unsupported note signature type 0x{raw[0]:02x}")
    if verifier.key_id != key_id:
        raise NoteKeyError(
            f"verifier key id {key_id:08x} does not match its key (computed {verifier.key_id:08x})"
        )
    return verifier


# --------------------------------------------------------------------------------------------
# Notes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, key id and the signature bytes after the key id."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        """The line as it appears in a note, without the final newline."""
        blob = self.key_id.to_bytes(4, "big") + self.signature
        return f"{_SIG_PREFIX}{self.name} {_b64(blob)}"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed, not yet verified, signed note."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def to_bytes(self) -> bytes:
        lines = "".join(sig.line() + "\n" for sig in self.signatures)
        return (self.text + "\n" + lines).encode("utf-8")


@dataclass(frozen=True, slots=True)
class VerifiedNote:
    """A note whose ``verified`` signatures come from trusted keys and hold."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteFormatError("note text must end with a newline")
    _check_text_chars(text, NoteFormatError)


def sign_note(text: str, signers: Sequence[NoteSigner]) -> bytes:
    """The signed note of ``text`` (ending in a newline) with one line per signer, in order."""
    _check_text(text)
    if not signers:
        raise NoteFormatError("a signed note needs at least one signer")
    if len(signers) > MAX_SIGNATURES:
        raise NoteFormatError(f"at most {MAX_SIGNATURES} signatures fit on a note")
    seen: set[tuple[str, int]] = set()
    message = text.encode("utf-8")
    signatures = []
    for signer in signers:
        if (signer.name, signer.key_id) in seen:
            raise NoteFormatError(f"key {signer.name}+{signer.key_id:08x} signs twice")
        seen.add((signer.name, signer.key_id))
        signatures.append(NoteSignature(signer.name, signer.key_id, signer.sign(message)))
    data = Note(text, tuple(signatures)).to_bytes()
    if len(data) > MAX_NOTE_SIZE:
        raise NoteFormatError(f"signed note is {len(data)} bytes, over {MAX_NOTE_SIZE}")
    return data


def parse_note(data: bytes) -> Note:
    """Split a signed note into its text and signature lines, checking the format only."""
    if len(data) > MAX_NOTE_SIZE:
        raise NoteFormatError(f"note is {len(data)} bytes, over the limit of {MAX_NOTE_SIZE}")
    try:
        whole = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteFormatError(f"note is not valid UTF-8 (byte {exc.start})") from None
    _check_text_chars(whole, NoteFormatError)
    split = whole.rfind("\n\n")
    if split < 0:
        raise NoteFormatError("note has no blank line before its signatures")
    text, block = whole[: split + 1], whole[split + 2 :]
    if not block or not block.endswith("\n"):
        raise NoteFormatError("note must end with signature lines, each ending in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteFormatError(f"note has {len(lines)} signatures, over {MAX_SIGNATURES}")
    return Note(text, tuple(_parse_signature_line(line) for line in lines))


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX):
        raise NoteFormatError(f"signature line must start with an em dash and a space: {line!r}")
    name, sep, blob_b64 = line[len(_SIG_PREFIX) :].partition(" ")
    if not sep:
        raise NoteFormatError(f"signature line has no signature after the key name: {line!r}")
    _check_name(name, NoteFormatError)
    blob = _b64decode(blob_b64, f"signature of {name}", NoteFormatError)
    if len(blob) < 5:
        raise NoteFormatError(f"signature of {name} is shorter than a key id and one byte")
    return NoteSignature(name, int.from_bytes(blob[:4], "big"), blob[4:])


def open_note(data: bytes, verifiers: Iterable[NoteVerifier]) -> VerifiedNote:
    """Parse a signed note and verify it against the trusted ``verifiers``.

    Signatures whose (name, key id) pair is not trusted are ignored and returned as
    ``unverified``. Raises :class:`NoteFormatError` (format, or a trusted key signing twice),
    :class:`NoteSignatureError` (a trusted key's signature fails: the whole note is rejected),
    :class:`UnverifiedNoteError` (no trusted signature at all) and :class:`NoteKeyError` (two
    trusted keys share a name and key id).
    """
    known: dict[tuple[str, int], NoteVerifier] = {}
    for v in verifiers:
        if (v.name, v.key_id) in known and known[(v.name, v.key_id)].vkey != v.vkey:
            raise NoteKeyError(f"two trusted keys are named {v.name}+{v.key_id:08x}")
        known[(v.name, v.key_id)] = v
    note = parse_note(data)
    message = note.text.encode("utf-8")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            if sig not in unverified:
                unverified.append(sig)
            continue
        if any((v.name, v.key_id) == (sig.name, sig.key_id) for v in verified):
            raise NoteFormatError(f"key {sig.name}+{sig.key_id:08x} signs the note twice")
        if not verifier.verify(message, sig.signature):
            raise NoteSignatureError(
                f"the signature of trusted key {sig.name}+{sig.key_id:08x} does not verify; "
                "the note was altered or signed by another key",
                name=sig.name,
                key_id=sig.key_id,
            )
        verified.append(sig)
    if not verified:
        names = ", ".join(f"{s.name}+{s.key_id:08x}" for s in note.signatures)
        raise UnverifiedNoteError(
            f"no signature on the note is from a trusted key (signed by: {names}); add the "
            "log's verifier key to the trusted keys"
        )
    return VerifiedNote(note.text, tuple(verified), tuple(unverified))
