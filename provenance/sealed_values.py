"""Private readings: the salted commitment a device signs, and the opening that proves it.

A private reading's signed payload carries ``commitment = SHA-256(salt || values)`` in place
of its measurements and event, where

* ``salt`` is 32 bytes from the operating system's CSPRNG, fresh for every reading, and
* ``values`` is the deterministic CBOR map ``{1: [SenML records], ?2: event}``.

The *opening* ``{1: salt, 2: values}`` (deterministic CBOR, ``values`` as a byte string so the
check is byte-exact) is what travels sealed for authorised readers (COSE_Encrypt0,
:mod:`provenance.cose_encrypt`) and what a disclosed proof file carries. Whoever holds the
opening can check it against the signed commitment; whoever does not learns nothing from the
commitment or from the device signature over it: with 256 random bits in the hash, trying all
31 SpO2 values confirms none of them (the pitfall an unsalted hash, or a signature over plain
values, falls into).

Pure: no I/O but ``os.urandom`` for salts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import cbor
from .errors import MalformedError, ProvenanceError
from .reading import COMMITMENT_SIZE, Reading
from .senml import Measurement, Value
from .wire import OpeningLabel as O

__all__ = [
    "SALT_SIZE",
    "CommitmentError",
    "Opening",
    "commit",
    "open_values",
    "seal",
]

SALT_SIZE = 32


class CommitmentError(ProvenanceError):
    """An opening does not match the commitment the device signed."""

    code = "commitment_mismatch"


def commit(salt: bytes, values: bytes) -> bytes:
    """The commitment to ``values`` under ``salt``: SHA-256(salt || values)."""
    return hashlib.sha256(salt + values).digest()


def encode_values(measurements: tuple[Measurement, ...],
                  event: Mapping[str, Value] | None) -> bytes:
    """The deterministic CBOR of a reading's measurements and event."""
    body: dict[int, Any] = {O.MEASUREMENTS: [m.to_cbor_record() for m in measurements]}
    if event is not None:
        body[O.EVENT] = dict(event)
    return cbor.encode(body)


@dataclass(frozen=True, slots=True)
class Opening:
    """The salt and the values of one private reading."""

    salt: bytes
    values: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.salt, bytes) or len(self.salt) != SALT_SIZE:
            raise MalformedError(f"an opening's salt must be {SALT_SIZE} bytes",
                                 code="bad_opening")
        if not isinstance(self.values, bytes):
            raise MalformedError("an opening's values must be a byte string", code="bad_opening")

    @property
    def commitment(self) -> bytes:
        return commit(self.salt, self.values)

    def encode(self) -> bytes:
        return cbor.encode({O.SALT: self.salt, O.VALUES: self.values})

    @classmethod
    def decode(cls, data: bytes) -> Opening:
        body = cbor.decode(data, what="opening", deterministic=True)
        if not isinstance(body, dict) or set(body) != {O.SALT, O.VALUES}:
            raise MalformedError("an opening is the CBOR map {1: salt, 2: values}",
                                 code="bad_opening")
        _deterministic(data, body, "opening")
        return cls(body[O.SALT], body[O.VALUES])

    def check(self, commitment: bytes | None) -> None:
        """Raise CommitmentError unless this opening is the one ``commitment`` commits to."""
        if commitment is None or len(commitment) != COMMITMENT_SIZE:
            raise CommitmentError("the signed reading carries no commitment to open")
        if not hmac.compare_digest(self.commitment, commitment):
            raise CommitmentError(
                "the values and salt do not hash to the commitment the device signed: they are "
                "not this reading's values")

    def reveal(self) -> tuple[tuple[Measurement, ...], dict[str, Value] | None]:
        """The measurements and event inside, checked as a reading's are."""
        return open_values(self.values)


def open_values(values: bytes) -> tuple[tuple[Measurement, ...], dict[str, Value] | None]:
    """Decode a values map (deterministic CBOR ``{1: records, ?2: event}``)."""
    body = cbor.decode(values, what="private values", deterministic=True)
    if not isinstance(body, dict) or O.MEASUREMENTS not in body or not set(body) <= {
            O.MEASUREMENTS, O.EVENT}:
        raise MalformedError("private values are the CBOR map {1: records, ?2: event}",
                             code="bad_opening")
    _deterministic(values, body, "private values")
    records = body[O.MEASUREMENTS]
    if not isinstance(records, list):
        raise MalformedError("private measurements must be an array", code="bad_opening")
    event = body.get(O.EVENT)
    if O.EVENT in body and not isinstance(event, dict):
        raise MalformedError("a private event must be a map", code="bad_opening")
    measurements = tuple(Measurement.from_cbor_record(r) for r in records)
    # The same checks a public reading's fields meet (event keys, sizes, finite numbers).
    checked = Reading(device_id="check", seq=0, boot=0, time_ms=0, clock_synced=False,
                      prev=bytes(32), kind="check", measurements=measurements, event=event)
    return checked.measurements, (dict(checked.event) if checked.event is not None else None)


def _deterministic(data: bytes, body: object, what: str) -> None:
    if not cbor.is_deterministic(data, body):
        raise MalformedError(f"{what} are not deterministically encoded CBOR",
                             code="bad_opening")


def seal(measurements: tuple[Measurement, ...], event: Mapping[str, Value] | None,
         *, salt: bytes | None = None) -> Opening:
    """A fresh opening for these values (a new random salt unless one is given, for vectors)."""
    return Opening(os.urandom(SALT_SIZE) if salt is None else salt,
                   encode_values(measurements, event))
