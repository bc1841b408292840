"""Proofs built from the store: one reading's inclusion, and consistency between tree sizes.

Format 2 (a reading in the log tree): the audit path is read from the stored perfect-subtree
nodes at the positions :func:`provenance.merkle.inclusion_nodes` names, O(log n) rows whatever
the size of the ledger, against a stored signed checkpoint (the latest by default). Format 1
(a ledger not migrated yet): the path inside the reading's block, hashed from its envelopes.
"""

from __future__ import annotations

import base64

from collector.errors import NotFoundError, StoreError
from collector.ledger.records import CheckpointRecord
from collector.ledger.store import LedgerStore
from provenance.block import SignedBlock
from provenance.envelope import Envelope
from provenance.errors import ProvenanceError
from provenance.logproof import EnrolmentProof, LogProof
from provenance.merkle import RFC9162_SHA256, consistency_nodes, inclusion_nodes, subtree_hash
from provenance.note import Note, parse_note
from provenance.prooffile import ProofFile
from provenance.statement import ENROL, KEY_ROTATE, SignedStatement

__all__ = ["build_consistency", "build_log_proof", "build_proof", "consistency_text",
           "cosigned_note", "pick_checkpoint", "pick_cosigned"]


async def pick_checkpoint(store: LedgerStore, size: int | None) -> CheckpointRecord:
    cp = await store.checkpoint(size)
    if cp is None:
        raise NotFoundError("the ledger has no checkpoint yet (none sealed, or run "
                            "`ledger-collector migrate`)" if size is None
                            else f"the ledger has no checkpoint of tree size {size}")
    return cp


async def cosigned_note(store: LedgerStore, cp: CheckpointRecord) -> bytes:
    """The checkpoint's signed note with every witness cosignature kept for its size."""
    lines = [line for _, line in await store.cosignatures(cp.size)]
    if not lines:
        return cp.note
    note = parse_note(cp.note)
    extra = tuple(parse_note(note.text.encode() + b"\n" + line.encode() + b"\n").signatures[0]
                  for line in lines)
    return Note(note.text, note.signatures + extra).to_bytes()


async def pick_cosigned(store: LedgerStore, quorum: int, size: int | None = None,
                        at_least: int = 0) -> CheckpointRecord:
    """The checkpoint a proof should use: of ``size`` when given; else the freshest one that
    ``quorum`` witnesses cosigned and that covers ``at_least`` leaves; else (none cosigned
    yet, or no witnesses: ``quorum`` 0) the latest."""
    if size is None and quorum > 0:
        found = await store.freshest_cosigned(quorum, at_least)
        if found is not None:
            return await pick_checkpoint(store, found)
    return await pick_checkpoint(store, size)


async def build_proof(store: LedgerStore, device_id: str, seq: int, *,
                      size: int | None = None, quorum: int = 0) -> ProofFile | LogProof:
    """Format 2 once the reading is in the log tree; format 1 for an unmigrated ledger."""
    reading = await store.find_reading(device_id, seq)
    if reading is None:
        raise NotFoundError(f"the ledger holds no reading {device_id} seq {seq}")
    if reading.id <= await store.tree_size():
        return await build_log_proof(store, device_id, seq, size=size, quorum=quorum)
    block = await store.block_of_reading(reading.id)
    if block is None:
        raise NotFoundError(
            f"reading {device_id} seq {seq} is stored but not sealed into a block yet; "
            "try again after the next block is sealed"
        )
    envelopes = await store.block_envelopes(block)
    if len(envelopes) != block.leaf_count:
        raise StoreError(f"block {block.height} has {len(envelopes)} of its "
                         f"{block.leaf_count} readings; run `ledger-collector audit`")
    index = reading.id - block.first_reading_id
    leaves = [RFC9162_SHA256.hash_leaf(e) for e in envelopes]
    path = [subtree_hash(leaves, begin, end) for begin, end in inclusion_nodes(index, len(leaves))]
    return ProofFile(
        envelope=reading.envelope,
        device_public_key=await _device_key(store, reading.envelope, device_id, seq),
        leaf_index=index,
        audit_path=tuple(path),
        block=block.header,
        collector_kid=SignedBlock.decode(block.header).header.collector_kid,
    )


