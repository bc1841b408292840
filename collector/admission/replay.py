"""Replay: readings quarantined as ``unknown_key`` enter the ledger once their key is enrolled.

A device that starts publishing before ``devices add`` has its readings quarantined as
``unknown_key``; the broker has them acknowledged and the agent has deleted them, so the
quarantine row is the only copy. When the registry gains keys (and at every start), the
collector re-verifies those rows against the new registry, exactly as on arrival: the topic,
the signature, the payload, revocation at the reading's device time, and the clock bound
against the time the collector *first received* the message. The readings that pass go
through the per-device checks in (device, seq) order, so they extend or fill the device's
chain as if they had arrived in order late, and are stored with their original arrival time.

What each row becomes: accepted (the row leaves the quarantine: the ledger now holds those very
bytes), a duplicate of a stored reading (leaves too), quarantined again under the reason it
fails now (e.g. ``bad_signature``, ``chain_break``), or left as ``unknown_key`` while its key
is still not enrolled. Readings, device state, gaps and the quarantine changes commit in one
transaction. Only the ledger's single writer may run this: the collector's pipeline between
two batches, or ``ledger-collector quarantine replay`` while no collector runs.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from collector.admission.checks import Accept, DeviceChecks, Duplicate, KnownReading, Lookup
from collector.admission.private_intake import open_private, private_record
from collector.admission.reasons import Reason
from collector.admission.registry import Registry
from collector.admission.verify import Rejected, Verified, verify_message
from collector.ledger.store import (
    BatchWrite,
    LedgerStore,
    PendingLeaf,
    QuarantineRecord,
    ReadingRecord,
)
from provenance.envelope import Envelope
from provenance.errors import ProvenanceError
from provenance.private_message import PrivateMessage

__all__ = ["ReplayResult", "replay_unknown_keys", "store_lookup"]


@dataclass(slots=True)
class ReplayResult:
    accepted: int = 0
    duplicates: int = 0
    still_unknown: int = 0
    requarantined: Counter[str] = field(default_factory=Counter)
    leaves: list[PendingLeaf] = field(default_factory=list)
    next_id: int = 0
    devices: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.accepted or self.duplicates or self.requarantined)

    def summary(self) -> str:
        again = ", ".join(f"{k}={v}" for k, v in sorted(self.requarantined.items()))
        return (f"replayed: {self.accepted} accepted, {self.duplicates} already stored, "
                f"{sum(self.requarantined.values())} quarantined again"
                + (f" ({again})" if again else "")
                + f", {self.still_unknown} still unknown_key")


def store_lookup(store: LedgerStore) -> Lookup:
    """The checks' lookup of a stored reading, straight from ``store``."""

    async def lookup(device_id: str, seq: int) -> KnownReading | None:
        record = await store.find_reading(device_id, seq)
        if record is None:
            return None
        try:
            prev = Envelope.decode(record.envelope).reading().prev
        except ProvenanceError:
            prev = b""
        return KnownReading(record.id, hashlib.sha256(record.envelope).digest(), prev,
                            record.envelope)

    return lookup


async def replay_unknown_keys(store: LedgerStore, checks: DeviceChecks, registry: Registry,
                              next_id: int, max_future_ms: int, *,
                              assign_ids: bool = True) -> ReplayResult:
    """Replay every ``unknown_key`` row whose key ``registry`` now holds; commit the outcome.

    ``checks`` must have no uncommitted readings (call between batches); ``next_id`` is the
    next free reading id. The result carries the new next id and the leaves to seal.
    Without ``assign_ids`` (a cluster, whose sealer gives ids) readings are stored with id 0.
    """
    result = ReplayResult(next_id=next_id)
    entries = await store.quarantine_entries(reason=Reason.UNKNOWN_KEY, limit=-1)
    ready: list[tuple[Verified, int, QuarantineRecord, int]] = []
    changes: list[tuple[int, QuarantineRecord | None]] = []  # (row id, new record or None)
    private: dict[int, PrivateMessage] = {}
    for entry in entries:
        q = entry.record
        opened = open_private(q.topic, q.raw)
        if opened is not None and not isinstance(opened, Rejected):
            private[entry.id] = opened[1]
            outcome = verify_message(registry, opened[0], opened[1].envelope, q.received_ms,
                                     max_future_ms)
        else:
            outcome = verify_message(registry, q.topic, q.raw, q.received_ms, max_future_ms)
        if isinstance(outcome, Rejected):
            if outcome.reason == Reason.UNKNOWN_KEY:
                result.still_unknown += 1
            else:
                result.requarantined[outcome.reason] += 1
                changes.append((entry.id, _requalified(q, outcome.reason, outcome.detail,
                                                       outcome.device_id, outcome.seq)))
            continue
        ready.append((outcome, entry.id, q, entry.times_seen))
    ready.sort(key=lambda t: (t[0].device_id, t[0].seq, t[2].received_ms))
    batch = BatchWrite()
    for v, row_id, q, _ in ready:
        pm = private.get(row_id)
        envelope = q.raw if pm is None else pm.envelope
        rid = result.next_id if assign_ids else 0
        decision = await checks.admit(v, q.received_ms, rid, envelope)
        if isinstance(decision, Accept):
            batch.readings.append(ReadingRecord(rid, v.device_id, v.seq, v.boot,
                                                v.time_ms, q.received_ms, v.kind, envelope))
            if pm is not None:
                batch.private.append(private_record(rid, pm, v.device_id, v.seq))
            if assign_ids:
                result.leaves.append(PendingLeaf(rid, v.leaf_hash, v.time_ms, q.received_ms))
                result.next_id += 1
            result.accepted += 1
            changes.append((row_id, None))
        elif isinstance(decision, Duplicate):
            result.duplicates += 1
            changes.append((row_id, None))
        else:
            result.requarantined[decision.reason] += 1
            changes.append((row_id, _requalified(q, decision.reason, decision.detail,
                                                 v.device_id, v.seq)))
    batch.devices = [checks.states[d] for d in checks.dirty]
    result.devices = sorted(checks.dirty)
    if changes or batch.devices:
        await store.commit_replay(batch, changes)
    checks.committed()
    return result


def _requalified(q: QuarantineRecord, reason: str, detail: str, device_id: str | None,
                 seq: int | None) -> QuarantineRecord:
    return QuarantineRecord(raw_sha256=q.raw_sha256, reason=reason,
                            detail=f"{detail} (on replay after enrolment)", topic=q.topic,
                            topic_device=q.topic_device, device_id=device_id, seq=seq,
                            size=q.size, raw=q.raw, received_ms=q.received_ms)

