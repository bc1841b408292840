"""Collector statements: facts the collector signs and logs as leaves of the one log tree.

Some facts must be ordered with the readings, in the same history that witnesses and mirrors
hold: a device key became valid (``enrol``), a key stopped being valid (``revoke``); later
types (``erase``, ``key-rotate``, ...) use the same envelope. A statement is:

* a COSE_Sign1 (tag 18, ES256) signed by the collector's P-256 key, whose protected header is
  exactly the deterministic ``{1: -7, 3: STATEMENT_CONTENT_TYPE, 4: kid}``. No reading carries
  a content type (a reading's protected header is exactly ``{1: -7, 4: kid}``), so neither can
  be read as the other;
* a payload that is a deterministic CBOR map with short text keys: ``v`` (1), ``type``,
  ``seq`` (the collector's statement counter, 1, 2, 3, ... with no hole: it is also the row's
  seq), ``time`` (collector time, ms), plus the type's own fields.

In a ledger a statement is a row of ``readings`` under the reserved device id
:data:`STATEMENT_DEVICE` (which no device id can be) with kind :data:`STATEMENT_KIND`; its
leaf is ``H(0x00 || envelope)`` like every reading's. Only the running collector appends them.

Pure: building, signing, decoding and verifying; no storage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import cbor2

from . import cbor
from .envelope import CoseSign1, to_be_signed
from .errors import KeyFormatError, MalformedError, SignatureError
from .keys import KID_SIZE, SIGNATURE_SIZE, PrivateKey, PublicKey
from .reading import MAX_TIME_MS, check_device_id
from .wire import ALG_ES256, COSE_SIGN1_TAG, HDR_ALG, HDR_KID

__all__ = [
    "ENROL",
    "HDR_CONTENT_TYPE",
    "KEY_ROTATE",
    "REVOKE",
    "STATEMENT_CONTENT_TYPE",
    "STATEMENT_DEVICE",
    "STATEMENT_KIND",
    "STATEMENT_VERSION",
    "Enrolment",
    "KeyRotation",
    "Revocation",
    "SignedStatement",
    "Statement",
    "StatementError",
    "enrolment_statement",
    "is_statement",
    "key_rotation_statement",
    "revocation_statement",
    "sign_statement",
]

#: The reserved device id of statement rows: not a valid device id (those start with a letter
#: or digit), so no device can publish under it.
STATEMENT_DEVICE: Final = "@collector"
#: The ``kind`` column of statement rows.
STATEMENT_KIND: Final = "statement"
#: COSE header label 3, content type (RFC 9052 §3.1), in the protected header.
HDR_CONTENT_TYPE: Final = 3
STATEMENT_CONTENT_TYPE: Final = "application/vnd.sensorledger.statement+cbor"
STATEMENT_VERSION: Final = 1

ENROL: Final = "enrol"
REVOKE: Final = "revoke"
KEY_ROTATE: Final = "key-rotate"

_MAX_SEQ = 2**63 - 1
_MAX_REASON = 200
_TYPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_COMMON_KEYS = frozenset({"v", "type", "seq", "time"})


class StatementError(MalformedError):
    """Bytes that are not a well-formed collector statement."""

    code = "bad_statement"


def _protected(kid: bytes) -> bytes:
    return cbor.encode({HDR_ALG: ALG_ES256, HDR_CONTENT_TYPE: STATEMENT_CONTENT_TYPE,
                        HDR_KID: kid})


# tag 18, array(4), bstr head of the protected header, map(3), 1: -7, 3: text(...)
_PREFIX: Final = _protected(bytes(KID_SIZE))[:-KID_SIZE - 2]


def is_statement(envelope: bytes) -> bool:
    """True when ``envelope`` starts like a statement (tag, protected header up to the kid):
    a quick sort of log entries. :meth:`SignedStatement.decode` is the real check."""
    return envelope[4:4 + len(_PREFIX)] == _PREFIX and envelope[:2] == b"\xd2\x84"


@dataclass(frozen=True, slots=True)
class Statement:
    """What a statement says: its type, counter, time and the type's own fields."""

    type: str
    seq: int
    time_ms: int
    fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not self.type or len(self.type) > 23 or not set(self.type) <= _TYPE_CHARS:
            raise StatementError(f"statement type {self.type!r} must be 1-23 characters of "
                                 "a-z 0-9 -")
        if not isinstance(self.seq, int) or not 1 <= self.seq <= _MAX_SEQ:
            raise StatementError(f"statement seq {self.seq!r} must be an integer >= 1")
        if not isinstance(self.time_ms, int) or not 0 <= self.time_ms <= MAX_TIME_MS:
            raise StatementError(f"statement time {self.time_ms!r} is out of range")
        for key in self.fields:
            if not isinstance(key, str) or not 0 < len(key) < 24 or key in _COMMON_KEYS:
                raise StatementError(f"statement field {key!r} must be a short text key other "
                                     "than v, type, seq, time")
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    def to_payload(self) -> bytes:
        return cbor.encode({"v": STATEMENT_VERSION, "type": self.type, "seq": self.seq,
                            "time": self.time_ms, **self.fields})

    @classmethod
    def from_payload(cls, data: bytes) -> Statement:
        value = cbor.decode(data, what="statement payload")
        if not isinstance(value, dict):
            raise StatementError("statement payload must be a CBOR map")
        if not cbor.is_deterministic(data, value):
            raise StatementError("statement payload is not deterministic CBOR")
        if value.get("v") != STATEMENT_VERSION:
            raise StatementError(f"statement version {value.get('v')!r} is not "
                                 f"{STATEMENT_VERSION}")
        kind, seq, time_ms = value.get("type"), value.get("seq"), value.get("time")
        if not isinstance(kind, str):
            raise StatementError("statement type must be text")
        if isinstance(seq, bool) or isinstance(time_ms, bool):
            raise StatementError("statement seq and time must be integers")
        fields = {k: v for k, v in value.items() if k not in _COMMON_KEYS}
        return cls(kind, seq, time_ms, fields)  # type: ignore[arg-type]

    def enrolment(self) -> Enrolment:
        """The fields of an ``enrol`` statement (raises for any other type)."""
        if self.type != ENROL:
            raise StatementError(f"a {self.type!r} statement is not an enrolment")
        return Enrolment.from_fields(self.fields)

    def revocation(self) -> Revocation:
        """The fields of a ``revoke`` statement (raises for any other type)."""
        if self.type != REVOKE:
            raise StatementError(f"a {self.type!r} statement is not a revocation")
        return Revocation.from_fields(self.fields)

    def key_rotation(self) -> KeyRotation:
        """The fields of a ``key-rotate`` statement (raises for any other type)."""
        if self.type != KEY_ROTATE:
            raise StatementError(f"a {self.type!r} statement is not a key rotation")
        return KeyRotation.from_fields(self.fields)


