"""Upgrade a format 1 ledger in place to one log tree, crash-safely.

A format 1 ledger has one Merkle tree per block. ``migrate`` builds the one RFC 9162 tree over
every sealed reading in ledger order (reading id order), in chunks, each chunk's perfect nodes
and the new tree size committed in one transaction; then it signs a checkpoint for the head.
Killed at any point, it resumes from the last committed tree size (the tree's right edge is
read back from the stored nodes) and never signs a second checkpoint for a size. The format 1
block headers stay stored and audited; blocks sealed afterwards are format 2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from collector.ledger.logkeys import (
    checkpoint_signers,
    ensure_log_keys,
    load_note_key,
    note_key_path,
)
from collector.ledger.records import CheckpointRecord
from collector.ledger.store import LedgerStore
from provenance.checkpoint import Checkpoint, sign_checkpoint
from provenance.keys import PrivateKey
from provenance.merkle import RFC9162_SHA256

__all__ = ["MigrationResult", "migrate_ledger"]

CHUNK = 65_536


@dataclass(frozen=True, slots=True)
class MigrationResult:
    origin: str
    vkeys: list[str]
    tree_size: int
    added: int  # leaves added by this run
    checkpoint: CheckpointRecord | None
    signed: bool  # this run signed the head checkpoint


async def migrate_ledger(store: LedgerStore, key: PrivateKey, key_file: str, *,
                         log_name: str, chunk: int = CHUNK) -> MigrationResult:
    """``log_name`` names the log if the ledger has no name yet."""
    origin = await store.log_origin()
    if origin is None:
        origin = log_name
        await store.set_log_identity(origin, ensure_log_keys(origin, key, Path(key_file)))
    signers = checkpoint_signers(origin, key, load_note_key(note_key_path(key_file)))
    last = await store.last_block()
    target = last.end_reading_id - 1 if last else 0
    size = await store.tree_size()
    start = size
    if size < target:
        tree = await store.compact_range(size)
        hash_leaf = RFC9162_SHA256.hash_leaf
        while tree.size < target:
            end = min(tree.size + chunk, target)
            leaves: list[bytes] = []
            async for rows in store.iter_readings(tree.size + 1, end + 1):
                leaves.extend(hash_leaf(r.envelope) for r in rows)
            if len(leaves) != end - tree.size:
                raise ValueError(f"readings {tree.size + 1}..{end} are not all stored; run "
                                 "`ledger-collector audit`")
            nodes = tree.append(leaves)
            await store.commit_tree(nodes, tree.size)
        size = tree.size
    cp = await store.checkpoint(size) if size else None
    signed = False
    if size and cp is None:
        root = await store.tree_root(size)
        note = sign_checkpoint(Checkpoint(origin, size, root), signers)
        assert last is not None
        cp = CheckpointRecord(size, root, note, last.height, time.time_ns() // 1_000_000)
        await store.commit_checkpoint(cp)
        signed = True
    return MigrationResult(origin, await store.log_vkeys(), size, size - start, cp, signed)
