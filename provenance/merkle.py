"""RFC 9162 (RFC 6962) Merkle trees: tree hashes, inclusion and consistency proofs.

Pure code: no storage, clock or network, and nothing beyond :mod:`hashlib`. The tree is the one
defined in RFC 9162 §2.1 (identical to RFC 6962 §2.1)::

    MTH({})      = SHA-256()                                  empty tree, no prefix
    MTH({d0})    = SHA-256(0x00 || d0)                         leaf
    MTH(D[0:n])  = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))  k = largest power of 2 < n

Functions here take *leaf hashes* (``Hasher.hash_leaf`` of the leaf data), never raw leaf data.

Proof generation comes in two layers, as in transparency-dev/merkle. ``inclusion_nodes`` and
``consistency_nodes`` only say which subtrees a proof needs, as half-open leaf ranges
``(begin, end)`` in the order the verifier consumes them; the caller fetches each range's hash
from its own store. ``inclusion_proof``, ``consistency_proof`` and ``subtree_hash`` do the same
over an in-memory list of every leaf hash, which is simple and O(n).

Verification functions return ``None`` or raise a :class:`MerkleError` subclass. Every check is
exact: the index must lie in the tree, hashes must be ``hasher.size`` bytes, and a proof must have
exactly the number of nodes the tree shape calls for (too long and too short are both refused).

Consistency proofs from size 0
------------------------------
We follow current transparency-dev/merkle and RFC 9162 §2.1.4, which defines
``PROOF(m, D[n])`` only for ``0 < m``: **every consistency check whose first size is 0 is
rejected**, ``(0, 0)`` included, whatever the proof and roots. Every tree extends the empty tree,
so such a check proves nothing, and a caller asking for one has almost certainly lost track of
its trusted size; failing loudly is the useful answer. (The older google/certificate-transparency
verifier accepted ``(0, 0)`` and ``(0, n)`` with an empty proof; we do not.)
``consistency_nodes`` and ``consistency_proof`` refuse ``size1 == 0`` for the same reason.

When ``0 < size1 == size2`` the proof must be empty and the check is plain byte equality of the
two roots; as in transparency-dev/merkle, their length is not checked in that case (equal bytes
are consistent with themselves whatever their length). In every other case root lengths are
checked.

What a proof does not bind
--------------------------
An inclusion or consistency proof is checked against the sizes the caller passes in; a proof for
one tree size can also verify for another size whose path has the same shape. Always take the
size and the root from the same signed tree head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from provenance.merkle_errors import (
    HashSizeError,
    IndexOutOfRangeError,
    MerkleError,
    ProofLengthError,
    RootMismatchError,
    SubtreeRangeError,
    TreeSizeError,
)

__all__ = [
    "HASH_SIZE",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "RFC9162_SHA256",
    "HashSizeError",
    "Hasher",
    "IndexOutOfRangeError",
    "MerkleError",
    "ProofLengthError",
    "RootMismatchError",
    "SubtreeRangeError",
    "TreeSizeError",
    "consistency_nodes",
    "consistency_proof",
    "inclusion_nodes",
    "inclusion_proof",
    "old_root_from_consistency",
    "root",
    "root_from_inclusion_proof",
    "subtree_hash",
    "verify_consistency",
    "verify_inclusion",
]

LEAF_PREFIX = b"\x00"
"""Domain-separation prefix of a leaf hash (RFC 9162 §2.1.1)."""

NODE_PREFIX = b"\x01"
"""Domain-separation prefix of an interior node hash (RFC 9162 §2.1.1)."""

HASH_SIZE = 32
"""Length in bytes of every hash produced by the SHA-256 tree hasher."""

_sha256 = hashlib.sha256


# --------------------------------------------------------------------------------------------
# Hasher
# --------------------------------------------------------------------------------------------


class Hasher:
    """The RFC 9162 SHA-256 tree hasher (domain-separated leaf and node hashes).

    Mirrors transparency-dev/merkle's ``LogHasher``: ``empty_root``, ``hash_leaf``,
    ``hash_children`` and ``size``.
    """

    __slots__ = ()

    @property
    def size(self) -> int:
        """Length in bytes of every hash this hasher produces."""
        return HASH_SIZE

    def empty_root(self) -> bytes:
        """Root of the empty tree: ``SHA-256()`` with no prefix."""
        return _EMPTY_ROOT

    def hash_leaf(self, data: bytes) -> bytes:
        """Leaf hash: ``SHA-256(0x00 || data)``."""
        return _sha256(LEAF_PREFIX + data).digest()

    def hash_children(self, left: bytes, right: bytes) -> bytes:
        """Interior node hash: ``SHA-256(0x01 || left || right)``.

        The children are used as given; their length is the caller's concern.
        """
        return _sha256(NODE_PREFIX + left + right).digest()

    def __repr__(self) -> str:
        return "Hasher(RFC 9162, SHA-256)"


_EMPTY_ROOT = _sha256(b"").digest()

RFC9162_SHA256 = Hasher()
"""The default hasher: RFC 9162 §2.1 with SHA-256."""


# --------------------------------------------------------------------------------------------
# Tree hashes
# --------------------------------------------------------------------------------------------


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _fold(leaf_hashes: Sequence[bytes], begin: int, end: int, hasher: Hasher) -> bytes:
    """MTH(leaf_hashes[begin:end]) in O(end - begin) time and O(log n) memory.

    After the c-th leaf is pushed, the stack holds the complete subtrees given by the binary
    digits of c (largest first). Folding what remains from right to left gives exactly the
    RFC tree, whose right edge is built from those decreasing powers of two.
    """
    if begin == end:
        return hasher.empty_root()
    size = hasher.size
    stack: list[bytes] = []
    push = stack.append
    pop = stack.pop
    if type(hasher) is Hasher:
        # RFC 9162 SHA-256 node hashes inline: the audit folds every stored leaf, and the
        # method call per node costs as much as the hash (the same bytes either way).
        sha256, node_prefix = _sha256, NODE_PREFIX
        for count, i in enumerate(range(begin, end), start=1):
            node = leaf_hashes[i]
            if len(node) != size:
                raise HashSizeError(f"leaf hash {i}", size, len(node))
            c = count
            while not c & 1:
                node = sha256(node_prefix + pop() + node).digest()
                c >>= 1
            push(node)
        node = pop()
        while stack:
            node = sha256(node_prefix + pop() + node).digest()
        return node
    hash_children = hasher.hash_children
    for count, i in enumerate(range(begin, end), start=1):
        node = leaf_hashes[i]
        if len(node) != size:
            raise HashSizeError(f"leaf hash {i}", size, len(node))
        c = count
        while not c & 1:
            node = hash_children(pop(), node)
            c >>= 1
        push(node)
    node = pop()
    while stack:
        node = hash_children(pop(), node)
    return node


def root(leaf_hashes: Sequence[bytes], *, hasher: Hasher = RFC9162_SHA256) -> bytes:
    """Merkle Tree Hash (RFC 9162 §2.1.1) of a list of leaf hashes.

    Preconditions: every element is ``hasher.size`` bytes (else :class:`HashSizeError`).
    An empty list gives ``hasher.empty_root()``. O(n) time, O(log n) extra memory.
    """
    return _fold(leaf_hashes, 0, len(leaf_hashes), hasher)


def subtree_hash(
    leaf_hashes: Sequence[bytes], begin: int, end: int, *, hasher: Hasher = RFC9162_SHA256
) -> bytes:
    """Merkle Tree Hash of the leaves ``leaf_hashes[begin:end]``, without copying them.

    Preconditions: ``0 <= begin <= end <= len(leaf_hashes)`` (else :class:`SubtreeRangeError`);
    every leaf hash in the range is ``hasher.size`` bytes. Use it to fill in the ranges returned
    by :func:`inclusion_nodes` and :func:`consistency_nodes`.
    """
    if not 0 <= begin <= end <= len(leaf_hashes):
        raise SubtreeRangeError(begin, end, len(leaf_hashes))
    return _fold(leaf_hashes, begin, end, hasher)


# --------------------------------------------------------------------------------------------
# Proof node positions
# --------------------------------------------------------------------------------------------


def inclusion_nodes(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges ``[begin, end)`` whose hashes form the audit path of leaf ``index``.

    RFC 9162 §2.1.3.1 ``PATH(index, D[0:size])``, ordered from the leaf's sibling up to the
    root's child, which is the order :func:`verify_inclusion` consumes them.

    Preconditions: ``0 <= index < size`` (else :class:`IndexOutOfRangeError`).
    """
    if not 0 <= index < size:
        raise IndexOutOfRangeError(index, size)
    nodes: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            nodes.append((mid, hi))
            hi = mid
        else:
            nodes.append((lo, mid))
            lo = mid
    nodes.reverse()
    return nodes


