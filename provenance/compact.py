"""Perfect-subtree node positions of one growing RFC 9162 tree, and its compact range.

A log that keeps the hash of every *perfect* subtree, addressed by ``(level, index)`` (the node
over leaves ``[index * 2**level, (index + 1) * 2**level)``), can answer any inclusion or
consistency proof with O(log n) lookups: every subtree an RFC 9162 proof names (see
:func:`provenance.merkle.inclusion_nodes` and :func:`~provenance.merkle.consistency_nodes`)
is a run of perfect subtrees, folded from the right (:func:`range_nodes`, :func:`fold`).

:class:`CompactRange` is the tree's right edge: the perfect subtrees that make up the first
``size`` leaves, largest first. Appending leaves to it yields exactly the new perfect nodes, so
the sealer's work per block is O(block size + log n), and the root of the tree is the fold of
the range. Pure code: the caller stores and fetches the node hashes.

Storage in tiles, as C2SP tlog-tiles lays a tree out: only the nodes of levels 0, 8, 16, ...
are kept, 256 to a tile (tile level L, index I holds the level-8L nodes 256I .. 256I+255,
concatenated; the right-edge tile of each level is partial). Any perfect node of level 8L + r
is the root of 2^r consecutive level-8L nodes of one tile (:func:`tile_span`,
:func:`node_from_tile`). A 1,000-leaf block then writes about six tile rows instead of two
thousand node rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from .merkle import NODE_PREFIX, RFC9162_SHA256, Hasher, SubtreeRangeError

__all__ = ["TILE_HEIGHT", "TILE_WIDTH", "CompactRange", "Node", "fold", "frontier_nodes",
           "node_from_tile", "range_nodes", "subtree_from_nodes", "tile_entries", "tile_span"]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT

#: (level, index, hash) of one perfect subtree.
Node = tuple[int, int, bytes]


def range_nodes(begin: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees ``(level, index)`` that make up leaves ``[begin, end)``, left to right.

    Precondition: ``[begin, end)`` is a subtree of an RFC 9162 tree, i.e. ``begin`` is a
    multiple of the largest power of two below ``end - begin`` or equal to it (every range
    ``inclusion_nodes``/``consistency_nodes`` return is one); else :class:`SubtreeRangeError`.
    """
    if not 0 <= begin < end:
        raise SubtreeRangeError(begin, end, end)
    out: list[tuple[int, int]] = []
    start, left = begin, end - begin
    while left:
        level = left.bit_length() - 1
        if start % (1 << level):
            raise SubtreeRangeError(begin, end, end)
        out.append((level, start >> level))
        start += 1 << level
        left -= 1 << level
    return out


def frontier_nodes(size: int) -> list[tuple[int, int]]:
    """The perfect subtrees whose fold is the root of the tree of ``size`` leaves."""
    return range_nodes(0, size) if size else []


def fold(hashes: Sequence[bytes], *, hasher: Hasher = RFC9162_SHA256) -> bytes:
    """RFC 9162 hash of adjacent perfect subtrees (largest first), folded from the right."""
    if not hashes:
        return hasher.empty_root()
    node = hashes[-1]
    for left in reversed(hashes[:-1]):
        node = hasher.hash_children(left, node)
    return node


def subtree_from_nodes(begin: int, end: int, nodes: Mapping[tuple[int, int], bytes], *,
                       hasher: Hasher = RFC9162_SHA256) -> bytes:
    """Hash of the subtree ``[begin, end)`` from stored perfect-node hashes (KeyError if one
    is missing)."""
    return fold([nodes[p] for p in range_nodes(begin, end)], hasher=hasher)


def tile_span(level: int, index: int) -> tuple[int, int, int, int]:
    """Where node ``(level, index)`` lives: (tile level, tile index, first entry, entry count)."""
    tile_level, r = divmod(level, TILE_HEIGHT)
    first = index << r
    return tile_level, first >> TILE_HEIGHT, first % TILE_WIDTH, 1 << r


def node_from_tile(tile: bytes, first: int, count: int, *,
                   hasher: Hasher = RFC9162_SHA256) -> bytes | None:
    """The perfect node over entries ``first .. first + count - 1`` of a tile; None if the tile
    does not hold them all yet."""
    size = hasher.size
    if len(tile) < (first + count) * size:
        return None
    entries = [tile[i * size:(i + 1) * size] for i in range(first, first + count)]
    while len(entries) > 1:
        entries = [hasher.hash_children(entries[i], entries[i + 1])
                   for i in range(0, len(entries), 2)]
    return entries[0]


def tile_entries(nodes: Iterable[Node]) -> dict[tuple[int, int], list[tuple[int, bytes]]]:
    """The stored entries among ``nodes``: (tile level, tile index) -> [(entry, hash)], in
    order."""
    out: dict[tuple[int, int], list[tuple[int, bytes]]] = {}
    for level, index, digest in nodes:
        if level % TILE_HEIGHT:
            continue
        key = (level // TILE_HEIGHT, index >> TILE_HEIGHT)
        out.setdefault(key, []).append((index % TILE_WIDTH, digest))
    for entries in out.values():
        entries.sort()
    return out


class CompactRange:
    """The right edge of a tree of ``size`` leaves: its perfect subtrees, largest first."""

    __slots__ = ("_hasher", "hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = (), *,
                 hasher: Hasher = RFC9162_SHA256) -> None:
        if size < 0 or len(hashes) != bin(size).count("1"):
            raise ValueError(f"a compact range of {size} leaves has {bin(size).count('1')} "
                             f"nodes, not {len(hashes)}")
        self.size = size
        self.hashes = list(hashes)
        self._hasher = hasher

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.hashes, hasher=self._hasher)

    def append(self, leaf_hashes: Iterable[bytes]) -> list[Node]:
        """Append leaves; return every perfect node they complete, leaves (level 0) included."""
        new: list[Node] = []
        add = new.append
        stack = self.hashes
        pop, push = stack.pop, stack.append
        size = self.size
        if type(self._hasher) is Hasher:
            # RFC 9162 SHA-256 node hashes inline, as merkle._fold: the sealer runs this for
            # every reading, and the method call per node costs as much as the hash.
            sha256, prefix = hashlib.sha256, NODE_PREFIX
            for leaf in leaf_hashes:
                node, level, index, c = leaf, 0, size, size
                add((0, index, node))
                while c & 1:
                    node = sha256(prefix + pop() + node).digest()
                    level += 1
                    index >>= 1
                    c >>= 1
                    add((level, index, node))
                push(node)
                size += 1
        else:
            hash_children = self._hasher.hash_children
            for leaf in leaf_hashes:
                node, level, index, c = leaf, 0, size, size
                add((0, index, node))
                while c & 1:
                    node = hash_children(pop(), node)
                    level += 1
                    index >>= 1
                    c >>= 1
                    add((level, index, node))
                push(node)
                size += 1
        self.size = size
        return new

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaves, keeping only the right edge: :meth:`append` without the list of
        completed nodes (for a reader that recomputes a tree only to compare its roots)."""
        if type(self._hasher) is not Hasher:
            self.append(leaf_hashes)
            return
        stack = self.hashes
        pop, push = stack.pop, stack.append
        sha256, prefix = hashlib.sha256, NODE_PREFIX
        size = self.size
        for node in leaf_hashes:
            c = size
            while c & 1:
                node = sha256(prefix + pop() + node).digest()
                c >>= 1
            push(node)
            size += 1
        self.size = size

    def root(self) -> bytes:
        return fold(self.hashes, hasher=self._hasher)
