"""The log tree's reads over stored tiles, for every store.

A store keeps the tree in tlog-tiles of height 8 (``tree_tiles``) and says how to read one tile
(``_tile``) and the tree's size; everything else a proof, a consistency proof or the sealer
needs — perfect nodes, subtree hashes, the right edge, roots, recorded leaf hashes — is worked
out here from those tiles, the same way for SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from collector.errors import StoreError
from provenance.compact import (
    CompactRange,
    fold,
    frontier_nodes,
    node_from_tile,
    range_nodes,
    tile_span,
)
from provenance.merkle import HASH_SIZE

__all__ = ["TreeReads", "tile_leaves"]


def tile_leaves(tile_index: int, tile: bytes, begin: int, end: int) -> dict[int, bytes]:
    """The leaf hashes a level-0 tile holds for leaf indexes ``[begin, end)``."""
    out: dict[int, bytes] = {}
    for entry in range(len(tile) // HASH_SIZE):
        index = (tile_index << 8) + entry
        if begin <= index < end:
            out[index] = bytes(tile[entry * HASH_SIZE:(entry + 1) * HASH_SIZE])
    return out


class TreeReads:
    """Mixin: the tree's reads, given the store's ``_tile`` and ``tree_size``."""

    async def _tile(self, level: int, index: int) -> bytes:
        raise NotImplementedError

    async def tree_size(self) -> int:
        raise NotImplementedError

    async def tree_tile(self, level: int, index: int) -> bytes:
        """The stored tile (tlog-tiles level ``level``, index ``index``): its hashes so far."""
        return await self._tile(level, index)

    async def tree_nodes(self, positions: Iterable[tuple[int, int]]) -> dict[tuple[int, int],
                                                                             bytes]:
        """Stored hashes of the perfect nodes at ``positions``; a missing one is a StoreError."""
        out: dict[tuple[int, int], bytes] = {}
        tiles: dict[tuple[int, int], bytes] = {}
        for level, index in positions:
            if (level, index) in out:
                continue
            tile_level, tile_index, first, count = tile_span(level, index)
            key = (tile_level, tile_index)
            if key not in tiles:
                tiles[key] = await self._tile(*key)
            node = node_from_tile(tiles[key], first, count)
            if node is None:
                raise StoreError(f"the log tree has no node at level {level} index {index}; "
                                 "run `ledger-collector audit`")
            out[(level, index)] = node
        return out

    async def subtree_hashes(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The hash of each RFC 9162 subtree ``[begin, end)`` from the stored perfect nodes."""
        wanted = [range_nodes(b, e) for b, e in ranges]
        nodes = await self.tree_nodes(p for positions in wanted for p in positions)
        return [fold([nodes[p] for p in positions]) for positions in wanted]

    async def compact_range(self, size: int | None = None) -> CompactRange:
        """The tree's right edge at ``size`` leaves (default: the whole tree)."""
        if size is None:
            size = await self.tree_size()
        positions = frontier_nodes(size)
        nodes = await self.tree_nodes(positions)
        return CompactRange(size, [nodes[p] for p in positions])

    async def tree_root(self, size: int) -> bytes:
        return (await self.compact_range(size)).root()