def consistency_nodes(size1: int, size2: int) -> list[tuple[int, int]]:
    """Leaf ranges ``[begin, end)`` whose hashes form the consistency proof from size1 to size2.

    RFC 9162 §2.1.4.1 ``PROOF(size1, D[0:size2]) = SUBPROOF(size1, D[0:size2], true)``, in the
    order :func:`verify_consistency` consumes them. Equal sizes give an empty proof.

    Preconditions: ``0 < size1 <= size2`` (else :class:`TreeSizeError`; see the module notes on
    why a first size of 0 is refused).
    """
    _check_consistency_sizes(size1, size2)
    siblings: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, size2, size1, True
    while True:
        n = hi - lo
        if m == n:
            if not whole:
                siblings.append((lo, hi))
            break
        k = _split(n)
        if m <= k:
            siblings.append((lo + k, hi))
            hi = lo + k
        else:
            siblings.append((lo, lo + k))
            lo += k
            m -= k
            whole = False
    siblings.reverse()
    return siblings


def inclusion_proof(
    leaf_hashes: Sequence[bytes], index: int, *, hasher: Hasher = RFC9162_SHA256
) -> list[bytes]:
    """Audit path for leaf ``index`` in the tree of all of ``leaf_hashes``.

    Preconditions: ``0 <= index < len(leaf_hashes)``; leaf hashes are ``hasher.size`` bytes.
    O(n): every leaf is hashed once.
    """
    return [_fold(leaf_hashes, b, e, hasher) for b, e in inclusion_nodes(index, len(leaf_hashes))]


