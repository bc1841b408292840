"""The checkpoint example of docs/wire-format.md, from fixed keys and the example envelope."""

from __future__ import annotations

import hashlib

from provenance import merkle
from provenance.checkpoint import Checkpoint, sign_checkpoint
from provenance.envelope import sign_reading
from provenance.note import EcdsaNoteSigner, Ed25519NoteSigner

from .samples import EXAMPLE_COLLECTOR_KEY, EXAMPLE_DEVICE_KEY, example_reading

EXAMPLE_ORIGIN = "sensorledger.example/water-busan"

#: The documented example note key: Ed25519 seed = SHA-256 of a fixed phrase.
EXAMPLE_NOTE_KEY = Ed25519NoteSigner(
    EXAMPLE_ORIGIN, hashlib.sha256(b"sensorledger example note key").digest()
)
#: The collector's P-256 key signing notes as type 0x02, with RFC 6979 nonces.
EXAMPLE_COLLECTOR_NOTE_KEY = EcdsaNoteSigner(
    EXAMPLE_ORIGIN, EXAMPLE_COLLECTOR_KEY, deterministic=True
)


def example_checkpoint() -> Checkpoint:
    """A one-leaf tree whose leaf is the documented example envelope."""
    envelope = sign_reading(example_reading(), EXAMPLE_DEVICE_KEY, deterministic=True)
    return Checkpoint(EXAMPLE_ORIGIN, 1, merkle.root([merkle.RFC9162_SHA256.hash_leaf(envelope)]))


def example_checkpoint_note() -> bytes:
    return sign_checkpoint(example_checkpoint(), [EXAMPLE_NOTE_KEY, EXAMPLE_COLLECTOR_NOTE_KEY])
