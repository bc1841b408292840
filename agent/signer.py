"""Turning what a sensor produced into spool entries: signed readings, gap records, relays.

The :class:`ChainSigner` holds the device's chain head (next sequence number, hash of the last
envelope). It signs *provisionally*: the spool commits the envelopes and the new head in one
SQLite transaction, and only then calls :meth:`ChainSigner.advance`. If the commit fails the
head stays where it was, so a sequence number is never spent on a reading that is not on
disk. (A reading signed but not yet committed when the process dies was never published, so
signing that sequence number again after a restart cannot produce two different published
envelopes for one number.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from hardware.base import Sample
from provenance.envelope import Envelope, sign_reading
from provenance.errors import MalformedError
from provenance.keys import PrivateKey
from provenance.reading import GAP_KIND, GENESIS_PREV, Gap, Reading
from provenance.sealed_values import seal
from provenance.senml import Measurement, Value

from .clock import Clock
from .data_keys import ValueSealer

__all__ = [
    "ChainHead",
    "ChainSigner",
    "Draft",
    "Entry",
    "Relay",
    "draft_from_sample",
]


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where the device's hash chain stands: the next seq to use and the last envelope hash."""

    next_seq: int = 0
    prev: bytes = GENESIS_PREV


@dataclass(frozen=True, slots=True)
class Draft:
    """A reading of this device waiting for its sequence number and signature."""

    sensor: str
    kind: str
    time_ms: int
    clock_synced: bool
    measurements: tuple[Measurement, ...] = ()
    event: Mapping[str, Value] | None = None
    subject: str | None = None  # set: a private reading of this subject


@dataclass(frozen=True, slots=True)
class Relay:
    """An envelope a self-signing sensor made itself; relayed byte for byte."""

    sensor: str
    device_id: str
    seq: int
    envelope: bytes


@dataclass(frozen=True, slots=True)
class Entry:
    """One spool row: what is published, on which device's topic, in what order.
    ``envelope`` is the message as published: the signed envelope, or for a private reading
    the private message that holds it (provenance/private_message.py)."""

    device_id: str
    seq: int
    envelope: bytes
    is_gap: bool = False
    relayed: bool = False


def draft_from_sample(
    sensor: str, sample: Sample, time_ms: int, synced: bool, *, own_device_id: str = ""
) -> Draft | Relay:
    """Convert a driver's sample; raises ProvenanceError for content the wire format refuses."""
    if sample.envelope is not None:
        envelope = Envelope.decode(sample.envelope)
        reading = envelope.reading()
        if reading.device_id == own_device_id:
            # Its seqs would interleave with ours under one device id: equivocation to a
            # collector. A self-signing sensor needs an id of its own.
            raise MalformedError(
                f"relayed envelope claims this agent's own device id {own_device_id!r}")
        return Relay(sensor, reading.device_id, reading.seq, sample.envelope)
    if sample.refused is not None:
        # The driver could not build a measurement (a NaN register): refused like any
        # other content the wire format does not carry.
        raise MalformedError(sample.refused)
    measurements = tuple(sample.measurements)  # as before: a driver's list becomes a tuple
    # Build the reading once with placeholder chain fields so a bad sample is refused here,
    # at the sensor that produced it, rather than inside the spool transaction.
    Reading(device_id="check", seq=0, boot=0, time_ms=time_ms, clock_synced=synced,
            prev=GENESIS_PREV, kind=sample.kind, measurements=measurements, event=sample.event)
    return Draft(sensor, sample.kind, time_ms, synced, measurements, sample.event)


class ChainSigner:
    """Signs this device's readings and gap records in chain order."""

    def __init__(
        self, device_id: str, key: PrivateKey, boot: int, head: ChainHead, clock: Clock,
        *, sealer: ValueSealer | None = None,
    ) -> None:
        self.device_id = device_id
        self.key = key
        self.sealer = sealer
        self.boot = boot
        self.head = head
        self._clock = clock

    def sign(self, draft: Draft, head: ChainHead) -> tuple[Entry, ChainHead]:
        """Sign ``draft`` at ``head``; returns the entry and the head after it."""
        if draft.subject is not None:
            return self._sign_private(draft, head)
        reading = Reading(
            device_id=self.device_id, seq=head.next_seq, boot=self.boot, time_ms=draft.time_ms,
            clock_synced=draft.clock_synced, prev=head.prev, kind=draft.kind,
            measurements=draft.measurements, event=draft.event,
        )
        return self._seal(reading)

    def _sign_private(self, draft: Draft, head: ChainHead) -> tuple[Entry, ChainHead]:
        """A private reading: the device signs a salted commitment, the values are sealed."""
        if self.sealer is None or draft.subject is None:
            raise MalformedError("a private reading needs the agent's data keys")
        opening = seal(draft.measurements, draft.event)
        reading = Reading(
            device_id=self.device_id, seq=head.next_seq, boot=self.boot, time_ms=draft.time_ms,
            clock_synced=draft.clock_synced, prev=head.prev, kind=draft.kind,
            commitment=opening.commitment,
        )
        envelope = sign_reading(reading, self.key)
        message = self.sealer.message(envelope, draft.subject, opening)
        entry = Entry(self.device_id, reading.seq, message)
        return entry, ChainHead(reading.seq + 1, hashlib.sha256(envelope).digest())

    def sign_gap(self, first: int, last: int, head: ChainHead) -> tuple[Entry, ChainHead]:
        """A signed statement that seqs ``first..last`` were dropped from the spool."""
        reading = Reading(
            device_id=self.device_id, seq=head.next_seq, boot=self.boot,
            time_ms=self._clock.now_ms(), clock_synced=self._clock.synced, prev=head.prev,
            kind=GAP_KIND, gap=Gap(first, last),
        )
        return self._seal(reading)

    def _seal(self, reading: Reading) -> tuple[Entry, ChainHead]:
        envelope = sign_reading(reading, self.key)
        entry = Entry(self.device_id, reading.seq, envelope, is_gap=reading.is_gap)
        return entry, ChainHead(reading.seq + 1, hashlib.sha256(envelope).digest())

    def advance(self, head: ChainHead) -> None:
        """Adopt ``head`` once the entries signed up to it are committed."""
        self.head = head
