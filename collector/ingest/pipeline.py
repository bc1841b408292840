"""The ingest pipeline: verify in parallel, decide in order, commit in batches, then ack, then seal.

```
MQTT thread ─▶ Inbox ─▶ dispatcher ──batches──▶ worker processes (verify.verify_batch)
                             │ jobs, in arrival order
                             ▼
                          writer: per-device checks (checks.DeviceChecks), one transaction
                             │ per commit batch ─▶ COMMIT (fsync) ─▶ ack those messages
                             ▼
                          sealer: block due (size or age) ─▶ one transaction per block
```

Ordering argument, the heart of "nothing acknowledged is lost, nothing stored twice":

1. A message is acknowledged only by the writer, only after ``commit_batch`` returned for the
   batch that holds its outcome (reading row, quarantine row or duplicate count). A crash at
   any instant before that leaves it unacknowledged, and the broker re-delivers it.
2. Re-delivery of something already committed meets the (device, seq) check: same bytes are a
   duplicate, counted and acknowledged; no second row. Quarantine rows are keyed by the hash of
   the message and count repeats.
3. Blocks are sealed from committed readings only, in a transaction of their own; a crash
   before that commit leaves the readings pending and the next start seals them.

Verification results are awaited strictly in submission order, so per-device checks see
readings in the order the broker delivered them, however the worker processes interleave.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from collector import faults
from collector.admission.checks import Accept, DeviceChecks, Duplicate
from collector.admission.private_intake import open_private, private_record
from collector.admission.reasons import Reason
from collector.admission.registry import DeviceKey, Registry, RegistrySnapshot
from collector.admission.replay import replay_unknown_keys
from collector.admission.verify import (
    Outcome,
    Rejected,
    Verified,
    revocation,
    verify_batch,
    verify_message,
)
from collector.admission.workers import RegistryShare, WorkerPool
from collector.config import CollectorConfig
from collector.ingest.latency import CommitMarks, first
from collector.ingest.mqtt import Inbox, Message
from collector.ingest.receipts import ReceiptDesk
from collector.ingest.refusals import count_flags, quarantine_record, refused_reading
from collector.ledger.opening import is_postgres_url, local_path
from collector.ledger.sealer import Sealer
from collector.ledger.statement_log import DueStatement, StatementLog
from collector.ledger.store import (
    BatchWrite,
    LedgerStore,
    PendingLeaf,
    QuarantineRecord,
    ReadingRecord,
)
from collector.logs import event
from collector.metrics import LiveState, Metrics
from provenance.merkle import RFC9162_SHA256
from provenance.private_message import PrivateMessage
from provenance.statement import STATEMENT_DEVICE

__all__ = ["Acker", "Pipeline"]

log = logging.getLogger("collector.ingest.pipeline")


class Acker(Protocol):
    def ack(self, generation: int, mids: list[int]) -> None: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Job:
    messages: list[Message]
    early: dict[int, Outcome]  # outcomes decided before verification (oversized)
    outcomes: asyncio.Future[list[Outcome]]
    private: dict[int, PrivateMessage] = field(default_factory=dict)  # by message index


class Pipeline:
    def __init__(
        self,
        *,
        config: CollectorConfig,
        store: LedgerStore,
        inbox: Inbox,
        acker: Acker,
        pool: WorkerPool,
        sealer: Sealer,
        checks: DeviceChecks,
        registry: RegistrySnapshot,
        next_reading_id: int,
        metrics: Metrics | None = None,
        receipts: ReceiptDesk | None = None,
        on_sealed: Callable[[], None] | None = None,
        statements: StatementLog | None = None,
    ) -> None:
        self._cfg = config
        self._store = store
        self._inbox = inbox
        self._acker = acker
        self._pool = pool
        self.sealer = sealer
        self.checks = checks
        self._snapshot = registry
        self._registry = Registry.from_snapshot(registry)
        if is_postgres_url(config.database):
            share = local_path(config.database, ".registry", config.mqtt.client_id)
        else:
            database = Path(config.database)
            share = database.with_name(f".{database.name}.registry")
        self._share = RegistryShare(pool, share)
        self._shared = self._share.publish(registry)
        self._next_id = next_reading_id
        self._on_sealed = on_sealed  # e.g. wake the witness submitter
        self.metrics = metrics or Metrics()
        self.receipts = receipts
        depth = max(2, pool.workers * 2)
        self._jobs: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=depth)
        self._held: Job | None = None
        self._stopping = asyncio.Event()
        self._max_future_ms = int(config.ingest.max_clock_skew * 1000)
        self._registry_checked = 0.0
        self._verifying = 0  # messages handed to workers and not yet written
        # Arrival of each job's first message, in submission order (oldest waiting reading).
        self._job_arrivals: deque[int] = deque()
        self._committing = 0  # messages decided and in the commit batch being built/written
        self._committing_since: int | None = None  # arrival of the batch's oldest message
        self._commit_marks = CommitMarks(self.metrics.commit_to_seal, len(sealer.pending))
        self._replay_due = True  # unknown_key readings to re-check: at start, on enrolment
        # Enrolments and revocations the log lacks (at start: keys enrolled before the log
        # held statements); logged ahead of every reading admitted after them.
        self._statement_log = statements
        self._due: list[DueStatement] = []

    # lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop`; then drain what was received, commit, ack and seal it."""
        if self._statement_log is not None:
            # Keys enrolled (or revoked) while no collector ran, or before the log held
            # statements: logged before anything else.
            keys = await self._store.device_keys()
            self._due += self._statement_log.due(keys, now_ms())
            await self._commit_statements()
        dispatcher = asyncio.create_task(self._dispatch(), name="dispatch")
        writer = asyncio.create_task(self._write(), name="write")
        stats = asyncio.create_task(self._log_stats(), name="stats")
        try:
            done, _ = await asyncio.wait({dispatcher, writer},
                                         return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # re-raise a failure of either task
        finally:
            stats.cancel()
            for task in (dispatcher, writer):
                task.cancel()
            self._share.close()
        while self.sealer.pending:
            await self._seal()
        self._log_metrics()

    def stop(self) -> None:
        self._stopping.set()

    # dispatch: batches to the verification workers ------------------------------------------

    async def _dispatch(self) -> None:
        ingest = self._cfg.ingest
        while True:
            messages = await self._inbox.get(ingest.verify_batch, timeout=0.1)
            if not messages:
                if self._stopping.is_set():
                    break
                continue
            early: dict[int, Outcome] = {}
            private: dict[int, PrivateMessage] = {}
            items: list[tuple[str, bytes, int]] = []
            for i, m in enumerate(messages):
                if len(m.payload) > ingest.max_message_bytes:
                    early[i] = Rejected(
                        Reason.OVERSIZED,
                        f"{len(m.payload)} bytes exceed the {ingest.max_message_bytes}-byte "
                        f"limit; first {ingest.quarantine_keep_bytes} bytes kept",
                    )
                    continue
                opened = open_private(m.topic, m.payload)
                if opened is None:
                    items.append((m.topic, m.payload, m.received_ms))
                elif isinstance(opened, Rejected):
                    early[i] = opened
                else:
                    private[i] = opened[1]
                    items.append((opened[0], opened[1].envelope, m.received_ms))
            self.metrics.received += len(messages)
            outcomes = self._pool.submit(verify_batch, self._shared, items,
                                         self._max_future_ms)
            self._verifying += len(messages)
            self._job_arrivals.append(messages[0].received_ms)
            await self._jobs.put(Job(messages, early, outcomes, private))
        await self._jobs.put(None)

    # write: per-device checks, commit, ack, seal --------------------------------------------

    async def _write(self) -> None:
        while True:
            job = self._held
            self._held = None
            if job is None:
                try:
                    job = await asyncio.wait_for(self._jobs.get(), self._idle_timeout())
                except TimeoutError:
                    await self._idle()
                    continue
            if job is None:
                return
            await self._refresh_registry()  # rate-limited to one query per registry_poll
            await self._replay()
            batch = BatchWrite()
            acks: dict[int, list[int]] = defaultdict(list)
            leaves: list[PendingLeaf] = []
            await self._apply(job, batch, acks, leaves)
            # Group commit: fold in the jobs whose verification already finished, so one
            # fsync covers as many messages as are ready, but never wait for more.
            finished = False
            while len(batch) < self._cfg.ingest.commit_max:
                try:
                    nxt = self._jobs.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if nxt is None:
                    finished = True
                    break
                if not nxt.outcomes.done():
                    self._held = nxt
                    break
                await self._apply(nxt, batch, acks, leaves)
            await self._commit(batch, acks, leaves)
            await self._seal_due()
            if finished:
                return

    def _log_statements(self, batch: BatchWrite, leaves: list[PendingLeaf]) -> None:
        """Put the statements due into ``batch``, ahead of whatever it admits next (with
        their reading ids, or, in a cluster, id 0: the sealer numbers them as readings)."""
        received = now_ms()
        for due in self._due:
            record = due.record(self._next_id if self.assign_ids else 0, received)
            batch.readings.append(record)
            if self.assign_ids:
                leaves.append(PendingLeaf(self._next_id,
                                          RFC9162_SHA256.hash_leaf(due.envelope),
                                          record.time_ms, received))
                self._next_id += 1
            self.metrics.statements += 1
            event(log, "statement_logged", seq=due.seq, reading_id=record.id)
        self._due = []

    async def _commit_statements(self) -> None:
        """Commit the statements due in a batch of their own (nothing else is waiting)."""
        if not self._due:
            return
        batch = BatchWrite()
        leaves: list[PendingLeaf] = []
        self._log_statements(batch, leaves)
        await self._commit(batch, {}, leaves)

    def _idle_timeout(self) -> float:
        due = self.sealer.due_ms()
        wait = 0.25 if due is None else max(0.0, (due - now_ms()) / 1000)
        return min(wait, self._cfg.ingest.registry_poll)

    async def _idle(self) -> None:
        await self._seal_due()
        if self.receipts is not None:  # refusals held back by the rate limit
            await self.receipts.after_batch(self._sealed_end() - 1, now_ms())
        await self._refresh_registry()
        await self._commit_statements()
        await self._replay()

    async def _apply(self, job: Job, batch: BatchWrite, acks: dict[int, list[int]],
                     leaves: list[PendingLeaf]) -> None:
        await job.outcomes
        outcomes = self._take(job)
        for i, m in enumerate(job.messages):
            outcome = job.early.get(i) or next(outcomes)
            pm = job.private.get(i)
            if isinstance(outcome, Rejected) and outcome.reason == Reason.UNKNOWN_KEY:
                outcome = await self._recheck_unknown(m, outcome, pm)
            if self._due:  # the registry changed: its statements precede what it admits
                self._log_statements(batch, leaves)
            if isinstance(outcome, Verified):
                outcome = self._revocation_recheck(outcome)
            await self._decide(m, outcome, batch, acks, leaves, pm)

    def _take(self, job: Job) -> Iterator[Outcome]:
        """The outcomes of a verified job (in message order, the early ones left out), and
        its messages counted as being committed."""
        self._verifying -= len(job.messages)
        arrived = self._job_arrivals.popleft()
        if self._committing_since is None:
            self._committing_since = arrived
        self._committing += len(job.messages)
        return iter(job.outcomes.result())

    async def _outcomes(self, job: Job) -> list[tuple[Message, Outcome, PrivateMessage | None]]:
        """The job's messages with their verification outcomes (and private parts), registry
        changes applied: what :meth:`_apply` decides one by one, for a collector that decides
        a whole batch at once (a cluster's, :mod:`collector.ingest.cluster`)."""
        await job.outcomes
        outcomes = self._take(job)
        out: list[tuple[Message, Outcome, PrivateMessage | None]] = []
        for i, m in enumerate(job.messages):
            outcome = job.early.get(i) or next(outcomes)
            pm = job.private.get(i)
            if isinstance(outcome, Rejected) and outcome.reason == Reason.UNKNOWN_KEY:
                outcome = await self._recheck_unknown(m, outcome, pm)
            if isinstance(outcome, Verified):
                outcome = self._revocation_recheck(outcome)
            out.append((m, outcome, pm))
        return out

    #: Reading ids are given here, in admission order (one writer). A cluster's sealer gives
    #: them instead (:mod:`collector.ingest.cluster`): readings, statements and private
    #: readings are written with id 0 and numbered when sealed.
    assign_ids = True

    async def _decide(self, m: Message, outcome: Outcome, batch: BatchWrite,
                      acks: dict[int, list[int]], leaves: list[PendingLeaf],
                      pm: PrivateMessage | None = None) -> None:
        """The per-device checks on one message; its row, count or quarantine in ``batch``."""
        metrics = self.metrics
        envelope = m.payload if pm is None else pm.envelope
        if isinstance(outcome, Verified) and pm is not None and outcome.commitment is None:
            outcome = Rejected(Reason.BAD_PRIVATE, "the envelope on the private topic is "
                               "a public reading: it signs its values, not a commitment",
                               outcome.device_id, outcome.seq)
        if isinstance(outcome, Verified):
            rid = self._next_id if self.assign_ids else 0
            decision = await self.checks.admit(outcome, m.received_ms, rid, envelope)
            if isinstance(decision, Accept):
                batch.readings.append(ReadingRecord(
                    rid, outcome.device_id, outcome.seq, outcome.boot,
                    outcome.time_ms, m.received_ms, outcome.kind, envelope))
                if pm is not None:
                    batch.private.append(private_record(rid, pm, outcome.device_id,
                                                        outcome.seq))
                if self.assign_ids:
                    leaves.append(PendingLeaf(rid, outcome.leaf_hash, outcome.time_ms,
                                              m.received_ms))
                    self._next_id += 1
                metrics.accepted += 1
                if decision.flags:
                    count_flags(metrics, outcome, decision.flags)
            elif isinstance(decision, Duplicate):
                metrics.duplicates += 1
                if self.receipts is not None and self._is_sealed(decision.reading_id):
                    self._tell_resent(outcome.device_id, outcome.seq)
            else:
                batch.quarantine.append(self._quarantine(
                    m, decision.reason, decision.detail, outcome.device_id, outcome.seq))
                if decision.reason == Reason.EQUIVOCATION:
                    event(log, "equivocation", logging.ERROR, device_id=outcome.device_id,
                          seq=outcome.seq, detail=decision.detail)
        else:
            batch.quarantine.append(self._quarantine(
                m, outcome.reason, outcome.detail, outcome.device_id, outcome.seq))
        if m.qos:
            acks[m.generation].append(m.mid)

    def _quarantine(self, m: Message, reason: str, detail: str, device_id: str | None,
                    seq: int | None) -> QuarantineRecord:
        self.metrics.quarantined[reason] += 1
        record = quarantine_record(m, reason, detail, device_id, seq,
                                   self._cfg.ingest.quarantine_keep_bytes)
        if self.receipts is not None and reason != Reason.OVERSIZED:
            told = refused_reading(m, seq)
            if told is not None:
                self._tell_refused(*told, reason, record.raw_sha256)
        return record

    def _tell_refused(self, device_id: str, seq: int, reason: str, digest: bytes) -> None:
        """For ``device_id``'s next receipt: its ``seq`` (message SHA-256 ``digest``) refused."""
        assert self.receipts is not None
        self.receipts.refused(device_id, seq, reason, digest)

    def _tell_resent(self, device_id: str, seq: int) -> None:
        """For ``device_id``'s next receipt: its sealed ``seq`` came again."""
        assert self.receipts is not None
        self.receipts.resent(device_id, seq)

    def _sealed_end(self) -> int:
        """One past the last sealed reading id (the log tree's size + 1)."""
        return self.sealer.pending[0].reading_id if self.sealer.pending else self._next_id

    def _is_sealed(self, reading_id: int) -> bool:
        """Whether the stored reading ``reading_id`` is in a sealed block."""
        return reading_id < self._sealed_end()

    async def _commit(self, batch: BatchWrite, acks: dict[int, list[int]],
                      leaves: list[PendingLeaf]) -> None:
        batch.devices = [self.checks.states[d] for d in self.checks.dirty]
        if len(batch) or batch.devices:
            await self._store.commit_batch(batch)
            self.metrics.commits += 1
        self.checks.committed()
        faults.point("batch.after_commit")
        if leaves:
            committed_ms = now_ms()
            observe = self.metrics.receive_to_commit.observe
            for r in batch.readings:  # readings that arrived (not the collector's statements)
                if r.device_id != STATEMENT_DEVICE:
                    observe((committed_ms - r.received_ms) / 1000)
            self._commit_marks.committed(len(leaves), committed_ms)
        self.sealer.add(leaves)
        self._committing, self._committing_since = 0, None
        for generation, mids in acks.items():
            self._acker.ack(generation, mids)
            self.metrics.acks_requested += len(mids)
        if self.receipts is not None:
            await self.receipts.after_batch(self._sealed_end() - 1, now_ms())

    async def _seal_due(self) -> None:
        while self.sealer.is_due(now_ms()):
            await self._seal()

    async def _seal(self) -> None:
        block = self.sealer.seal(now_ms())
        await self._store.commit_block(block)
        faults.point("seal.after_commit")
        self.sealer.sealed(block)
        self.metrics.blocks_sealed += 1
        if self.receipts is not None:
            await self.receipts.after_block(block, block.end_reading_id - 1, now_ms())
        if self._on_sealed is not None:
            self._on_sealed()
        self._commit_marks.sealed(block.leaf_count, block.sealed_ms)
        event(log, "block_sealed", height=block.height, leaves=block.leaf_count,
              first_reading_id=block.first_reading_id, hash=block.hash.hex())

    # registry changes ---------------------------------------------------------------------

    async def _refresh_registry(self, *, force: bool = False) -> bool:
        """Reload the registry if `devices add/revoke` changed it. True if it changed."""
        now = time.monotonic()
        if not force and now - self._registry_checked < self._cfg.ingest.registry_poll:
            return False
        self._registry_checked = now
        version = await self._store.registry_version()
        if version == self._snapshot.version:
            return False
        keys = await self._store.device_keys()
        self._registry_changed(keys)
        self._snapshot = RegistrySnapshot.of(version, keys)
        self._shared = self._share.publish(self._snapshot)
        self._registry = Registry(version, keys)
        self._replay_due = True
        event(log, "registry_reloaded", version=version, keys=len(keys))
        return True

    def _registry_changed(self, keys: list[DeviceKey]) -> None:
        """The registry now holds ``keys``: sign the statements the log lacks, to be logged
        ahead of anything admitted under it."""
        if self._statement_log is not None:
            self._due += self._statement_log.due(keys, now_ms())

    async def _replay(self) -> None:
        """Between batches: quarantined unknown_key readings whose key is now enrolled."""
        if not self._replay_due:
            return
        await self._commit_statements()  # replayed readings follow their key's enrolment
        self._replay_due = False
        done = await replay_unknown_keys(self._store, self.checks, self._registry,
                                         self._next_id, self._max_future_ms)
        self._next_id = done.next_id
        self._commit_marks.committed(len(done.leaves), now_ms())
        self.sealer.add(done.leaves)
        self.metrics.accepted += done.accepted
        if done.changed:
            event(log, "quarantine_replayed", detail=done.summary(), devices=done.devices)

    async def _recheck_unknown(self, m: Message, outcome: Rejected,
                               pm: PrivateMessage | None) -> Outcome:
        # A device enrolled moments ago may have been verified against an older snapshot: the
        # registry may have changed since the batch went to a worker, whether this call or an
        # earlier one reloaded it (that earlier reload's replay ran before this reading was
        # quarantined, so nothing would replay it). Looking up an unknown key is cheap: the
        # envelope is decoded and no signature is checked.
        await self._refresh_registry(force=True)
        if pm is not None:
            opened = open_private(m.topic, m.payload)
            assert opened is not None and not isinstance(opened, Rejected)
            return verify_message(self._registry, opened[0], pm.envelope, m.received_ms,
                                  self._max_future_ms)
        return verify_message(self._registry, m.topic, m.payload, m.received_ms,
                              self._max_future_ms)

    def _revocation_recheck(self, v: Verified) -> Outcome:
        """Apply a revocation that arrived after the batch was handed to a worker."""
        entry = self._registry.lookup(v.kid)
        refused = revocation(entry[0], v) if entry is not None else None
        return refused or v

    # observability ----------------------------------------------------------------------------

    async def _log_stats(self) -> None:
        while True:
            await asyncio.sleep(self._cfg.log.stats_interval)
            self._log_metrics()

    def _log_metrics(self) -> None:
        event(log, "stats", **self.metrics.snapshot(self.live(), now_ms()))

    def live(self) -> LiveState:
        """What the pipeline holds now. Safe to call from another thread (the metrics
        server's): it only reads, and a queue emptied while it looks counts as empty."""
        sealer = self.sealer
        oldest_leaf = first(sealer.pending)
        arrivals = [self._inbox.oldest_ms(), first(self._job_arrivals), self._committing_since,
                    oldest_leaf.received_ms if oldest_leaf is not None else None]
        waiting = [ms for ms in arrivals if ms is not None]
        return LiveState(
            inbox=len(self._inbox),
            verifying=self._verifying,
            committing=self._committing,
            unsealed=len(sealer.pending),
            tree_size=sealer.tree_size,
            last_checkpoint_ms=sealer.last_sealed_ms,
            oldest_waiting_ms=min(waiting) if waiting else None,
        )

