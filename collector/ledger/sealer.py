"""Sealing: turn committed readings into the next signed, hash-chained block.

The sealer keeps the committed-but-unsealed leaves in arrival order and says when a block is
due: when it holds ``size`` leaves, or its oldest leaf arrived ``age`` seconds ago (collector
clock: a device clock can be anything). ``seal`` computes the RFC 9162 root over the leaves,
signs the header with the collector key and returns the block record; the caller commits it and
only then calls ``sealed`` to drop the leaves and advance the chain head.

With a :class:`TreeLog` (every running collector has one) blocks are format 2: the leaves are
appended to the one log tree (its right edge, O(log n), kept here), the header states the tree
size before and after and the tree root after, and the record carries the perfect nodes the
leaves complete and a checkpoint signed for the new size, for the store to commit with the
block in one transaction. Work per block: O(block size + log n).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from collector.errors import StoreError
from collector.ledger.records import BlockRecord, CheckpointRecord, PendingLeaf
from provenance.block import BLOCK_FORMAT_VERSION_2, GENESIS_BLOCK_HASH, BlockHeader, SignedBlock
from provenance.checkpoint import Checkpoint, sign_checkpoint
from provenance.compact import CompactRange
from provenance.keys import PrivateKey
from provenance.merkle import root
from provenance.note import NoteSigner

__all__ = ["Sealer", "TreeLog"]


@dataclass(slots=True)
class TreeLog:
    """The log the sealer grows: its origin line, checkpoint signers and the tree's right edge
    (leaf index = reading id - 1)."""

    origin: str
    signers: Sequence[NoteSigner]
    tree: CompactRange


class Sealer:
    def __init__(self, key: PrivateKey, last_block: BlockRecord | None,
                 pending: Iterable[PendingLeaf], *, size: int, age_ms: int,
                 log: TreeLog | None = None) -> None:
        self._key = key
        self.log = log
        self._next_tree: CompactRange | None = None
        self.size = size
        self.age_ms = age_ms
        self.pending: deque[PendingLeaf] = deque(pending)
        if last_block is None:
            self.next_height, self.prev_hash, self._last_sealed_ms = 0, GENESIS_BLOCK_HASH, 0
        else:
            self.next_height = last_block.height + 1
            self.prev_hash = last_block.hash
            self._last_sealed_ms = last_block.sealed_ms

    @property
    def last_sealed_ms(self) -> int | None:
        """When the newest block (and, format 2, its checkpoint) was signed; None: never."""
        return self._last_sealed_ms or None

    @property
    def tree_size(self) -> int:
        """Leaves in the sealed log tree (0 without a :class:`TreeLog`)."""
        return self.log.tree.size if self.log is not None else 0

    def add(self, leaves: Iterable[PendingLeaf]) -> None:
        self.pending.extend(leaves)

    def due_ms(self) -> int | None:
        """Collector time (ms) at which the age rule seals the oldest pending leaf."""
        return self.pending[0].received_ms + self.age_ms if self.pending else None

    def is_due(self, now_ms: int) -> bool:
        due = self.due_ms()
        return len(self.pending) >= self.size or (due is not None and now_ms >= due)

    def seal(self, now_ms: int) -> BlockRecord:
        """The next block over up to ``size`` oldest pending leaves (not yet committed)."""
        count = min(self.size, len(self.pending))
        if count == 0:
            raise ValueError("nothing to seal")
        leaves = [self.pending[i] for i in range(count)]
        times = [leaf.time_ms for leaf in leaves]
        # Seal times never go backwards, even if the collector clock does (as Trillian refuses
        # non-increasing tree heads); readers may order blocks by it.
        sealed_ms = max(now_ms, self._last_sealed_ms)
        if self.log is not None:
            return self._seal_v2(leaves, min(times), max(times), sealed_ms)
        header = BlockHeader(
            height=self.next_height,
            prev_hash=self.prev_hash,
            merkle_root=root([leaf.leaf_hash for leaf in leaves]),
            leaf_count=count,
            first_time_ms=min(times),
            last_time_ms=max(times),
            sealed_at_ms=sealed_ms,
            collector_kid=self._key.kid,
        )
        block = SignedBlock.seal(header, self._key)
        return BlockRecord(
            height=header.height,
            hash=block.hash,
            header=block.raw,
            first_reading_id=leaves[0].reading_id,
            leaf_count=count,
            sealed_ms=sealed_ms,
        )

    def _seal_v2(self, leaves: list[PendingLeaf], first_ms: int, last_ms: int,
                 sealed_ms: int) -> BlockRecord:
        assert self.log is not None
        before = self.log.tree.size
        if leaves[0].reading_id != before + 1:
            raise StoreError(f"the log tree holds {before} leaves, but the next reading to seal "
                             f"is {leaves[0].reading_id}; run `ledger-collector audit`")
        tree = self.log.tree.copy()
        nodes = tree.append([leaf.leaf_hash for leaf in leaves])
        tree_root = tree.root()
        header = BlockHeader(
            height=self.next_height,
            prev_hash=self.prev_hash,
            merkle_root=tree_root,
            leaf_count=len(leaves),
            first_time_ms=first_ms,
            last_time_ms=last_ms,
            sealed_at_ms=sealed_ms,
            collector_kid=self._key.kid,
            version=BLOCK_FORMAT_VERSION_2,
            tree_size_before=before,
        )
        block = SignedBlock.seal(header, self._key)
        note = sign_checkpoint(Checkpoint(self.log.origin, tree.size, tree_root),
                               self.log.signers)
        self._next_tree = tree
        return BlockRecord(
            height=header.height,
            hash=block.hash,
            header=block.raw,
            first_reading_id=leaves[0].reading_id,
            leaf_count=len(leaves),
            sealed_ms=sealed_ms,
            nodes=tuple(nodes),
            checkpoint=CheckpointRecord(tree.size, tree_root, note, header.height, sealed_ms),
        )

    def sealed(self, block: BlockRecord) -> None:
        """``block`` is committed: drop its leaves and chain the next block to it."""
        if self.log is not None and self._next_tree is not None:
            self.log.tree, self._next_tree = self._next_tree, None
        for _ in range(block.leaf_count):
            self.pending.popleft()
        self.next_height = block.height + 1
        self.prev_hash = block.hash
        self._last_sealed_ms = block.sealed_ms
