"""Every mutation of every small proof fails: exhaustive over all trees of up to 64 leaves.

tests/provenance/test_merkle.py already checks that every inclusion proof at each (index, size)
and every consistency proof for each (m, n) up to 64 equals the naive reference tree's and
verifies (``test_every_small_tree_exhaustively``), samples the mutations below with hypothesis
in trees of up to 300 leaves, and substitutes every wrong index and size up to 24 leaves
(``test_wrong_sizes_rejected_exhaustively``). What it leaves out, and this file adds, is every
mutation at every position up to 64 leaves: a bit flip in each proof node, swapped roots, a
truncated or extended path, and an index or size shifted by one either way.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from provenance.merkle import (
    IndexOutOfRangeError,
    MerkleError,
    ProofLengthError,
    RootMismatchError,
    consistency_proof,
    inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

from .test_merkle import flip_bit, make_leaves, ref_mth, ref_path, ref_proof

MAX = 64
LEAVES = make_leaves(b"mutations", MAX + 2)
ROOTS = [ref_mth(LEAVES[:n]) for n in range(len(LEAVES) + 1)]
EXTRA_NODE = ref_mth(LEAVES[MAX:])


def _bit(*coordinates: int) -> int:
    """A bit position that moves around the hash as the case changes."""
    return (sum((i + 1) * c for i, c in enumerate(coordinates)) * 37) % 256


def _rejects(error: type[MerkleError], call: Callable[..., None], *args: object) -> None:
    with pytest.raises(error):
        call(*args)


@pytest.mark.parametrize("size", range(1, MAX + 1))
def test_every_inclusion_mutation_fails(size: int) -> None:
    tree = LEAVES[:size]
    root = ROOTS[size]
    checked = 0
    for index in range(size):
        leaf = tree[index]
        proof = inclusion_proof(tree, index)
        assert proof == ref_path(index, tree)
        verify_inclusion(index, size, leaf, proof, root)
        for at in range(len(proof)):  # a bit flip in each node
            bad = [*proof[:at], flip_bit(proof[at], _bit(size, index, at)), *proof[at + 1 :]]
            _rejects(RootMismatchError, verify_inclusion, index, size, leaf, bad, root)
        _rejects(RootMismatchError, verify_inclusion, index, size, flip_bit(leaf, 3), proof, root)
        _rejects(
            RootMismatchError, verify_inclusion, index, size, leaf, proof, flip_bit(root, 200)
        )
        if size > 1:  # swapped leaf and root (one leaf: they are the same hash)
            _rejects(RootMismatchError, verify_inclusion, index, size, root, proof, leaf)
            _rejects(ProofLengthError, verify_inclusion, index, size, leaf, proof[:-1], root)
            _rejects(ProofLengthError, verify_inclusion, index, size, leaf, proof[1:], root)
        extended = [*proof, EXTRA_NODE]
        _rejects(ProofLengthError, verify_inclusion, index, size, leaf, extended, root)
        _rejects(ProofLengthError, verify_inclusion, index, size, leaf, [EXTRA_NODE, *proof], root)
        for shifted in (index - 1, index + 1):  # a shifted index
            error = IndexOutOfRangeError if not 0 <= shifted < size else MerkleError
            _rejects(error, verify_inclusion, shifted, size, leaf, proof, root)
        for claim in (size - 1, size + 1):  # a shifted size, with that tree's real root
            if claim >= 1:
                _rejects(MerkleError, verify_inclusion, index, claim, leaf, proof, ROOTS[claim])
        checked += 1
    assert checked == size


@pytest.mark.parametrize("size2", range(2, MAX + 1))
def test_every_consistency_mutation_fails(size2: int) -> None:
    tree = LEAVES[:size2]
    root2 = ROOTS[size2]
    for size1 in range(1, size2):
        root1 = ROOTS[size1]
        proof = consistency_proof(tree, size1)
        assert proof == ref_proof(size1, tree)
        verify_consistency(size1, size2, root1, root2, proof)
        for at in range(len(proof)):  # a bit flip in each node
            bad = [*proof[:at], flip_bit(proof[at], _bit(size2, size1, at)), *proof[at + 1 :]]
            _rejects(RootMismatchError, verify_consistency, size1, size2, root1, root2, bad)
        for r1, r2 in ((flip_bit(root1, 9), root2), (root1, flip_bit(root2, 9)), (root2, root1)):
            _rejects(RootMismatchError, verify_consistency, size1, size2, r1, r2, proof)
        for bad in (proof[:-1], proof[1:], [*proof, EXTRA_NODE], [EXTRA_NODE, *proof]):
            _rejects(ProofLengthError, verify_consistency, size1, size2, root1, root2, bad)
        for c1, c2 in ((size1 - 1, size2), (size1 + 1, size2), (size1, size2 - 1),
                       (size1, size2 + 1)):
            if c1 == size1 and c2 == size2:
                continue
            r1 = ROOTS[c1] if 0 <= c1 <= len(LEAVES) else root1
            r2 = ROOTS[c2] if 0 <= c2 <= len(LEAVES) else root2
            _rejects(MerkleError, verify_consistency, c1, c2, r1, r2, proof)
