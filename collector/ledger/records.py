"""The records the ledger persists: readings, blocks, quarantine rows and device state.

Plain values with no behaviour beyond arithmetic on their own fields. The store protocol
(:mod:`collector.ledger.store`) and its implementations read and write them; the admission
checks (:mod:`collector.admission.checks`) build and update them. Keeping them here lets the
ledger depend on nothing in admission but the pure gap arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from collector.admission import gaps as gapmath
from collector.admission.gaps import SeqGap

__all__ = [
    "SEQ_SUMMARIES",
    "BatchWrite",
    "BlockRecord",
    "CheckpointRecord",
    "DeviceState",
    "PendingLeaf",
    "PrivateRecord",
    "QuarantineEntry",
    "QuarantineRecord",
    "ReadingRecord",
    "SeqSummary",
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
class CheckpointRecord:
    """A signed checkpoint of the log tree: its size, root and the signed note."""

    size: int
    root: bytes
    note: bytes
    block_height: int | None
    signed_ms: int


@dataclass(frozen=True, slots=True)
class BlockRecord:
    height: int
    hash: bytes
    header: bytes  # the collector-signed header (COSE_Sign1)
    first_reading_id: int
    leaf_count: int
    sealed_ms: int
    # What a format 2 block adds to the log, committed with it (not read back with the row):
    # the perfect tree nodes (level, index, hash) its leaves complete, and the checkpoint.
    nodes: tuple[tuple[int, int, bytes], ...] = field(default=(), compare=False, repr=False)
    checkpoint: CheckpointRecord | None = field(default=None, compare=False, repr=False)

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


class SeqSummary(NamedTuple):
    """One device's stored rows as the database counts them (the audit's ledger-wide pass
    reads a device's rows only when these do not already show its seqs are 0 .. rows - 1)."""

    device_id: str
    rows: int
    distinct_seqs: int
    first_seq: int
    last_seq: int


#: The query both stores answer :class:`SeqSummary` rows with (in standard SQL; over the
#: (device_id, seq) index, nothing per row leaves the database).
SEQ_SUMMARIES = ("SELECT device_id, COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) "
                 "FROM readings GROUP BY device_id ORDER BY device_id")


@dataclass(slots=True)
class DeviceState:
    """What the ledger knows about one device; persisted with every batch that changes it."""

    device_id: str
    first_seq: int
    last_seq: int
    last_hash: bytes
    last_boot: int
    last_time_ms: int
    last_received_ms: int
    accepted: int = 0
    duplicates: int = 0
    equivocations: int = 0
    chain_breaks: int = 0
    chain_restarts: int = 0
    reboots: int = 0
    boot_resets: int = 0
    out_of_order: int = 0
    delayed: int = 0
    last_skew_ms: int = 0  # collector time minus device time of the latest reading
    max_ahead_ms: int = 0  # furthest the device clock ran ahead (within the allowed bound)
    gaps: list[SeqGap] = field(default_factory=list)
    gaps_changed: bool = False  # not persisted: tells the store to rewrite this device's gaps

    @property
    def missing(self) -> int:
        return gapmath.missing(self.gaps)

    @property
    def unexplained(self) -> int:
        return gapmath.unexplained(self.gaps)


class PrivateRecord(NamedTuple):
    """A private reading's sealed values and its data key's grants, kept outside the log."""

    reading_id: int  # 0 in a cluster, whose sealer gives ids: then (device_id, seq) say which
    subject: str
    data_kid: bytes
    sealed: bytes
    grants: tuple[tuple[bytes, bytes], ...]  # (reader kid, grant)
    device_id: str = ""
    seq: int = -1


@dataclass(slots=True)
class BatchWrite:
    readings: list[ReadingRecord] = field(default_factory=list)
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    devices: list[DeviceState] = field(default_factory=list)
    #: Private readings' sealed values, stored beside ``readings`` in the same transaction.
    private: list[PrivateRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.readings) + len(self.quarantine)
