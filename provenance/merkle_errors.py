"""The errors of :mod:`provenance.merkle`: every refused tree argument or proof, typed."""

from __future__ import annotations

from provenance.errors import ProvenanceError

__all__ = [
    "HashSizeError",
    "IndexOutOfRangeError",
    "MerkleError",
    "ProofLengthError",
    "RootMismatchError",
    "SubtreeRangeError",
    "TreeSizeError",
]

class MerkleError(ProvenanceError):
    """A Merkle tree argument or proof was rejected."""

    code = "merkle_error"


class HashSizeError(MerkleError):
    """A hash (leaf hash, root or proof node) does not have the hasher's length."""

    code = "merkle_hash_size"

    def __init__(self, what: str, expected: int, actual: int) -> None:
        self.what = what
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{what} is {actual} bytes but a tree hash is {expected} bytes; pass the raw "
            "digest bytes (not hex or base64) produced by the same hasher"
        )


class IndexOutOfRangeError(MerkleError):
    """A leaf index is negative or not smaller than the tree size."""

    code = "merkle_index_out_of_range"

    def __init__(self, index: int, size: int) -> None:
        self.index = index
        self.size = size
        if size <= 0:
            detail = f"a tree of size {size} has no leaves"
        else:
            detail = f"valid indices are 0 to {size - 1}"
        super().__init__(
            f"leaf index {index} is not in a tree of {size} leaves ({detail}); check that the "
            "index and the tree size come from the same tree head"
        )


class SubtreeRangeError(MerkleError):
    """A leaf range ``[begin, end)`` does not lie within the leaves given."""

    code = "merkle_subtree_range"

    def __init__(self, begin: int, end: int, size: int) -> None:
        self.begin = begin
        self.end = end
        self.size = size
        super().__init__(
            f"leaf range [{begin}, {end}) is not within the {size} leaves given; a range needs "
            f"0 <= begin <= end <= {size}"
        )


class TreeSizeError(MerkleError):
    """Tree sizes that no proof can relate (negative, decreasing, or a first size of 0)."""

    code = "merkle_tree_size"

    def __init__(self, message: str, *, size1: int, size2: int) -> None:
        self.size1 = size1
        self.size2 = size2
        super().__init__(message)


class ProofLengthError(MerkleError):
    """A proof has more or fewer nodes than the tree shape calls for."""

    code = "merkle_proof_length"

    def __init__(self, kind: str, expected: int, actual: int, shape: str) -> None:
        self.kind = kind
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{kind} proof for {shape} must have exactly {expected} node(s) but has {actual}; "
            "the proof was made for a different index or tree size, or was truncated or padded"
        )


class RootMismatchError(MerkleError):
    """The root computed from a proof differs from the trusted root."""

    code = "merkle_root_mismatch"

    def __init__(self, expected: bytes, calculated: bytes, *, what: str = "root") -> None:
        self.expected = expected
        self.calculated = calculated
        self.what = what
        super().__init__(
            f"{what} mismatch: expected {expected.hex()}, proof gives {calculated.hex()}; the "
            "leaf, the proof or the root is wrong, or they belong to different trees"
        )
