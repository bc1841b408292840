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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .merkle import RFC9162_SHA256, Hasher, SubtreeRangeError

__all__ = ["CompactRange", "Node", "fold", "frontier_nodes", "range_nodes", "subtree_from_nodes"]

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
        hash_children = self._hasher.hash_children
        size = self.size
        for leaf in leaf_hashes:
            node, level, index = leaf, 0, size
            add((0, index, node))
            c = size
            while c & 1:
                node = hash_children(stack.pop(), node)
                level += 1
                index >>= 1
                c >>= 1
                add((level, index, node))
            stack.append(node)
            size += 1
        self.size = size
        return new

    def root(self) -> bytes:
        return fold(self.hashes, hasher=self._hasher)
