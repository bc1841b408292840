"""A proof file across a collector key rotation, built by hand: for the tests of
``verify-proof`` and of the in-browser check alike."""

from __future__ import annotations

from provenance.checkpoint import Checkpoint, sign_checkpoint
from provenance.keys import PrivateKey
from provenance.logproof import EnrolmentProof, LogProof
from provenance.merkle import RFC9162_SHA256, inclusion_proof, root
from provenance.note import EcdsaNoteSigner, Ed25519NoteSigner
from provenance.statement import KeyRotation, key_rotation_statement, sign_statement
from tests.support.collector import Device


def rotated_log_proof(signer: PrivateKey, new_key: PrivateKey, origin: str) -> bytes:
    """A two-leaf log: a key-rotate statement signed by ``signer`` naming ``new_key``, then a
    reading; the proof of the reading against a checkpoint signed by the new keys."""
    new_note = Ed25519NoteSigner.generate(origin)
    statement = sign_statement(key_rotation_statement(
        1, 1_000, KeyRotation(new_key.public, new_note.verifier.vkey)), signer)
    dev = Device("unit-01")
    reading = dev.next()
    leaves = [RFC9162_SHA256.hash_leaf(e) for e in (statement, reading)]
    note = sign_checkpoint(Checkpoint(origin, 2, root(leaves)),
                           [new_note, EcdsaNoteSigner(origin, new_key)])
    return LogProof(reading, dev.key.public.der, 1, tuple(inclusion_proof(leaves, 1)), note,
                    rotations=(EnrolmentProof(statement, 0,
                                              tuple(inclusion_proof(leaves, 0))),)).encode()