def consistency_proof(
    leaf_hashes: Sequence[bytes], size1: int, *, hasher: Hasher = RFC9162_SHA256
) -> list[bytes]:
    """Consistency proof from the tree of the first ``size1`` leaves to the tree of all of them.

    Preconditions: ``0 < size1 <= len(leaf_hashes)``; leaf hashes are ``hasher.size`` bytes.
    O(n): every leaf is hashed at most once.
    """
    return [_fold(leaf_hashes, b, e, hasher) for b, e in consistency_nodes(size1, len(leaf_hashes))]


# --------------------------------------------------------------------------------------------
# Verification (RFC 9162 §2.1.3.2 and §2.1.4.2, in transparency-dev/merkle's bit form)
# --------------------------------------------------------------------------------------------


def _check_hash(what: str, value: bytes, hasher: Hasher) -> None:
    if len(value) != hasher.size:
        raise HashSizeError(what, hasher.size, len(value))


def _check_proof_hashes(proof: Sequence[bytes], hasher: Hasher) -> None:
    for i, node in enumerate(proof):
        _check_hash(f"proof node {i}", node, hasher)


def _check_consistency_sizes(size1: int, size2: int) -> None:
    if size1 < 0 or size2 < 0:
        raise TreeSizeError(
            f"tree sizes must not be negative (got size1={size1}, size2={size2})",
            size1=size1,
            size2=size2,
        )
    if size1 > size2:
        raise TreeSizeError(
            f"size1 ({size1}) is larger than size2 ({size2}): a log can only grow, so the "
            "older tree head must be the smaller one; check the order of the arguments",
            size1=size1,
            size2=size2,
        )
    if size1 == 0:
        raise TreeSizeError(
            f"a consistency proof from size 0 (to size {size2}) proves nothing and is refused "
            "(RFC 9162 §2.1.4); start from the first non-empty tree head you trust",
            size1=size1,
            size2=size2,
        )


