"""Decode, verify and parse an envelope in one call: what a test wants of a signed reading.

The collector verifies through :class:`collector.admission.verify.ReadingVerifier`, in batches;
nothing in the packages needs this one-envelope shortcut, so it lives with the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from provenance.envelope import Envelope
from provenance.keys import PublicKey
from provenance.reading import Reading

__all__ = ["SignedReading"]


@dataclass(frozen=True, slots=True)
class SignedReading:
    """A verified envelope and the reading it carries."""

    envelope: Envelope
    reading: Reading

    @classmethod
    def open(cls, data: bytes, key: PublicKey) -> SignedReading:
        """Decode, verify under ``key`` and parse."""
        envelope = Envelope.decode(data)
        envelope.verify(key)
        return cls(envelope, envelope.reading())
