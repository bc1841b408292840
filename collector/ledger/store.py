"""The ledger store interface: everything the collector keeps, behind one asynchronous Protocol.

:class:`collector.ledger.sqlite_store.SQLiteStore` implements it today; a PostgreSQL store for
multi-collector deployments implements the same methods. The contract that matters:

* ``commit_batch`` is atomic and durable when it returns: readings, quarantine rows, device
  state and gaps of one batch land together or not at all. Only then does the collector
  acknowledge the batch's messages to the broker.
* ``commit_block`` is atomic and durable: a block covers the readings with ids
  ``first_reading_id .. first_reading_id + leaf_count - 1``, which were committed earlier.
  Reading ids are dense and assigned in arrival order, so block leaves are in arrival order.
* Reading rows are never updated or deleted; quarantine rows only count repeats.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from collector.admission.checks import DeviceState
from collector.admission.gaps import SeqGap
from collector.admission.registry import DeviceKey
from provenance.keys import PublicKey

__all__ = [
    "BatchWrite",
    "BlockRecord",
    "LedgerStore",
    "PendingLeaf",
    "QuarantineEntry",
    "QuarantineRecord",
    "ReadingRecord",
]


class ReadingRecord(NamedTuple):
    # A tuple, not a frozen dataclass: one is built per reading on the hot paths (ingest,
    # audit), and tuple construction is several times cheaper.
    id: int
    device_id: str
    seq: int
    boot: int
    time_ms: int
    received_ms: int
    kind: str
    envelope: bytes


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """A message kept out of the ledger. ``raw`` may be a prefix of the message (oversized)."""

    raw_sha256: bytes  # of the whole message, so repeats are counted, not stored again
    reason: str
    detail: str
    topic: str
    topic_device: str | None
    device_id: str | None  # as signed, once the signature held
    seq: int | None
    size: int  # length of the whole message
    raw: bytes
    received_ms: int


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    id: int
    record: QuarantineRecord
    times_seen: int
    last_ms: int


@dataclass(frozen=True, slots=True)
class BlockRecord:
    height: int
    hash: bytes
    header: bytes  # the collector-signed header (COSE_Sign1)
    first_reading_id: int
    leaf_count: int
    sealed_ms: int

    @property
    def end_reading_id(self) -> int:
        """One past the last reading id of the block."""
        return self.first_reading_id + self.leaf_count


class PendingLeaf(NamedTuple):
    """A committed reading that no block holds yet."""

    reading_id: int
    leaf_hash: bytes
    time_ms: int
    received_ms: int


@dataclass(slots=True)
class BatchWrite:
    readings: list[ReadingRecord] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    devices: list[DeviceState] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.readings) + len(self.quarantine)


class LedgerStore(Protocol):
    async def close(self) -> None: ...
    def snapshot(self) -> AbstractAsyncContextManager[None]:
        """Reads inside the block see one consistent state of the ledger."""
        ...

    # collector identity and registry -------------------------------------------------------
    async def collector_public_key(self) -> PublicKey | None: ...
    async def set_collector_public_key(self, key: PublicKey) -> None: ...
    async def registry_version(self) -> int: ...
    async def device_keys(self) -> list[DeviceKey]: ...
    async def device_key(self, kid: bytes) -> DeviceKey | None: ...
    async def enrol(self, device_id: str, key: PublicKey, now_ms: int) -> DeviceKey: ...
    async def revoke(self, device_id: str, kid: bytes | None, at_ms: int,
                     reason: str | None) -> list[DeviceKey]: ...

    # ingest ----------------------------------------------------------------------------------
    async def device_states(self) -> dict[str, DeviceState]: ...
    async def next_reading_id(self) -> int: ...
    async def last_block(self) -> BlockRecord | None: ...
    async def pending_leaves(self) -> list[PendingLeaf]: ...
    async def find_reading(self, device_id: str, seq: int) -> ReadingRecord | None: ...
    async def commit_batch(self, batch: BatchWrite) -> None: ...
    async def commit_block(self, block: BlockRecord) -> None: ...

    # queries ---------------------------------------------------------------------------------
    async def block(self, height: int) -> BlockRecord | None: ...
    async def blocks(self, start: int = 0, limit: int | None = None) -> list[BlockRecord]: ...
    async def block_of_reading(self, reading_id: int) -> BlockRecord | None: ...
    async def block_envelopes(self, block: BlockRecord) -> list[bytes]: ...
    def iter_readings(self, start_id: int, end_id: int | None = None, *,
                      chunk: int = 4096) -> AsyncIterator[Sequence[ReadingRecord]]: ...
    def query_readings(self, *, device_id: str | None = None, since_ms: int | None = None,
                       until_ms: int | None = None) -> AsyncIterator[ReadingRecord]: ...
    def device_sequences(self) -> AsyncIterator[tuple[str, list[int]]]:
        """Every device's stored seqs, ascending."""
        ...
    async def reading_count(self) -> int: ...
    async def quarantine_entries(self, *, reason: str | None = None,
                                 device_id: str | None = None,
                                 limit: int = 100) -> list[QuarantineEntry]: ...
    async def quarantine_counts(self) -> dict[tuple[str, str], int]: ...
    async def gaps(self, device_id: str) -> list[SeqGap]: ...
    def device_seq_ids(self) -> AsyncIterator[tuple[str, list[tuple[int, int]]]]:
        """Every device's stored (seq, reading id) pairs, seq ascending."""
        ...
    async def commit_replay(self, batch: BatchWrite,
                            quarantine: Sequence[tuple[int, QuarantineRecord | None]]) -> None:
        """Replayed readings, device state, and each replayed quarantine row removed (None)
        or quarantined again (a record), atomically."""
        ...