@dataclass(frozen=True, slots=True)
class Enrolment:
    """``enrol``: from now on ``key`` signs for ``device_id`` (enrolled in the registry at
    ``enrolled_ms``, collector time)."""

    device_id: str
    key: PublicKey
    enrolled_ms: int

    @property
    def kid(self) -> bytes:
        return self.key.kid

    def to_fields(self) -> dict[str, Any]:
        return {"device": self.device_id, "key": self.key.der, "enrolled": self.enrolled_ms}

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> Enrolment:
        if set(fields) != {"device", "key", "enrolled"}:
            raise StatementError(f"an enrol statement holds device, key and enrolled; got "
                                 f"{sorted(fields)}")
        device, der, enrolled = fields["device"], fields["key"], fields["enrolled"]
        try:
            check_device_id(device)
        except MalformedError as exc:
            raise StatementError(f"enrol statement: {exc}") from None
        if not isinstance(der, bytes):
            raise StatementError("enrol statement: key must be a DER SubjectPublicKeyInfo")
        try:
            key = PublicKey.from_der(der)
        except KeyFormatError as exc:
            raise StatementError(f"enrol statement: {exc}") from None
        if key.der != der:
            raise StatementError("enrol statement: key is not in its DER form")
        if not _is_time(enrolled):
            raise StatementError("enrol statement: enrolled must be a time in ms")
        return cls(device, key, enrolled)


@dataclass(frozen=True, slots=True)
class Revocation:
    """``revoke``: readings of ``kid`` (a key of ``device_id``) signed at device time
    ``revoked_ms`` or later are not valid."""

    device_id: str
    kid: bytes
    revoked_ms: int
    reason: str | None = None

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"device": self.device_id, "kid": self.kid,
                                  "revoked": self.revoked_ms}
        if self.reason is not None:
            fields["reason"] = self.reason[:_MAX_REASON]
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> Revocation:
        if not {"device", "kid", "revoked"} <= set(fields) <= {"device", "kid", "revoked",
                                                              "reason"}:
            raise StatementError(f"a revoke statement holds device, kid, revoked and maybe "
                                 f"reason; got {sorted(fields)}")
        device, kid, revoked = fields["device"], fields["kid"], fields["revoked"]
        reason = fields.get("reason")
        try:
            check_device_id(device)
        except MalformedError as exc:
            raise StatementError(f"revoke statement: {exc}") from None
        if not isinstance(kid, bytes) or len(kid) != KID_SIZE:
            raise StatementError(f"revoke statement: kid must be {KID_SIZE} bytes")
        if not _is_time(revoked):
            raise StatementError("revoke statement: revoked must be a time in ms")
        if reason is not None and (not isinstance(reason, str) or len(reason) > _MAX_REASON):
            raise StatementError("revoke statement: reason must be short text")
        return cls(device, kid, revoked, reason)


