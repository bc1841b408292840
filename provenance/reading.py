"""The signed reading: what a device says it measured, and where it sits in its own history.

A ``Reading`` is built either by a device (then encoded with ``to_payload``) or from payload
bytes (``Reading.from_payload``), which checks every invariant of wire format v1 and raises
``MalformedError`` naming the first one broken. A reading that exists is a valid reading.

Payload map (deterministic CBOR, integer keys; see docs/wire-format.md for the CDDL):

    1 v     format version (1)            7 prev  SHA-256 of the previous envelope (32 B)
    2 dev   device id                     8 kind  sensor kind
    3 seq   sequence number               9 m     SenML records
    4 boot  boot counter                 10 ev    event data (optional)
    5 t     device time, ms since epoch  11 gap   dropped sequence range (gap records only)
    6 sync  device clock synchronised    12 commit SHA-256(salt || values) (private readings)

A private reading (``commitment`` set) carries no measurements and no event: the device signs
a salted commitment to them instead (provenance/sealed_values.py), so that neither the payload
nor the signature over it tells anything about the values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import cbor
from .errors import MalformedError
from .senml import Measurement, Value
from .wire import FORMAT_VERSION
from .wire import PayloadLabel as L

__all__ = [
    "FORMAT_VERSION",
    "GAP_KIND",
    "GENESIS_PREV",
    "Gap",
    "Reading",
    "check_device_id",
]

GAP_KIND = "gap"
GENESIS_PREV = bytes(32)

K_VERSION, K_DEVICE, K_SEQ, K_BOOT, K_TIME, K_SYNC = (
    L.VERSION, L.DEVICE, L.SEQ, L.BOOT, L.TIME, L.SYNC)
K_PREV, K_KIND, K_MEASUREMENTS, K_EVENT, K_GAP = L.PREV, L.KIND, L.MEASUREMENTS, L.EVENT, L.GAP
K_COMMITMENT = L.COMMITMENT
_REQUIRED = frozenset({K_VERSION, K_DEVICE, K_SEQ, K_BOOT, K_TIME, K_SYNC, K_PREV, K_KIND,
                       K_MEASUREMENTS})
_KNOWN = _REQUIRED | {K_EVENT, K_GAP, K_COMMITMENT}
COMMITMENT_SIZE = 32

MAX_SEQ = 2**63 - 1
MAX_BOOT = 2**32 - 1
MAX_TIME_MS = 2**53 - 1
MAX_MEASUREMENTS = 256
MAX_EVENT_FIELDS = 64
# Device ids appear in MQTT topics: no '/', '+', '#', no spaces.
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KIND = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


def check_device_id(device_id: object) -> str:
    """Return ``device_id`` if it is a valid device id, else raise MalformedError."""
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise MalformedError(
            f"device id {device_id!r} must be 1-64 characters of A-Z a-z 0-9 . _ - "
            "starting with a letter or digit",
            code="bad_device_id",
        )
    return device_id


@dataclass(frozen=True, slots=True)
class Gap:
    """A range of sequence numbers the device had to drop (inclusive at both ends)."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not (0 <= self.first <= self.last <= MAX_SEQ):
            raise MalformedError(f"gap range {self.first}..{self.last} is not a valid range")

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class Reading:
    """One signed statement from a device. Frozen; every field is checked at construction."""

    device_id: str
    seq: int
    boot: int
    time_ms: int
    clock_synced: bool
    prev: bytes
    kind: str
    measurements: tuple[Measurement, ...] = ()
    event: Mapping[str, Value] | None = field(default=None)
    gap: Gap | None = None
    commitment: bytes | None = None

    def __post_init__(self) -> None:
        check_device_id(self.device_id)
        _check_uint(self.seq, "seq", MAX_SEQ)
        _check_uint(self.boot, "boot counter", MAX_BOOT)
        _check_uint(self.time_ms, "device time", MAX_TIME_MS)
        if not isinstance(self.clock_synced, bool):
            raise MalformedError("clock-synced flag must be a boolean")
        if not isinstance(self.prev, bytes) or len(self.prev) != 32:
            raise MalformedError("prev must be a 32-byte SHA-256 hash")
        if not isinstance(self.kind, str) or not _KIND.fullmatch(self.kind):
            raise MalformedError(f"sensor kind {self.kind!r} must match {_KIND.pattern}")
        if not isinstance(self.measurements, tuple) or not all(
            isinstance(m, Measurement) for m in self.measurements
        ):
            raise MalformedError("measurements must be a tuple of Measurement")
        if len(self.measurements) > MAX_MEASUREMENTS:
            raise MalformedError(f"more than {MAX_MEASUREMENTS} measurements in one reading")
        if self.event is not None:
            object.__setattr__(self, "event", MappingProxyType(_check_event(self.event)))
        if (self.kind == GAP_KIND) != (self.gap is not None):
            raise MalformedError("a gap range is carried exactly by readings of kind 'gap'")
        if self.gap is not None and self.gap.last >= self.seq:
            raise MalformedError("a gap record must come after the range it reports")
        if self.commitment is not None:
            if not isinstance(self.commitment, bytes) or len(self.commitment) != COMMITMENT_SIZE:
                raise MalformedError("a commitment must be a 32-byte SHA-256 hash")
            if self.measurements or self.event is not None or self.gap is not None:
                raise MalformedError("a private reading carries its commitment only: no "
                                     "measurements, event or gap range")

    @property
    def is_private(self) -> bool:
        return self.commitment is not None

    @property
    def is_gap(self) -> bool:
        return self.gap is not None

    def to_payload(self) -> bytes:
        """The deterministic CBOR payload that the device signs."""
        body: dict[int, Any] = {
            K_VERSION: FORMAT_VERSION,
            K_DEVICE: self.device_id,
            K_SEQ: self.seq,
            K_BOOT: self.boot,
            K_TIME: self.time_ms,
            K_SYNC: self.clock_synced,
            K_PREV: self.prev,
            K_KIND: self.kind,
            K_MEASUREMENTS: [m.to_cbor_record() for m in self.measurements],
        }
        if self.event is not None:
            body[K_EVENT] = dict(self.event)
        if self.gap is not None:
            body[K_GAP] = [self.gap.first, self.gap.last]
        if self.commitment is not None:
            body[K_COMMITMENT] = self.commitment
        return cbor.encode(body)

    @classmethod
    def from_payload(cls, payload: bytes) -> Reading:
        """Parse and check a payload; raise MalformedError for anything wire format v1 forbids.

        A map that repeats a key (RFC 8949 §5.6) is named as such (code ``duplicate_key``),
        whichever other rule the value cbor2 kept happens to break first."""
        try:
            return cls._parse(payload)
        except MalformedError as exc:
            if exc.code != "not_cbor":
                cbor.check_unique_keys(payload, what="reading payload")
            raise

    @classmethod
    def _parse(cls, payload: bytes) -> Reading:
        # Held to its deterministic encoding at the end, which no repeated map key passes:
        # the scan for repeated keys runs only for a payload that failed.
        body = cbor.decode(payload, what="reading payload", deterministic=True)
        if not isinstance(body, dict):
            raise MalformedError("reading payload must be a CBOR map", code="bad_payload")
        keys = set(body)
        if not keys <= _KNOWN:
            raise MalformedError(f"unknown payload keys {sorted(keys - _KNOWN, key=repr)}",
                                 code="bad_payload")
        if not keys >= _REQUIRED:
            raise MalformedError(f"payload lacks keys {sorted(_REQUIRED - keys)}",
                                 code="bad_payload")
        if body[K_VERSION] != FORMAT_VERSION or isinstance(body[K_VERSION], bool):
            raise MalformedError(f"unsupported format version {body[K_VERSION]!r}",
                                 code="bad_version")
        records = body[K_MEASUREMENTS]
        if not isinstance(records, list):
            raise MalformedError("measurements must be a CBOR array", code="bad_payload")
        gap = None
        if K_GAP in body:  # present means a range: null is not "absent"
            gap_raw = body[K_GAP]
            if not (isinstance(gap_raw, list) and len(gap_raw) == 2):
                raise MalformedError("gap must be [first, last]", code="bad_payload")
            try:
                _check_uint(gap_raw[0], "gap first", MAX_SEQ)
                _check_uint(gap_raw[1], "gap last", MAX_SEQ)
                gap = Gap(gap_raw[0], gap_raw[1])
            except MalformedError as exc:
                raise MalformedError(str(exc), code="bad_payload") from None
        if K_COMMITMENT in body and not isinstance(body[K_COMMITMENT], bytes):
            raise MalformedError("commitment must be a byte string", code="bad_payload")
        event = body.get(K_EVENT)
        if K_EVENT in body and not isinstance(event, dict):
            raise MalformedError("event must be a CBOR map", code="bad_payload")
        try:
            reading = cls(
                device_id=body[K_DEVICE],
                seq=body[K_SEQ],
                boot=body[K_BOOT],
                time_ms=body[K_TIME],
                clock_synced=body[K_SYNC],
                prev=body[K_PREV],
                kind=body[K_KIND],
                measurements=tuple(Measurement.from_cbor_record(r) for r in records),
                event=event,
                gap=gap,
                commitment=body.get(K_COMMITMENT),
            )
        except MalformedError as exc:
            raise MalformedError(str(exc), code="bad_payload") from None
        if not cbor.is_deterministic(payload, body):
            raise MalformedError("payload is not deterministically encoded CBOR",
                                 code="not_deterministic")
        return reading


def _check_uint(value: object, what: str, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise MalformedError(f"{what} must be an integer in 0..{maximum}, got {value!r}")


def _check_event(event: Mapping[str, Value]) -> dict[str, Value]:
    if not isinstance(event, Mapping):
        raise MalformedError("event must be a mapping")
    if len(event) > MAX_EVENT_FIELDS:
        raise MalformedError(f"event has more than {MAX_EVENT_FIELDS} fields")
    out: dict[str, Value] = {}
    for key, value in event.items():
        # Keys shorter than 24 bytes keep length-first and bytewise key order identical.
        if not isinstance(key, str) or not 0 < len(key.encode()) < 24:
            raise MalformedError(f"event key {key!r} must be text of 1-23 bytes")
        if isinstance(value, str):
            if len(value) > 256:
                raise MalformedError(f"event field {key!r} is longer than 256 characters")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise MalformedError(f"event field {key!r} is not finite")
        elif not isinstance(value, int):  # bool is an int
            raise MalformedError(f"event field {key!r} has unsupported type {type(value).__name__}")
        out[key] = value
    return out
