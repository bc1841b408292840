"""Block headers: the collector's signed, hash-chained commitment to a batch of envelopes.

A header names its height, the previous block's hash, the device-time range its readings cover,
when it was sealed and by which collector key, and its Merkle commitment:

* format 1: the RFC 9162 root over the block's own envelopes (leaf = H(0x00 || envelope bytes
  as received)) and how many there are;
* format 2: the block is the batch of leaves the sealer integrated into the one log tree over
  every reading: the tree size before and after it and the tree root after it.

The collector signs the header as a COSE_Sign1 (same profile as device envelopes); the block
hash is SHA-256 of those bytes. Both formats decode and verify.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from . import cbor
from .envelope import Envelope, sign
from .errors import MalformedError, SignatureError
from .keys import KID_SIZE, PrivateKey, PublicKey
from .merkle import HASH_SIZE
from .wire import BLOCK_FORMAT_VERSION, BLOCK_FORMAT_VERSION_2
from .wire import BlockLabel as L

__all__ = ["BLOCK_FORMAT_VERSION", "BLOCK_FORMAT_VERSION_2", "GENESIS_BLOCK_HASH",
           "BlockHeader", "SignedBlock"]

GENESIS_BLOCK_HASH = bytes(32)

K_VERSION, K_HEIGHT, K_PREV, K_ROOT, K_COUNT = L.VERSION, L.HEIGHT, L.PREV, L.ROOT, L.COUNT
K_FIRST, K_LAST, K_SEALED, K_KID = L.FIRST, L.LAST, L.SEALED, L.KID
K_SIZE_BEFORE, K_SIZE_AFTER = L.TREE_SIZE_BEFORE, L.TREE_SIZE_AFTER
_KEYS = frozenset({K_VERSION, K_HEIGHT, K_PREV, K_ROOT, K_COUNT, K_FIRST, K_LAST, K_SEALED,
                   K_KID})
_KEYS_V2 = frozenset({K_VERSION, K_HEIGHT, K_PREV, K_ROOT, K_FIRST, K_LAST, K_SEALED, K_KID,
                      K_SIZE_BEFORE, K_SIZE_AFTER})


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """``merkle_root`` is the block's own root (format 1) or the log tree's root after the
    block (format 2, where ``tree_size_before`` is set and ``leaf_count`` is the growth)."""

    height: int
    prev_hash: bytes
    merkle_root: bytes
    leaf_count: int
    first_time_ms: int
    last_time_ms: int
    sealed_at_ms: int
    collector_kid: bytes
    version: int = BLOCK_FORMAT_VERSION
    tree_size_before: int | None = None

    def __post_init__(self) -> None:
        for name in ("height", "leaf_count", "first_time_ms", "last_time_ms", "sealed_at_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise MalformedError(f"block {name} must be a non-negative integer")
        if self.version not in (BLOCK_FORMAT_VERSION, BLOCK_FORMAT_VERSION_2):
            raise MalformedError(f"unsupported block format version {self.version!r}")
        before = self.tree_size_before
        if self.version == BLOCK_FORMAT_VERSION_2:
            if isinstance(before, bool) or not isinstance(before, int) or before < 0:
                raise MalformedError("block tree size before must be a non-negative integer")
        elif before is not None:
            raise MalformedError("a format 1 block header has no tree size")
        if self.leaf_count < 1:
            raise MalformedError("a block holds at least one reading")
        if self.first_time_ms > self.last_time_ms:
            raise MalformedError("block time range is reversed")
        for name, size in (("prev_hash", 32), ("merkle_root", HASH_SIZE), ("collector_kid",
                                                                             KID_SIZE)):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != size:
                raise MalformedError(f"block {name} must be {size} bytes")
        if (self.height == 0) != (self.prev_hash == GENESIS_BLOCK_HASH):
            raise MalformedError("only block 0 has the all-zero previous hash")

    @property
    def tree_size_after(self) -> int | None:
        """Tree size after the block (format 2); None for a format 1 header."""
        if self.tree_size_before is None:
            return None
        return self.tree_size_before + self.leaf_count

    def to_payload(self) -> bytes:
        if self.tree_size_before is not None:
            return cbor.encode({
                K_VERSION: self.version,
                K_HEIGHT: self.height,
                K_PREV: self.prev_hash,
                K_ROOT: self.merkle_root,
                K_FIRST: self.first_time_ms,
                K_LAST: self.last_time_ms,
                K_SEALED: self.sealed_at_ms,
                K_KID: self.collector_kid,
                K_SIZE_BEFORE: self.tree_size_before,
                K_SIZE_AFTER: self.tree_size_after,
            })
        return cbor.encode(
            {
                K_VERSION: self.version,
                K_HEIGHT: self.height,
                K_PREV: self.prev_hash,
                K_ROOT: self.merkle_root,
                K_COUNT: self.leaf_count,
                K_FIRST: self.first_time_ms,
                K_LAST: self.last_time_ms,
                K_SEALED: self.sealed_at_ms,
                K_KID: self.collector_kid,
            }
        )

    @classmethod
    def from_payload(cls, payload: bytes) -> BlockHeader:
        body: Any = cbor.decode(payload, what="block header")
        if isinstance(body, dict) and body.get(K_VERSION) == BLOCK_FORMAT_VERSION_2:
            header = cls._from_v2(body)
        else:
            header = cls._from_v1(body)
        if not cbor.is_deterministic(payload, body):
            raise MalformedError("block header is not deterministically encoded",
                                 code="not_deterministic")
        return header

    @classmethod
    def _from_v2(cls, body: dict[Any, Any]) -> BlockHeader:
        if set(body) != _KEYS_V2:
            raise MalformedError("a format 2 block header is a map with keys 1..4, 6..11",
                                 code="bad_block")
        before, after = body[K_SIZE_BEFORE], body[K_SIZE_AFTER]
        for value in (before, after):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise MalformedError("block tree sizes must be non-negative integers",
                                     code="bad_block")
        return cls(
            version=body[K_VERSION],
            height=body[K_HEIGHT],
            prev_hash=body[K_PREV],
            merkle_root=body[K_ROOT],
            leaf_count=after - before,
            first_time_ms=body[K_FIRST],
            last_time_ms=body[K_LAST],
            sealed_at_ms=body[K_SEALED],
            collector_kid=body[K_KID],
            tree_size_before=before,
        )

    @classmethod
    def _from_v1(cls, body: Any) -> BlockHeader:
        if not isinstance(body, dict) or set(body) != _KEYS:
            raise MalformedError("block header must be a map with keys 1..9", code="bad_block")
        return cls(
            version=body[K_VERSION],
            height=body[K_HEIGHT],
            prev_hash=body[K_PREV],
            merkle_root=body[K_ROOT],
            leaf_count=body[K_COUNT],
            first_time_ms=body[K_FIRST],
            last_time_ms=body[K_LAST],
            sealed_at_ms=body[K_SEALED],
            collector_kid=body[K_KID],
        )


@dataclass(frozen=True, slots=True)
class SignedBlock:
    """A block header as signed by the collector, with its hash."""

    raw: bytes = field(repr=False)
    header: BlockHeader
    envelope: Envelope = field(repr=False)

    @classmethod
    def seal(cls, header: BlockHeader, key: PrivateKey) -> SignedBlock:
        if header.collector_kid != key.kid:
            raise SignatureError("block header names another collector key than the signer")
        return cls.decode(sign(header.to_payload(), key))

    @classmethod
    def decode(cls, raw: bytes) -> SignedBlock:
        """Parse without checking the signature (an auditor then calls ``verify``)."""
        envelope = Envelope.decode(raw)
        header = BlockHeader.from_payload(envelope.payload)
        if envelope.kid != header.collector_kid:
            raise MalformedError("block signer kid differs from the header's collector kid",
                                 code="bad_block")
        return cls(raw=envelope.raw, header=header, envelope=envelope)

    def verify(self, collector_key: PublicKey) -> None:
        self.envelope.verify(collector_key)

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.raw).digest()