def _decompose_inclusion(index: int, size: int) -> tuple[int, int]:
    """Split an audit path into (inner, border) counts.

    ``inner`` nodes lie below the point where the paths to ``index`` and to the last leaf
    part; ``border`` nodes are left siblings on the tree's right edge above that point.
    """
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(hasher: Hasher, seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, node in enumerate(proof):
        if (index >> i) & 1:
            seed = hasher.hash_children(node, seed)
        else:
            seed = hasher.hash_children(seed, node)
    return seed


def _chain_inner_right(hasher: Hasher, seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Like _chain_inner, but only the left siblings: rebuilds the old (smaller) root."""
    for i, node in enumerate(proof):
        if (index >> i) & 1:
            seed = hasher.hash_children(node, seed)
    return seed


def _chain_border_right(hasher: Hasher, seed: bytes, proof: Sequence[bytes]) -> bytes:
    for node in proof:
        seed = hasher.hash_children(node, seed)
    return seed


def root_from_inclusion_proof(
    index: int,
    size: int,
    leaf_hash: bytes,
    proof: Sequence[bytes],
    *,
    hasher: Hasher = RFC9162_SHA256,
) -> bytes:
    """Root implied by an audit path for leaf ``index`` in a tree of ``size`` leaves.

    Preconditions, checked in this order before any hashing: ``0 <= index < size``
    (:class:`IndexOutOfRangeError`); ``leaf_hash`` and every proof node are ``hasher.size``
    bytes (:class:`HashSizeError`); ``len(proof)`` is exactly the audit path length for
    ``(index, size)`` (:class:`ProofLengthError`).
    """
    if not 0 <= index < size:
        raise IndexOutOfRangeError(index, size)
    _check_hash("leaf hash", leaf_hash, hasher)
    inner, border = _decompose_inclusion(index, size)
    if len(proof) != inner + border:
        raise ProofLengthError(
            "inclusion", inner + border, len(proof), f"leaf {index} of a tree of size {size}"
        )
    _check_proof_hashes(proof, hasher)
    node = _chain_inner(hasher, leaf_hash, proof[:inner], index)
    return _chain_border_right(hasher, node, proof[inner:])


def verify_inclusion(
    index: int,
    size: int,
    leaf_hash: bytes,
    proof: Sequence[bytes],
    root: bytes,
    *,
    hasher: Hasher = RFC9162_SHA256,
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    Returns ``None`` on success. Raises :class:`IndexOutOfRangeError`, :class:`HashSizeError`
    (leaf hash, root or a proof node of the wrong length), :class:`ProofLengthError`, or
    :class:`RootMismatchError` (``expected`` is ``root``, ``calculated`` the proof's root).
    """
    calculated = root_from_inclusion_proof(index, size, leaf_hash, proof, hasher=hasher)
    _check_hash("root", root, hasher)
    if calculated != root:
        raise RootMismatchError(root, calculated)


def verify_consistency(
    size1: int,
    size2: int,
    root1: bytes,
    root2: bytes,
    proof: Sequence[bytes],
    *,
    hasher: Hasher = RFC9162_SHA256,
) -> None:
    """Check that the tree ``(size2, root2)`` is an append-only extension of ``(size1, root1)``.

    Preconditions: ``0 < size1 <= size2`` (:class:`TreeSizeError`; a first size of 0 is always
    refused, see the module notes). If ``size1 == size2`` the proof must be empty
    (:class:`ProofLengthError`) and ``root1 == root2`` (:class:`RootMismatchError`). Otherwise
    the proof must have exactly the RFC 9162 length (:class:`ProofLengthError`; an empty proof
    is always too short), roots and nodes must be ``hasher.size`` bytes
    (:class:`HashSizeError`), and both roots must be rebuilt from it
    (:class:`RootMismatchError`, ``what`` says which).
    """
    _check_consistency_sizes(size1, size2)
    shape = f"tree sizes {size1} -> {size2}"
    if size1 == size2:
        if proof:
            raise ProofLengthError("consistency", 0, len(proof), shape)
        if root1 != root2:
            raise RootMismatchError(root2, root1, what="root of equal-size trees")
        return
    if not proof:
        raise ProofLengthError("consistency", _consistency_length(size1, size2), 0, shape)
    _check_hash("root1", root1, hasher)
    _check_hash("root2", root2, hasher)

    inner, border = _decompose_inclusion(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1  # trailing zero bits of size1
    inner -= shift  # the lowest `shift` levels sit inside the old tree's complete subtree
    # The proof starts with the hash of the old tree's last complete subtree (2**shift leaves)
    # unless the whole old tree is that subtree, in which case root1 plays its part.
    start = 0 if size1 == 1 << shift else 1
    if len(proof) != start + inner + border:
        raise ProofLengthError("consistency", start + inner + border, len(proof), shape)
    _check_proof_hashes(proof, hasher)
    seed = root1 if start == 0 else proof[0]
    path = proof[start:]
    mask = (size1 - 1) >> shift

    hash1 = _chain_inner_right(hasher, seed, path[:inner], mask)
    hash1 = _chain_border_right(hasher, hash1, path[inner:])
    if hash1 != root1:
        raise RootMismatchError(root1, hash1, what="root1 (older tree)")

    hash2 = _chain_inner(hasher, seed, path[:inner], mask)
    hash2 = _chain_border_right(hasher, hash2, path[inner:])
    if hash2 != root2:
        raise RootMismatchError(root2, hash2, what="root2 (newer tree)")


def old_root_from_consistency(
    size1: int, size2: int, root2: bytes, proof: Sequence[bytes], *,
    hasher: Hasher = RFC9162_SHA256,
) -> bytes | None:
    """The root of the first ``size1`` leaves of the tree ``(size2, root2)`` that ``proof``
    shows, or ``None`` when it shows none.

    A consistency proof rebuilds both roots from the same nodes; when it rebuilds ``root2`` its
    nodes are (short of a SHA-256 collision) nodes of that tree, so the older root it rebuilds
    is the true root of that tree's first ``size1`` leaves. This is the evidence that a log
    signed two checkpoints that do not extend each other. ``None`` when ``size1`` is a power of
    two (the proof then leaves the older root out), the proof has the wrong length or does not
    rebuild ``root2``.
    """
    _check_consistency_sizes(size1, size2)
    if size1 == size2:
        return None
    inner, border = _decompose_inclusion(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    if size1 == 1 << shift or len(proof) != 1 + inner + border:
        return None
    _check_proof_hashes(proof, hasher)
    path = proof[1:]
    mask = (size1 - 1) >> shift
    old = _chain_border_right(hasher, _chain_inner_right(hasher, proof[0], path[:inner], mask),
                              path[inner:])
    new = _chain_border_right(hasher, _chain_inner(hasher, proof[0], path[:inner], mask),
                              path[inner:])
    return old if new == root2 else None


def _consistency_length(size1: int, size2: int) -> int:
    """Number of nodes in a consistency proof for ``0 < size1 < size2``."""
    inner, border = _decompose_inclusion(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    return (0 if size1 == 1 << shift else 1) + inner - shift + border