@dataclass(frozen=True, slots=True)
class KeyRotation:
    """``key-rotate``: signed by the collector key in force, it names the keys that sign from
    the next checkpoint on: the new P-256 collector key (block headers, statements, the
    checkpoint's ECDSA signature) and the new Ed25519 note verifier key (``name+id+base64``)."""

    key: PublicKey
    vkey: str

    @property
    def kid(self) -> bytes:
        return self.key.kid

    def to_fields(self) -> dict[str, Any]:
        return {"key": self.key.der, "vkey": self.vkey}

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> KeyRotation:
        if set(fields) != {"key", "vkey"}:
            raise StatementError(f"a key-rotate statement holds key and vkey; got "
                                 f"{sorted(fields)}")
        der, vkey = fields["key"], fields["vkey"]
        if not isinstance(der, bytes):
            raise StatementError("key-rotate statement: key must be a DER SubjectPublicKeyInfo")
        try:
            key = PublicKey.from_der(der)
        except KeyFormatError as exc:
            raise StatementError(f"key-rotate statement: {exc}") from None
        if key.der != der:
            raise StatementError("key-rotate statement: key is not in its DER form")
        if not isinstance(vkey, str) or not 0 < len(vkey) <= 500 or not vkey.isprintable():
            raise StatementError("key-rotate statement: vkey must be a note verifier key")
        return cls(key, vkey)


def _is_time(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TIME_MS


def enrolment_statement(seq: int, time_ms: int, enrolment: Enrolment) -> Statement:
    return Statement(ENROL, seq, time_ms, enrolment.to_fields())


def revocation_statement(seq: int, time_ms: int, revocation: Revocation) -> Statement:
    return Statement(REVOKE, seq, time_ms, revocation.to_fields())


def key_rotation_statement(seq: int, time_ms: int, rotation: KeyRotation) -> Statement:
    return Statement(KEY_ROTATE, seq, time_ms, rotation.to_fields())


def sign_statement(statement: Statement, key: PrivateKey) -> bytes:
    """The statement as a COSE_Sign1 signed by the collector ``key``: the envelope to log."""
    protected = _protected(key.kid)
    payload = statement.to_payload()
    signature = key.sign(to_be_signed(protected, payload))
    return cbor.encode(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


@dataclass(frozen=True, slots=True)
class SignedStatement:
    """A decoded statement envelope: structure and payload checked, signature not yet."""

    raw: bytes = field(repr=False)
    message: CoseSign1 = field(repr=False)
    statement: Statement

    @property
    def kid(self) -> bytes:
        kid = self.message.protected_header[HDR_KID]
        assert isinstance(kid, bytes)
        return kid

    @classmethod
    def decode(cls, data: bytes) -> SignedStatement:
        try:
            msg = CoseSign1.decode(data)
        except MalformedError as exc:
            raise StatementError(f"statement envelope: {exc}") from None
        if not msg.tagged:
            raise StatementError("statement envelope must carry CBOR tag 18")
        kid = msg.protected_header.get(HDR_KID)
        if not isinstance(kid, bytes) or len(kid) != KID_SIZE:
            raise StatementError(f"statement kid must be {KID_SIZE} bytes")
        if msg.protected != _protected(kid) or msg.unprotected_header:
            raise StatementError(
                "statement headers must be exactly protected {alg: ES256, content type: "
                f"{STATEMENT_CONTENT_TYPE!r}, kid}} and unprotected {{}}")
        if len(msg.signature) != SIGNATURE_SIZE:
            raise StatementError(f"statement signature must be {SIGNATURE_SIZE} bytes")
        return cls(bytes(data), msg, Statement.from_payload(msg.payload))

    def verify(self, key: PublicKey) -> Statement:
        """Raise :class:`SignatureError` unless the collector ``key`` signed it; the
        statement when it did."""
        if self.kid != key.kid:
            raise SignatureError(f"statement kid {self.kid.hex()[:16]}… does not name the "
                                 f"collector key {key.kid_hex[:16]}…")
        self.message.verify(key)
        return self.statement
