"""Proof files for single readings, built from the store.

The audit path is built from node positions (``inclusion_nodes``: which subtrees the path
needs), each subtree hashed from the envelopes of the reading's block (one indexed range read
and one hash per leaf): with 1,000-reading blocks that is about a millisecond, whatever the
size of the ledger, so no per-node hashes need to be stored. A store that keeps node hashes
would fetch the same positions instead.
"""

from __future__ import annotations

from collector.errors import NotFoundError, StoreError
from collector.ledger.store import LedgerStore
from provenance.block import SignedBlock
from provenance.envelope import Envelope
from provenance.merkle import RFC9162_SHA256, inclusion_nodes, subtree_hash
from provenance.prooffile import ProofFile

__all__ = ["build_proof"]


async def build_proof(store: LedgerStore, device_id: str, seq: int) -> ProofFile:
    reading = await store.find_reading(device_id, seq)
    if reading is None:
        raise NotFoundError(f"the ledger holds no reading {device_id} seq {seq}")
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
    kid = Envelope.decode(reading.envelope).kid
    key = await store.device_key(kid)
    if key is None:
        raise StoreError(f"the key {kid.hex()} that signed {device_id} seq {seq} is missing "
                         "from the registry")
    return ProofFile(
        envelope=reading.envelope,
        device_public_key=key.public_key_der,
        leaf_index=index,
        audit_path=tuple(path),
        block=block.header,
        collector_kid=SignedBlock.decode(block.header).header.collector_kid,
    )
