"""The witness's decision for one ``add-checkpoint`` request (c2sp.org/tlog-witness), without
HTTP: request bytes in, a status code and a body out.

The order of checks and the status codes are the specification's: 400 a malformed request or
an old size above the checkpoint's; 404 a log not configured; 403 no signature of a trusted
log key, or a trusted key's signature that fails; 409 an old size other than the size last
cosigned (the body is that size, ``text/x.tlog.size``); 422 a consistency proof that does not
verify, a proof with old size 0, a same-size checkpoint with another root, or an empty tree
with a root other than the empty tree's. Otherwise the new checkpoint is stored durably and
only then the cosignature is returned.

A checkpoint that contradicts the one held (same size and another root, or a proof that shows
its tree does not start with the held one) is kept as a proof of misbehaviour
(:mod:`provenance.misbehaviour`), signed by the witness.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from provenance.checkpoint import SignedCheckpoint, open_checkpoint, parse_checkpoint
from provenance.cosignature import CosignatureSigner
from provenance.errors import (
    NoteSignatureError,
    ProvenanceError,
    UnverifiedNoteError,
)
from provenance.merkle import RFC9162_SHA256, MerkleError, verify_consistency
from provenance.misbehaviour import detect, sign_misbehaviour
from provenance.note import Note, NoteVerifier, parse_note
from provenance.witnessproto import SIZE_CONTENT_TYPE, parse_add_checkpoint
from witness.state import LogState, State

__all__ = ["Reply", "Witness"]

log = logging.getLogger("witness")


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


def _text(status: int, message: str) -> Reply:
    return Reply(status, (message.rstrip("\n") + "\n").encode())


class Witness:
    """Cosigns checkpoints of the configured logs that extend the last one it cosigned."""

    def __init__(self, signer: CosignatureSigner, logs: Mapping[str, Sequence[NoteVerifier]],
                 state: State, *, clock: Callable[[], float] = time.time) -> None:
        self.signer = signer
        self.logs = {origin: list(keys) for origin, keys in logs.items()}
        self.state = state
        self.clock = clock
        self.reporter = signer.note_signer()

    def add_checkpoint(self, body: bytes) -> Reply:
        try:
            request = parse_add_checkpoint(body)
            note = parse_note(request.checkpoint)
            origin = parse_checkpoint(note.text).origin
        except ProvenanceError as exc:
            return _text(400, exc.diagnostics())
        keys = self.logs.get(origin)
        if keys is None:
            return _text(404, f"this witness does not witness log {origin!r}")
        try:
            signed = open_checkpoint(request.checkpoint, keys)
        except (NoteSignatureError, UnverifiedNoteError) as exc:
            return _text(403, exc.diagnostics())
        except ProvenanceError as exc:
            return _text(400, exc.diagnostics())
        cp = signed.checkpoint
        if request.old_size > cp.size:
            return _text(400, f"old size {request.old_size} is above the checkpoint's "
                              f"size {cp.size}")
        if cp.size == 0 and cp.root != RFC9162_SHA256.empty_root():
            return _text(422, "a checkpoint of size 0 must have the empty tree's root")
        with self.state.transaction() as txn:
            held = txn.latest(origin)
            held_size = held.size if held is not None else 0
            if request.old_size != held_size:
                return Reply(409, f"{held_size}\n".encode(), SIZE_CONTENT_TYPE)
            if request.old_size == 0 and request.proof:
                return _text(422, "a consistency proof from size 0 must be empty")
            if held is not None:
                refused = self._check_extends(held, signed, request.proof)
                if refused is not None:
                    evidence = self._evidence(held, signed, request.proof, keys)
                    if evidence is not None:
                        txn.record_misbehaviour(origin, evidence[0], evidence[1])
                        log.warning("misbehaviour of log %s: %s kept", origin, evidence[0])
                    return _text(422, refused)
            cosignature = self.signer.cosign(note.text, int(self.clock()))
            txn.store(LogState(origin, cp.size, cp.root, request.checkpoint, cosignature.line()))
        # Committed (synchronous=FULL): only now may the cosignature leave.
        return _text(200, cosignature.line())

    @staticmethod
    def _check_extends(held: LogState, offered: SignedCheckpoint, proof: Sequence[bytes]
                       ) -> str | None:
        cp = offered.checkpoint
        if held.size == cp.size:
            if proof:
                return "a consistency proof between equal sizes must be empty"
            if held.root != cp.root:
                return (f"this witness cosigned size {cp.size} with another root "
                        f"({held.root.hex()[:16]}…): a split view")
            return None
        if held.size == 0:
            return None  # the empty tree is a prefix of every tree
        try:
            verify_consistency(held.size, cp.size, held.root, cp.root, proof)
        except MerkleError as exc:
            return f"the consistency proof {held.size} -> {cp.size} does not verify: " + (
                exc.diagnostics())
        return None

    def _evidence(self, held: LogState, offered: SignedCheckpoint, proof: Sequence[bytes],
                  keys: Sequence[NoteVerifier]) -> tuple[str, bytes] | None:
        try:
            held_signed = open_checkpoint(held.checkpoint, keys)
        except ProvenanceError:
            return None  # the log's key changed in our config since; not self-contained now
        found = detect(held_signed, offered, proof, keys, int(self.clock()))
        if found is None:
            return None
        return found.kind, sign_misbehaviour(found, self.reporter)

    def latest_note(self, origin: str) -> bytes | None:
        """The latest cosigned checkpoint of ``origin`` with the log's verified signatures and
        this witness's cosignature (the tlog-witness monitoring view)."""
        held = self.state.latest(origin)
        keys = self.logs.get(origin)
        if held is None or keys is None:
            return None
        try:
            signed = open_checkpoint(held.checkpoint, keys)
        except ProvenanceError:
            return None
        own = parse_note(held.checkpoint.split(b"\n\n")[0] + b"\n\n"
                         + held.cosignature.encode() + b"\n").signatures
        return Note(signed.note.text, (*signed.note.verified, *own)).to_bytes()


