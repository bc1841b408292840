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
from typing import Protocol

from collector.admission.gaps import SeqGap
from collector.admission.registry import DeviceKey
from collector.ledger.records import (
    BatchWrite,
    BlockRecord,
    DeviceState,
    PendingLeaf,
    QuarantineEntry,
    QuarantineRecord,
    ReadingRecord,
)
from provenance.keys import PublicKey

# The records are defined in collector.ledger.records and named here too, with the protocol.
__all__ = [
    "BatchWrite",
    "BlockRecord",
    "DeviceState",
    "LedgerStore",
    "PendingLeaf",
    "QuarantineEntry",
    "QuarantineRecord",
    "ReadingRecord",
]


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
    async def enrol(self, device_id: str, key: PublicKey, now_ms: int) -> DeviceKey:
        """Enrol ``key`` for ``device_id``; the key already enrolled for it is returned as is."""
        ...
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
