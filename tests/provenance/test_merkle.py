"""RFC 9162 Merkle tree: published vectors, transparency-dev probes, a naive reference tree.

Every expected value comes from tests/vectors/merkle_rfc6962.json or from the reference
implementation below, which follows the RFC 9162 §2.1 definitions literally (recursion and list
slicing, its own hashlib calls) and shares no code with provenance.merkle.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provenance import merkle
from provenance.errors import ProvenanceError
from provenance.merkle import (
    HASH_SIZE,
    LEAF_PREFIX,
    NODE_PREFIX,
    RFC9162_SHA256,
    HashSizeError,
    IndexOutOfRangeError,
    MerkleError,
    ProofLengthError,
    RootMismatchError,
    SubtreeRangeError,
    TreeSizeError,
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
    root,
    root_from_inclusion_proof,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)
from tests.conftest import standard_vectors

# --------------------------------------------------------------------------------------------
# Vector file
# --------------------------------------------------------------------------------------------

VECTORS_FILE = standard_vectors("merkle_rfc6962.json")


@functools.cache
def load_vectors(path: Path = VECTORS_FILE) -> dict[str, Any]:
    """The Merkle vector file; fails (never skips) with a clear message when it is missing."""
    if not path.is_file():
        pytest.fail(
            f"Merkle test vectors not found at {path} (committed in tests/vectors/); "
            "restore that file rather than skipping these tests.",
            pytrace=False,
        )
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def h(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text)


def hs(hex_list: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(x) for x in hex_list]


V = load_vectors()
LEAF_HASHES = hs(V["leaf_hashes"])
ROOTS = {r["tree_size"]: h(r["root"]) for r in V["roots"]}


def _ids(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda v: str(v[key])


def incl_id(v: dict[str, Any]) -> str:
    return f"leaf{v['leaf_index']}-of-{v['tree_size']}"


def cons_id(v: dict[str, Any]) -> str:
    return f"{v['size1']}-to-{v['size2']}"


# --------------------------------------------------------------------------------------------
# Naive reference tree, straight from RFC 9162 §2.1
# --------------------------------------------------------------------------------------------


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    """MTH over leaf hashes (the leaf hashing step is done by the caller)."""
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return d[0]
    k = ref_k(n)
    return ref_node(ref_mth(d[:k]), ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1."""
    n = len(d)
    if n == 1:
        return []
    k = ref_k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 §2.1.4.1."""
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = ref_k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


def make_leaves(seed: bytes, count: int) -> list[bytes]:
    """Distinct leaf hashes (distinct inputs), so no mutation can verify by coincidence."""
    return [ref_leaf(seed + i.to_bytes(4, "big")) for i in range(count)]


def flip_bit(value: bytes, bit: int) -> bytes:
    buf = bytearray(value)
    buf[(bit // 8) % len(buf)] ^= 1 << (bit % 8)
    return bytes(buf)


# --------------------------------------------------------------------------------------------
# Vector helper and module surface
# --------------------------------------------------------------------------------------------


def test_vectors_helper_fails_loudly_when_file_missing() -> None:
    with pytest.raises(pytest.fail.Exception, match="Merkle test vectors not found"):
        load_vectors(VECTORS_FILE.parent / "no-such-merkle-vectors.json")
    assert load_vectors()["leaf_hashes"]


def test_constants() -> None:
    assert LEAF_PREFIX == b"\x00"
    assert NODE_PREFIX == b"\x01"
    assert HASH_SIZE == 32
    assert RFC9162_SHA256.size == HASH_SIZE


def test_all_is_sorted_and_complete() -> None:
    # isort-style order, as ruff's RUF022 wants: CONSTANTS, then Classes, then functions.
    def kind(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert list(merkle.__all__) == sorted(merkle.__all__, key=kind)
    for name in merkle.__all__:
        assert hasattr(merkle, name), name


def test_error_family() -> None:
    for cls in (
        HashSizeError,
        IndexOutOfRangeError,
        ProofLengthError,
        RootMismatchError,
        SubtreeRangeError,
        TreeSizeError,
    ):
        assert issubclass(cls, MerkleError)
    assert issubclass(MerkleError, ProvenanceError)
    err = RootMismatchError(b"\x01" * 32, b"\x02" * 32)
    assert err.expected == b"\x01" * 32
    assert err.calculated == b"\x02" * 32
    assert ("01" * 32) in err.diagnostics()
    assert ("02" * 32) in err.diagnostics()


# --------------------------------------------------------------------------------------------
# Published vectors
# --------------------------------------------------------------------------------------------


def test_vector_file_shape() -> None:
    assert len(V["leaf_inputs"]) == len(V["leaf_hashes"]) == 8
    assert sorted(ROOTS) == list(range(9))


@pytest.mark.parametrize("i", range(len(V["leaf_inputs"])))
def test_leaf_hash_vectors(i: int) -> None:
    assert RFC9162_SHA256.hash_leaf(h(V["leaf_inputs"][i])) == LEAF_HASHES[i]


def test_empty_tree_root_vector() -> None:
    assert RFC9162_SHA256.empty_root() == h(V["empty_tree_root"])
    assert root([]) == h(V["empty_tree_root"])


@pytest.mark.parametrize("vec", V["hasher_vectors"], ids=_ids("desc"))
def test_hasher_vectors(vec: dict[str, Any]) -> None:
    if vec["kind"] == "empty":
        got = RFC9162_SHA256.empty_root()
    elif vec["kind"] == "leaf":
        got = RFC9162_SHA256.hash_leaf(h(vec["leaf_input"]))
    elif vec["kind"] == "node":
        got = RFC9162_SHA256.hash_children(h(vec["left"]), h(vec["right"]))
    else:
        pytest.fail(f"unknown hasher vector kind {vec['kind']!r}")
    assert got == h(vec["hash"])


@pytest.mark.parametrize("size", range(9))
def test_root_vectors(size: int) -> None:
    assert root(LEAF_HASHES[:size]) == ROOTS[size]
    assert subtree_hash(LEAF_HASHES, 0, size) == ROOTS[size]


def _node_hash_cases() -> list[tuple[int, int, str]]:
    cases = []
    level = 0
    while f"level{level}" in V["node_hashes"]:
        for i, value in enumerate(V["node_hashes"][f"level{level}"]):
            cases.append((level, i, value))
        level += 1
    return cases


def test_node_hash_vectors_present() -> None:
    assert len(_node_hash_cases()) == 8 + 4 + 2 + 1


@pytest.mark.parametrize(("level", "i", "value"), _node_hash_cases())
def test_node_hash_vectors(level: int, i: int, value: str) -> None:
    width = 1 << level
    assert subtree_hash(LEAF_HASHES, i * width, (i + 1) * width) == h(value)


@pytest.mark.parametrize(
    "vec",
    V["inclusion_proofs"]["vectors"],
    ids=incl_id,
)
def test_published_inclusion_proofs(vec: dict[str, Any]) -> None:
    index, size = vec["leaf_index"], vec["tree_size"]
    leaf_hash, want_root, path = h(vec["leaf_hash"]), h(vec["root"]), hs(vec["audit_path"])
    assert RFC9162_SHA256.hash_leaf(h(vec["leaf_input"])) == leaf_hash
    # Generation: our proof is the published one.
    assert inclusion_proof(LEAF_HASHES[:size], index) == path
    assert root(LEAF_HASHES[:size]) == want_root
    # Verification.
    verify_inclusion(index, size, leaf_hash, path, want_root)
    assert root_from_inclusion_proof(index, size, leaf_hash, path) == want_root


@pytest.mark.parametrize(
    "vec",
    V["consistency_proofs"]["vectors"],
    ids=cons_id,
)
def test_published_consistency_proofs(vec: dict[str, Any]) -> None:
    size1, size2 = vec["size1"], vec["size2"]
    root1, root2, proof = h(vec["root1"]), h(vec["root2"]), hs(vec["proof"])
    assert consistency_proof(LEAF_HASHES[:size2], size1) == proof
    assert root(LEAF_HASHES[:size1]) == root1
    assert root(LEAF_HASHES[:size2]) == root2
    verify_consistency(size1, size2, root1, root2, proof)


@pytest.mark.parametrize(
    "vec",
    V["derived_all_proofs"]["inclusion"],
    ids=incl_id,
)
def test_derived_inclusion_proofs(vec: dict[str, Any]) -> None:
    index, size, path = vec["leaf_index"], vec["tree_size"], hs(vec["audit_path"])
    assert inclusion_proof(LEAF_HASHES[:size], index) == path
    verify_inclusion(index, size, LEAF_HASHES[index], path, ROOTS[size])


@pytest.mark.parametrize(
    "vec",
    V["derived_all_proofs"]["consistency"],
    ids=cons_id,
)
def test_derived_consistency_proofs(vec: dict[str, Any]) -> None:
    size1, size2, proof = vec["size1"], vec["size2"], hs(vec["proof"])
    assert consistency_proof(LEAF_HASHES[:size2], size1) == proof
    verify_consistency(size1, size2, ROOTS[size1], ROOTS[size2], proof)


def test_derived_proofs_cover_every_small_case() -> None:
    incl = {(v["leaf_index"], v["tree_size"]) for v in V["derived_all_proofs"]["inclusion"]}
    cons = {(v["size1"], v["size2"]) for v in V["derived_all_proofs"]["consistency"]}
    assert incl == {(i, n) for n in range(1, 9) for i in range(n)}
    assert cons == {(m, n) for n in range(1, 9) for m in range(1, n + 1)}


@pytest.mark.parametrize("probe", V["verification_probes"]["inclusion"], ids=_ids("file"))
def test_inclusion_probes(probe: dict[str, Any]) -> None:
    args = (
        probe["leaf_index"],
        probe["tree_size"],
        h(probe["leaf_hash"]),
        hs(probe["proof"]),
        h(probe["root"]),
    )
    if probe["want_error"]:
        with pytest.raises(MerkleError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("probe", V["verification_probes"]["consistency"], ids=_ids("file"))
def test_consistency_probes(probe: dict[str, Any]) -> None:
    args = (
        probe["size1"],
        probe["size2"],
        h(probe["root1"]),
        h(probe["root2"]),
        hs(probe["proof"]),
    )
    if probe["want_error"]:
        with pytest.raises(MerkleError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_probe_counts() -> None:
    probes = V["verification_probes"]
    assert len(probes["inclusion"]) == 98
    assert len(probes["consistency"]) == 98
    assert sum(not p["want_error"] for p in probes["inclusion"]) >= 1
    assert sum(not p["want_error"] for p in probes["consistency"]) >= 1


# --------------------------------------------------------------------------------------------
# Edge cases (vector file "edge_cases" and module contract)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (2, 1), (-1, 1), (8, 8)])
def test_index_out_of_range_rejected(index: int, size: int) -> None:
    with pytest.raises(IndexOutOfRangeError):
        inclusion_nodes(index, size)
    with pytest.raises(IndexOutOfRangeError):
        verify_inclusion(index, size, LEAF_HASHES[0], [], ROOTS[1])
    with pytest.raises(IndexOutOfRangeError):
        root_from_inclusion_proof(index, size, LEAF_HASHES[0], [])
    if size <= len(LEAF_HASHES):
        with pytest.raises(IndexOutOfRangeError):
            inclusion_proof(LEAF_HASHES[:size], index)


def test_index_checked_before_anything_else() -> None:
    # Wrong leaf size and proof length too, but the index is what gets reported.
    with pytest.raises(IndexOutOfRangeError):
        verify_inclusion(5, 3, b"", [b"x"] * 9, b"")


def test_single_leaf_tree() -> None:
    assert inclusion_nodes(0, 1) == []
    assert inclusion_proof(LEAF_HASHES[:1], 0) == []
    assert root(LEAF_HASHES[:1]) == LEAF_HASHES[0]
    verify_inclusion(0, 1, LEAF_HASHES[0], [], LEAF_HASHES[0])


@pytest.mark.parametrize("bad_len", [0, 1, 31, 33, 64])
def test_wrong_hash_sizes_rejected(bad_len: int) -> None:
    bad = b"\x07" * bad_len
    path = inclusion_proof(LEAF_HASHES, 3)
    with pytest.raises(HashSizeError):
        verify_inclusion(3, 8, bad, path, ROOTS[8])
    with pytest.raises(HashSizeError):
        verify_inclusion(3, 8, LEAF_HASHES[3], path, bad)
    with pytest.raises(HashSizeError):
        verify_inclusion(3, 8, LEAF_HASHES[3], [path[0], bad, path[2]], ROOTS[8])
    proof = consistency_proof(LEAF_HASHES, 3)
    with pytest.raises(HashSizeError):
        verify_consistency(3, 8, bad, ROOTS[8], proof)
    with pytest.raises(HashSizeError):
        verify_consistency(3, 8, ROOTS[3], bad, proof)
    with pytest.raises(HashSizeError):
        verify_consistency(3, 8, ROOTS[3], ROOTS[8], [*proof[:-1], bad])
    with pytest.raises(HashSizeError):
        root([*LEAF_HASHES[:4], bad, *LEAF_HASHES[5:]])


def test_hash_size_error_names_the_culprit() -> None:
    with pytest.raises(HashSizeError) as info:
        verify_inclusion(0, 2, LEAF_HASHES[0], [b"\x00" * 20], ROOTS[2])
    assert info.value.expected == HASH_SIZE
    assert info.value.actual == 20
    assert "proof node 0" in info.value.diagnostics()


@pytest.mark.parametrize(
    ("size1", "size2", "proof_len"),
    [(0, 0, 0), (0, 1, 0), (0, 1, 1), (0, 8, 0), (0, 8, 3)],
)
def test_consistency_from_size_zero_is_rejected(size1: int, size2: int, proof_len: int) -> None:
    # Documented decision: current transparency-dev/merkle and RFC 9162 §2.1.4.
    empty = RFC9162_SHA256.empty_root()
    root2 = ROOTS[size2]
    with pytest.raises(TreeSizeError):
        verify_consistency(size1, size2, empty, root2, [empty] * proof_len)
    with pytest.raises(TreeSizeError):
        consistency_nodes(size1, size2)
    with pytest.raises(TreeSizeError):
        consistency_proof(LEAF_HASHES[:size2], size1)


@pytest.mark.parametrize("size", range(1, 9))
def test_consistency_equal_sizes(size: int) -> None:
    assert consistency_nodes(size, size) == []
    assert consistency_proof(LEAF_HASHES[:size], size) == []
    verify_consistency(size, size, ROOTS[size], ROOTS[size], [])
    with pytest.raises(ProofLengthError):
        verify_consistency(size, size, ROOTS[size], ROOTS[size], [ROOTS[size]])
    other = ROOTS[size - 1]
    with pytest.raises(RootMismatchError):
        verify_consistency(size, size, ROOTS[size], other, [])


@pytest.mark.parametrize(("size1", "size2"), [(1, 0), (2, 1), (8, 3), (-1, 4), (2, -1)])
def test_consistency_bad_sizes(size1: int, size2: int) -> None:
    with pytest.raises(TreeSizeError):
        verify_consistency(size1, size2, ROOTS[1], ROOTS[1], [])
    with pytest.raises(TreeSizeError):
        consistency_nodes(size1, size2)


@pytest.mark.parametrize(("size1", "size2"), [(1, 2), (3, 8), (6, 7), (4, 8)])
def test_consistency_empty_proof_rejected(size1: int, size2: int) -> None:
    with pytest.raises(ProofLengthError):
        verify_consistency(size1, size2, ROOTS[size1], ROOTS[size2], [])


@pytest.mark.parametrize("vec", V["derived_all_proofs"]["inclusion"], ids=incl_id)
def test_inclusion_proof_length_is_exact(vec: dict[str, Any]) -> None:
    index, size, path = vec["leaf_index"], vec["tree_size"], hs(vec["audit_path"])
    for wrong in ([*path, ROOTS[size]], [ROOTS[size], *path], path[:-1], path[1:]):
        if len(wrong) == len(path):
            continue  # slicing an empty path
        with pytest.raises(ProofLengthError) as info:
            verify_inclusion(index, size, LEAF_HASHES[index], wrong, ROOTS[size])
        assert (info.value.expected, info.value.actual) == (len(path), len(wrong))


@pytest.mark.parametrize("vec", V["derived_all_proofs"]["consistency"], ids=cons_id)
def test_consistency_proof_length_is_exact(vec: dict[str, Any]) -> None:
    size1, size2, proof = vec["size1"], vec["size2"], hs(vec["proof"])
    for wrong in ([*proof, ROOTS[size2]], [ROOTS[size1], *proof], proof[:-1], proof[1:]):
        if len(wrong) == len(proof):
            continue
        with pytest.raises(ProofLengthError) as info:
            verify_consistency(size1, size2, ROOTS[size1], ROOTS[size2], wrong)
        assert (info.value.expected, info.value.actual) == (len(proof), len(wrong))


@pytest.mark.parametrize(("begin", "end"), [(-1, 2), (3, 2), (0, 9), (9, 9)])
def test_subtree_range_rejected(begin: int, end: int) -> None:
    with pytest.raises(SubtreeRangeError):
        subtree_hash(LEAF_HASHES, begin, end)


def test_empty_subtree_is_empty_root() -> None:
    assert subtree_hash(LEAF_HASHES, 3, 3) == RFC9162_SHA256.empty_root()


def test_root_accepts_any_sequence() -> None:
    assert root(tuple(LEAF_HASHES)) == ROOTS[8]


# --------------------------------------------------------------------------------------------
# Against the naive reference tree
# --------------------------------------------------------------------------------------------

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.binary(min_size=1, max_size=8)


@PROPERTY
@given(size=st.integers(0, 300), seed=seeds)
def test_root_matches_reference(size: int, seed: bytes) -> None:
    leaves = make_leaves(seed, size)
    assert root(leaves) == ref_mth(leaves)


@PROPERTY
@given(size=st.integers(1, 300), seed=seeds, data=st.data())
def test_inclusion_matches_reference_and_verifies(size: int, seed: bytes, data: Any) -> None:
    leaves = make_leaves(seed, size)
    tree_root = ref_mth(leaves)
    for index in {0, size - 1, data.draw(st.integers(0, size - 1), label="index")}:
        proof = inclusion_proof(leaves, index)
        assert proof == ref_path(index, leaves)
        assert [ref_mth(leaves[b:e]) for b, e in inclusion_nodes(index, size)] == proof
        verify_inclusion(index, size, leaves[index], proof, tree_root)
        assert root_from_inclusion_proof(index, size, leaves[index], proof) == tree_root


@PROPERTY
@given(size2=st.integers(1, 300), seed=seeds, data=st.data())
def test_consistency_matches_reference_and_verifies(size2: int, seed: bytes, data: Any) -> None:
    leaves = make_leaves(seed, size2)
    root2 = ref_mth(leaves)
    for size1 in {1, size2, data.draw(st.integers(1, size2), label="size1")}:
        proof = consistency_proof(leaves, size1)
        assert proof == ref_proof(size1, leaves)
        assert [ref_mth(leaves[b:e]) for b, e in consistency_nodes(size1, size2)] == proof
        verify_consistency(size1, size2, ref_mth(leaves[:size1]), root2, proof)


@PROPERTY
@given(size=st.integers(0, 300), seed=seeds, data=st.data())
def test_subtree_hash_matches_reference(size: int, seed: bytes, data: Any) -> None:
    leaves = make_leaves(seed, size)
    begin = data.draw(st.integers(0, size), label="begin")
    end = data.draw(st.integers(begin, size), label="end")
    assert subtree_hash(leaves, begin, end) == ref_mth(leaves[begin:end])


def test_every_small_tree_exhaustively() -> None:
    # Issue 2: every (index, size) up to 64, against the naive reference tree.
    leaves = make_leaves(b"exhaustive", 64)
    roots = [ref_mth(leaves[:n]) for n in range(len(leaves) + 1)]
    for size in range(1, len(leaves) + 1):
        tree = leaves[:size]
        for index in range(size):
            proof = inclusion_proof(tree, index)
            assert proof == ref_path(index, tree)
            verify_inclusion(index, size, tree[index], proof, roots[size])
        for size1 in range(1, size + 1):
            proof = consistency_proof(tree, size1)
            assert proof == ref_proof(size1, tree)
            verify_consistency(size1, size, roots[size1], roots[size], proof)


def test_root_is_iterative() -> None:
    # Far past the default recursion limit; a recursive fold would also be far too slow.
    leaves = make_leaves(b"big", 20_000)
    assert root(leaves) == ref_mth(leaves)


# --------------------------------------------------------------------------------------------
# Mutations: every tampered proof or claim is rejected
# --------------------------------------------------------------------------------------------

EXTRA = 8  # leaves beyond the tree, so "wrong size" claims can use a real root

# Where the failure is certain to be of one kind, check the kind; otherwise any MerkleError.
EXPECTED_ERROR: dict[str, type[MerkleError]] = {
    "flip_proof_bit": RootMismatchError,
    "truncate": ProofLengthError,
    "drop_first": ProofLengthError,
    "append_node": ProofLengthError,
    "prepend_node": ProofLengthError,
    "flip_leaf_bit": RootMismatchError,
    "flip_root_bit": RootMismatchError,
    "flip_root1_bit": RootMismatchError,
    "flip_root2_bit": RootMismatchError,
    "swap_roots": RootMismatchError,
}

INCLUSION_MUTATIONS = [
    "flip_proof_bit",
    "truncate",
    "drop_first",
    "append_node",
    "prepend_node",
    "flip_leaf_bit",
    "flip_root_bit",
    "other_tree_root",
    "swap_leaf_and_root",
    "wrong_index",
    "wrong_size",
]


PROOF_MUTATIONS = ("flip_proof_bit", "truncate", "drop_first", "append_node", "prepend_node")


def mutated_proof(mutation: str, proof: list[bytes], bit: int, data: Any) -> list[bytes]:
    """``proof`` after one of :data:`PROOF_MUTATIONS` (the same for inclusion and
    consistency proofs)."""
    if mutation == "flip_proof_bit":
        at = data.draw(st.integers(0, len(proof) - 1), label="node")
        return [*proof[:at], flip_bit(proof[at], bit), *proof[at + 1 :]]
    if mutation == "truncate":
        return proof[:-1]
    if mutation == "drop_first":
        return proof[1:]
    node = data.draw(st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE))
    return [*proof, node] if mutation == "append_node" else [node, *proof]


NEEDS_PROOF_NODES = {"flip_proof_bit", "truncate", "drop_first"}


@pytest.mark.parametrize("mutation", INCLUSION_MUTATIONS)
@PROPERTY
@given(seed=seeds, data=st.data())
def test_inclusion_mutations_rejected(mutation: str, seed: bytes, data: Any) -> None:
    # A one-leaf tree has an empty proof: nothing to flip or cut.
    size = data.draw(st.integers(2 if mutation in NEEDS_PROOF_NODES else 1, 300), label="size")
    leaves = make_leaves(seed, size + EXTRA)
    tree = leaves[:size]
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = inclusion_proof(tree, index)
    claim_index, claim_size, leaf, tree_root = index, size, tree[index], ref_mth(tree)
    verify_inclusion(claim_index, claim_size, leaf, proof, tree_root)  # the unmutated claim

    bit = data.draw(st.integers(0, HASH_SIZE * 8 - 1), label="bit")
    if mutation in PROOF_MUTATIONS:
        proof = mutated_proof(mutation, proof, bit, data)
    elif mutation == "flip_leaf_bit":
        leaf = flip_bit(leaf, bit)
    elif mutation == "flip_root_bit":
        tree_root = flip_bit(tree_root, bit)
    elif mutation == "other_tree_root":
        other = data.draw(st.integers(0, size + EXTRA).filter(lambda n: n != size))
        tree_root = ref_mth(leaves[:other])
    elif mutation == "swap_leaf_and_root":
        if leaf == tree_root:  # one-leaf tree: leaf and root coincide, so swap in a sibling
            leaf = leaves[size]
        else:
            leaf, tree_root = tree_root, leaf
    elif mutation == "wrong_index":
        claim_index = data.draw(
            st.integers(0, size + EXTRA - 1).filter(lambda i: i != index), label="claim"
        )
    elif mutation == "wrong_size":
        # Claim the proof shows inclusion in a tree of another size, with that tree's root.
        claim_size = data.draw(
            st.integers(index + 1, size + EXTRA).filter(lambda n: n != size), label="claim"
        )
        tree_root = ref_mth(leaves[:claim_size])
    else:
        pytest.fail(f"unknown mutation {mutation}")

    with pytest.raises(EXPECTED_ERROR.get(mutation, MerkleError)):
        verify_inclusion(claim_index, claim_size, leaf, proof, tree_root)


CONSISTENCY_MUTATIONS = [
    "flip_proof_bit",
    "truncate",
    "drop_first",
    "append_node",
    "prepend_node",
    "flip_root1_bit",
    "flip_root2_bit",
    "swap_roots",
    "wrong_size1",
    "wrong_size2",
]


@pytest.mark.parametrize("mutation", CONSISTENCY_MUTATIONS)
@PROPERTY
@given(size2=st.integers(2, 300), seed=seeds, data=st.data())
def test_consistency_mutations_rejected(mutation: str, size2: int, seed: bytes, data: Any) -> None:
    leaves = make_leaves(seed, size2 + EXTRA)
    tree = leaves[:size2]
    size1 = data.draw(st.integers(1, size2 - 1), label="size1")
    proof = consistency_proof(tree, size1)
    assert proof  # 0 < size1 < size2 always needs at least one node
    claim1, claim2 = size1, size2
    root1, root2 = ref_mth(tree[:size1]), ref_mth(tree)
    verify_consistency(claim1, claim2, root1, root2, proof)  # the unmutated claim

    bit = data.draw(st.integers(0, HASH_SIZE * 8 - 1), label="bit")
    if mutation in PROOF_MUTATIONS:
        proof = mutated_proof(mutation, proof, bit, data)
    elif mutation == "flip_root1_bit":
        root1 = flip_bit(root1, bit)
    elif mutation == "flip_root2_bit":
        root2 = flip_bit(root2, bit)
    elif mutation == "swap_roots":
        root1, root2 = root2, root1
    elif mutation == "wrong_size1":
        claim1 = data.draw(st.integers(1, size2).filter(lambda n: n != size1), label="claim1")
        root1 = ref_mth(leaves[:claim1])
    elif mutation == "wrong_size2":
        claim2 = data.draw(
            st.integers(size1, size2 + EXTRA).filter(lambda n: n != size2), label="claim2"
        )
        root2 = ref_mth(leaves[:claim2])
    else:
        pytest.fail(f"unknown mutation {mutation}")

    with pytest.raises(EXPECTED_ERROR.get(mutation, MerkleError)):
        verify_consistency(claim1, claim2, root1, root2, proof)


def test_wrong_sizes_rejected_exhaustively() -> None:
    """Every (index or size) substitution in trees of up to 24 leaves, with the claimed roots."""
    leaves = make_leaves(b"sizes", 32)
    roots = [ref_mth(leaves[:n]) for n in range(len(leaves) + 1)]
    for size in range(1, 25):
        for index in range(size):
            proof = inclusion_proof(leaves[:size], index)
            for claim in range(index + 1, len(leaves) + 1):
                if claim != size:
                    with pytest.raises(MerkleError):
                        verify_inclusion(index, claim, leaves[index], proof, roots[claim])
            for claim_index in range(size):
                if claim_index != index:
                    with pytest.raises(MerkleError):
                        verify_inclusion(claim_index, size, leaves[index], proof, roots[size])
        for size1 in range(1, size):
            proof = consistency_proof(leaves[:size], size1)
            for c1 in range(1, len(leaves) + 1):
                for c2 in range(c1, len(leaves) + 1):
                    if (c1, c2) != (size1, size):
                        with pytest.raises(MerkleError):
                            verify_consistency(c1, c2, roots[c1], roots[c2], proof)