async def build_log_proof(store: LedgerStore, device_id: str, seq: int, *,
                          size: int | None = None, quorum: int = 0) -> LogProof:
    async with store.snapshot():
        reading = await store.find_reading(device_id, seq)
        if reading is None:
            raise NotFoundError(f"the ledger holds no reading {device_id} seq {seq}")
        index = reading.id - 1
        cp = await pick_cosigned(store, quorum, size, index + 1)
        if index >= cp.size:
            raise NotFoundError(f"reading {device_id} seq {seq} is leaf {index}, not in the "
                                f"checkpoint of tree size {cp.size}")
        path = await store.subtree_hashes(inclusion_nodes(index, cp.size))
        key = await _device_key(store, reading.envelope, device_id, seq)
        note = await cosigned_note(store, cp)
        enrolment = await _enrolment_proof(store, reading.envelope, key, index, cp.size)
        rotations = await rotation_proofs(store, cp.size)
    return LogProof(reading.envelope, key, index, tuple(path), note, enrolment,
                    rotations=rotations)


async def rotation_proofs(store: LedgerStore, size: int) -> tuple[EnrolmentProof, ...]:
    """The log's key-rotate statements in the tree of ``size``, with their audit paths: how a
    verifier trusting an earlier collector key reaches the key that signed the checkpoint.
    Only those whose new key signs the checkpoint (announced before its last leaf)."""
    out: list[EnrolmentProof] = []
    for row in await store.statements_of(KEY_ROTATE):
        if row.id >= size:  # a checkpoint of size id is still signed by the key it retires
            break
        path = await store.subtree_hashes(inclusion_nodes(row.id - 1, size))
        out.append(EnrolmentProof(row.envelope, row.id - 1, tuple(path)))
    return tuple(out)


async def _enrolment_proof(store: LedgerStore, envelope: bytes, key_der: bytes, index: int,
                           size: int) -> EnrolmentProof | None:
    """The statement that enrolled ``key_der`` (the key that signed ``envelope``) at a leaf
    before ``index``, with its audit path under the same tree size; one indexed lookup. None
    in a ledger from before enrolments were logged."""
    for row in await store.statements_of(ENROL, Envelope.decode(envelope).kid):
        if row.id - 1 >= index:
            break
        try:
            statement = SignedStatement.decode(row.envelope).statement
            if statement.type == ENROL and statement.enrolment().key.der == key_der:
                path = await store.subtree_hashes(inclusion_nodes(row.id - 1, size))
                return EnrolmentProof(row.envelope, row.id - 1, tuple(path))
        except ProvenanceError:
            continue  # a damaged statement proves nothing; `audit` names it
    return None


async def _device_key(store: LedgerStore, envelope: bytes, device_id: str, seq: int) -> bytes:
    kid = Envelope.decode(envelope).kid
    key = await store.device_key(kid)
    if key is None:
        raise StoreError(f"the key {kid.hex()} that signed {device_id} seq {seq} is missing "
                         "from the registry")
    return key.public_key_der


async def build_consistency(store: LedgerStore, old_size: int,
                            new_size: int | None) -> tuple[CheckpointRecord, list[bytes]]:
    """The RFC 9162 consistency proof from ``old_size`` to the checkpoint at ``new_size``
    (default: the latest), with that checkpoint."""
    async with store.snapshot():
        cp = await pick_checkpoint(store, new_size)
        if not 0 < old_size <= cp.size:
            raise NotFoundError(f"a consistency proof runs from a size in 1..{cp.size}, "
                                f"not {old_size}")
        return cp, await store.subtree_hashes(consistency_nodes(old_size, cp.size))


def consistency_text(old_size: int, proof: list[bytes]) -> str:
    """``old N`` and one base64 hash a line: the head of a tlog-witness add-checkpoint body."""
    return "".join(f"{line}\n" for line in [f"old {old_size}",
                                            *(base64.b64encode(h).decode() for h in proof)])
