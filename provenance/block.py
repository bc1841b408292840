"""Block headers: the collector's signed, hash-chained commitment to a batch of envelopes.

A header names its height, the previous block's hash, the RFC 9162 Merkle root over the
envelopes (leaf = H(0x00 || envelope bytes as received)), how many there are, the device-time
range they cover, when it was sealed and by which collector key. The collector signs the header
as a COSE_Sign1 (same profile as device envelopes); the block hash is SHA-256 of those bytes.
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
from .wire import BLOCK_FORMAT_VERSION
from .wire import BlockLabel as L

__all__ = ["BLOCK_FORMAT_VERSION", "GENESIS_BLOCK_HASH", "BlockHeader", "SignedBlock"]

GENESIS_BLOCK_HASH = bytes(32)

K_VERSION, K_HEIGHT, K_PREV, K_ROOT, K_COUNT = L.VERSION, L.HEIGHT, L.PREV, L.ROOT, L.COUNT
K_FIRST, K_LAST, K_SEALED, K_KID = L.FIRST, L.LAST, L.SEALED, L.KID
_KEYS = frozenset({K_VERSION, K_HEIGHT, K_PREV, K_ROOT, K_COUNT, K_FIRST, K_LAST, K_SEALED,
                   K_KID})


@dataclass(frozen=True, slots=True)
class BlockHeader:
    height: int
    prev_hash: bytes
    merkle_root: bytes
    leaf_count: int
    first_time_ms: int
    last_time_ms: int
    sealed_at_ms: int
    collector_kid: bytes
    version: int = BLOCK_FORMAT_VERSION

    def __post_init__(self) -> None:
        for name in ("height", "leaf_count", "first_time_ms", "last_time_ms", "sealed_at_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise MalformedError(f"block {name} must be a non-negative integer")
        if self.version != BLOCK_FORMAT_VERSION:
            raise MalformedError(f"unsupported block format version {self.version!r}")
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

    def to_payload(self) -> bytes:
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
        if not isinstance(body, dict) or set(body) != _KEYS:
            raise MalformedError("block header must be a map with keys 1..9", code="bad_block")
        header = cls(
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
        if not cbor.is_deterministic(payload, body):
            raise MalformedError("block header is not deterministically encoded",
                                 code="not_deterministic")
        return header


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
