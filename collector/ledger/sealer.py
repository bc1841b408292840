"""Sealing: turn committed readings into the next signed, hash-chained block.

The sealer keeps the committed-but-unsealed leaves in arrival order and says when a block is
due: when it holds ``size`` leaves, or its oldest leaf arrived ``age`` seconds ago (collector
clock: a device clock can be anything). ``seal`` computes the RFC 9162 root over the leaves,
signs the header with the collector key and returns the block record; the caller commits it and
only then calls ``sealed`` to drop the leaves and advance the chain head.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from collector.ledger.records import BlockRecord, PendingLeaf
from provenance.block import GENESIS_BLOCK_HASH, BlockHeader, SignedBlock
from provenance.keys import PrivateKey
from provenance.merkle import root

__all__ = ["Sealer"]


class Sealer:
    def __init__(self, key: PrivateKey, last_block: BlockRecord | None,
                 pending: Iterable[PendingLeaf], *, size: int, age_ms: int) -> None:
        self._key = key
        self.size = size
        self.age_ms = age_ms
        self.pending: deque[PendingLeaf] = deque(pending)
        if last_block is None:
            self.next_height, self.prev_hash, self._last_sealed_ms = 0, GENESIS_BLOCK_HASH, 0
        else:
            self.next_height = last_block.height + 1
            self.prev_hash = last_block.hash
            self._last_sealed_ms = last_block.sealed_ms

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

    def sealed(self, block: BlockRecord) -> None:
        """``block`` is committed: drop its leaves and chain the next block to it."""
        for _ in range(block.leaf_count):
            self.pending.popleft()
        self.next_height = block.height + 1
        self.prev_hash = block.hash
        self._last_sealed_ms = block.sealed_ms
