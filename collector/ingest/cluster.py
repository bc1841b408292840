"""The ingest pipeline of a collector in a cluster: one of N on one PostgreSQL ledger.

The same dispatcher, verification workers and per-device checks as :class:`Pipeline`, with
two differences (see :mod:`collector.ledger.pg_cluster` for the database side):

* **Admission is a database transaction.** A commit batch is decided inside one transaction
  that holds the row locks of its devices, on the device state read under those locks, so
  each decision is the one a single collector would make whatever collector receives which
  reading. Nothing of a device's state is kept in memory between batches. If the transaction
  fails for a reason worth retrying (the database restarted or fails over, a deadlock, a
  serialization failure) the whole batch is decided again, after a backoff; its messages
  stay unacknowledged until it commits, so the broker re-delivers them if this collector dies.
* **Sealing goes to whichever collector holds the log head.** After a block's worth of commits
  and when idle the collector tries to seal; the row lock on the log head lets one collector
  at a time seal, the others skip. Reading ids (leaf indices) are given when sealed, in one
  transaction: to readings, private readings and collector statements alike.

**Collector statements** (enrolments and revocations, :mod:`collector.ledger.statement_log`)
are numbered by the cluster, not by one collector's memory: when the registry changes, the
collector locks the ``@collector`` device row, reads every statement row (sealed or not),
signs what the log still lacks with the next seqs, and commits them in a transaction of their
own, before the batch that may admit readings under the new registry. Whichever collector
comes second finds them logged. The sealer then takes the statements before those readings
(an older transaction).

**Receipts** (:mod:`collector.ingest.receipts`) are made from the shared store, so the
collector that seals a block sends the receipts of every device with a reading in it,
whichever collector admitted the reading; each collector sends the refusals (and answers to
re-sent sealed readings) of the messages it decided, once their batch committed (a batch
decided again after a failed transaction tells nothing twice, and nothing of the failed
attempt). A stored reading is sealed when it has an id; the tree size in a receipt is read
from the store after the marks (another collector may have sealed meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace

from collector import faults
from collector.admission.checks import DeviceChecks
from collector.admission.reasons import Reason
from collector.admission.registry import DeviceKey
from collector.admission.verify import Outcome, Rejected, Verified
from collector.errors import StoreError
from collector.ingest.mqtt import Message
from collector.ingest.pipeline import Job, Pipeline, now_ms
from collector.ledger.pg_base import StoreRetry
from collector.ledger.pg_cluster import ClusterLedger, SealConflict
from collector.ledger.records import BatchWrite, BlockRecord
from collector.logs import event
from collector.metrics import LiveState
from provenance.keys import PrivateKey
from provenance.note import NoteSigner
from provenance.private_message import PrivateMessage
from provenance.statement import STATEMENT_DEVICE

__all__ = ["ClusterPipeline", "StoppedUndrained"]

log = logging.getLogger("collector.ingest.cluster")

_MAX_BACKOFF_S = 5.0


class StoppedUndrained(StoreError):
    """Asked to stop while the database cannot be reached: what was received and not committed
    stays unacknowledged, kept by the broker in this collector's session for the next start (or
    delivered to another member of the shared subscription)."""

    code = "stopped_undrained"

_COUNTERS = ("accepted", "duplicates", "gaps", "chain_restarts", "reboots", "boot_resets",
             "late")


class ClusterPipeline(Pipeline):
    assign_ids = False

    def configure_cluster(self, cluster: ClusterLedger, key: PrivateKey, origin: str,
                          signers: Sequence[NoteSigner]) -> None:
        self._cluster = cluster
        self._key = key
        self._origin = origin
        self._signers = list(signers)
        self._seal_poll = min(0.25, self._cfg.blocks.age / 4)
        self._admitted = asyncio.Event()
        self.unsealed = 0
        # Statements are checked under the @collector lock at start and on registry changes.
        self._statements_due = self._statement_log is not None
        # What the batch being decided tells the devices, sent once it commits.
        self._notes: list[tuple[str, int, str, bytes] | tuple[str, int]] = []

    async def run(self) -> None:
        await self._log_statements_due()
        dispatcher = asyncio.create_task(self._dispatch(), name="dispatch")
        writer = asyncio.create_task(self._write(), name="write")
        sealer = asyncio.create_task(self._seal_loop(), name="seal")
        stats = asyncio.create_task(self._log_stats(), name="stats")
        try:
            # Until dispatch and write are done (a stop), or any of the three fails.
            while not (dispatcher.done() and writer.done()):
                done, _ = await asyncio.wait({dispatcher, writer, sealer},
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
                if sealer.done():
                    raise RuntimeError("the sealing task ended")
        finally:
            stats.cancel()
            for task in (dispatcher, writer, sealer):
                task.cancel()
            self._share.close()
        await self._seal_due(force=True)  # what this collector admitted, unless another seals
        self._log_metrics()

    async def _write(self) -> None:
        while True:
            job = self._held
            self._held = None
            if job is None:
                try:
                    job = await asyncio.wait_for(self._jobs.get(), self._seal_poll)
                except TimeoutError:
                    await self._receipts_due()  # refusals held back by the rate limit
                    await self._refresh_registry()
                    await self._log_statements_due()
                    await self._replay()
                    continue
            if job is None:
                return
            await self._refresh_registry()
            await self._replay()
            jobs = [job]
            count = len(job.messages)
            finished = False
            while count < self._cfg.ingest.commit_max:
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
                jobs.append(nxt)
                count += len(nxt.messages)
            await self._admit(jobs)
            if finished:
                return

    def live(self) -> LiveState:
        """What this collector holds. The log head is shared by the cluster, so its tree size
        and checkpoint time are not known here (not exported; no ``/health`` rule either)."""
        return replace(super().live(), unsealed=0, tree_size=None, last_checkpoint_ms=None)

    async def _seal_loop(self) -> None:
        """Seal beside admission, on a connection of its own: when this collector has
        committed a block's worth (woken) and every ``_seal_poll`` seconds (the age rule, and
        blocks other collectors admitted). A look after every commit cost a transaction each,
        mostly to find no block due."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._admitted.wait(), self._seal_poll)
            self._admitted.clear()
            await self._seal_due()

    async def _admit(self, jobs: list[Job]) -> None:
        items: list[tuple[Message, Outcome, PrivateMessage | None]] = []
        for job in jobs:
            items.extend(await self._outcomes(job))
        await self._log_statements_due()  # the registry these outcomes were decided under
        backoff = 0.1
        while True:
            devices = [o.device_id for _, o, _ in items if isinstance(o, Verified)]
            saved = self._save_counters()
            acks: dict[int, list[int]] = defaultdict(list)
            self._notes = []
            try:
                async with self._cluster.admission(devices) as admission:
                    # The registry as of now, read after the locks: if it moved on (a device
                    # enrolled or revoked since these outcomes were decided), decide nothing
                    # here; its statements are logged first, in a transaction of their own.
                    moved = admission.registry_version != self._snapshot.version
                    if not moved:
                        self.checks = DeviceChecks(admission.states, admission.lookup,
                                                   max_skew_ms=self._max_future_ms)
                        batch = BatchWrite()
                        for m, outcome, pm in items:
                            await self._decide(m, outcome, batch, acks, [], pm)
                        batch.devices = [self.checks.states[d] for d in self.checks.dirty]
                        if len(batch) or batch.devices:
                            await self._cluster.write(admission, batch)
                if moved:
                    if not await self._refresh_registry(force=True):
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, _MAX_BACKOFF_S)
                    items = [(m, await self._recheck(m, o, pm), pm) for m, o, pm in items]
                    await self._log_statements_due()
                    continue
                break
            except StoreRetry as exc:
                self._restore_counters(saved)
                self._give_up_if_stopping(exc, len(items))
                event(log, "store_retry", logging.WARNING, detail=str(exc)[:300],
                      messages=len(items), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
        self.metrics.commits += 1
        self.unsealed += len(batch.readings)
        self._committing, self._committing_since = 0, None
        committed_ms = now_ms()
        for r in batch.readings:
            self.metrics.receive_to_commit.observe((committed_ms - r.received_ms) / 1000)
        if self.unsealed >= self._cfg.blocks.size:
            self._admitted.set()  # a block's worth: seal now (else at the next poll)
        faults.point("batch.after_commit")
        for generation, mids in acks.items():
            self._acker.ack(generation, mids)
            self.metrics.acks_requested += len(mids)
        if self.receipts is not None:
            notes, self._notes = self._notes, []
            for note in notes:
                if len(note) == 4:
                    self.receipts.refused(*note)
                else:
                    self.receipts.resent(*note)
            await self._receipts_due()

    def _tell_refused(self, device_id: str, seq: int, reason: str, digest: bytes) -> None:
        self._notes.append((device_id, seq, reason, digest))

    def _tell_resent(self, device_id: str, seq: int) -> None:
        self._notes.append((device_id, seq))

    def _is_sealed(self, reading_id: int) -> bool:
        """Ids are given when sealed: a stored reading without one (0) waits for a block."""
        return reading_id > 0

    async def _receipts_due(self, block: BlockRecord | None = None) -> None:
        """The receipts of ``block`` (sealed here), or the refusals waiting (rate-limited).
        A receipt is advice: a database that is away leaves them for the next one."""
        if self.receipts is None:
            return
        try:
            if block is None:
                await self.receipts.after_batch(None, now_ms())
            else:
                await self.receipts.after_block(block, None, now_ms())
        except StoreRetry as exc:
            event(log, "store_retry", logging.WARNING, detail=str(exc)[:300],
                  during="receipts")

    async def _recheck(self, m: Message, outcome: Outcome,
                       pm: PrivateMessage | None) -> Outcome:
        """``outcome`` under the registry just reloaded (as :meth:`_outcomes` applies it)."""
        if isinstance(outcome, Rejected) and outcome.reason == Reason.UNKNOWN_KEY:
            return await self._recheck_unknown(m, outcome, pm)
        if isinstance(outcome, Verified):
            return self._revocation_recheck(outcome)
        return outcome

    def _give_up_if_stopping(self, exc: StoreRetry, messages: int) -> None:
        """A stop was asked for and the database is away: waiting for it would hold the stop
        for as long as it stays away. Nothing uncommitted was acknowledged, so nothing is lost
        by stopping now."""
        if self._stopping.is_set():
            raise StoppedUndrained(
                f"stopped before the database came back ({str(exc)[:200]}); {messages} "
                "received message(s) not committed stay unacknowledged with the broker, "
                "which delivers them again to the next collector of the group") from None

    def _save_counters(self) -> tuple[list[int], Counter[str]]:
        m = self.metrics
        return [getattr(m, name) for name in _COUNTERS], Counter(m.quarantined)

    def _restore_counters(self, saved: tuple[list[int], Counter[str]]) -> None:
        values, quarantined = saved
        for name, value in zip(_COUNTERS, values, strict=True):
            setattr(self.metrics, name, value)
        self.metrics.quarantined = quarantined

    async def _seal_due(self, *, force: bool = False) -> None:
        """Seal every block that is due, unless another collector is sealing."""
        blocks = self._cfg.blocks
        while True:
            try:
                sealed = await self._cluster.seal(
                    self._key, self._origin, self._signers, size=blocks.size,
                    age_ms=int(blocks.age * 1000), now_ms=now_ms, force=force)
            except SealConflict as exc:
                event(log, "seal_conflict", logging.ERROR, detail=str(exc))
                return
            except StoreRetry as exc:
                event(log, "store_retry", logging.WARNING, detail=str(exc)[:300], during="seal")
                return
            if sealed is None:
                return
            faults.point("seal.after_commit")
            block = sealed.block
            self.metrics.blocks_sealed += 1
            self.unsealed = max(0, self.unsealed - block.leaf_count)
            if self._on_sealed is not None:
                self._on_sealed()  # its checkpoint goes to the witnesses now
            await self._receipts_due(block)  # every device in it, whoever admitted it
            event(log, "block_sealed", height=block.height, leaves=block.leaf_count,
                  first_reading_id=block.first_reading_id, hash=block.hash.hex())

    async def _refresh_registry(self, *, force: bool = False) -> bool:
        """As on one collector; a database that is away leaves the registry as it was."""
        try:
            return await super()._refresh_registry(force=force)
        except StoreRetry as exc:
            event(log, "store_retry", logging.WARNING, detail=str(exc)[:300],
                  during="registry")
            return False

    def _registry_changed(self, keys: list[DeviceKey]) -> None:
        """Statements are signed under the ``@collector`` lock (:meth:`_log_statements_due`),
        with the seqs the cluster's log says come next."""
        self._statements_due = self._statement_log is not None

    async def _log_statements_due(self) -> None:
        """Log the statements the registry needs and the log lacks, in a transaction of their
        own holding the ``@collector`` row's lock (another collector may have logged them)."""
        backoff = 0.1
        while self._statements_due and self._statement_log is not None:
            try:
                async with self._cluster.admission([STATEMENT_DEVICE]) as admission:
                    logged = self._statement_log.reload(
                        await self._cluster.statement_rows(admission))
                    now = now_ms()
                    due = logged.due(await self._store.device_keys(), now)
                    if due:
                        await self._cluster.write(admission, BatchWrite(
                            readings=[d.record(0, now) for d in due]))
            except StoreRetry as exc:
                self._give_up_if_stopping(exc, 0)
                event(log, "store_retry", logging.WARNING, detail=str(exc)[:300],
                      during="statements", retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            self._statement_log = logged
            self._statements_due = False
            self.metrics.statements += len(due)
            self.unsealed += len(due)
            for d in due:
                event(log, "statement_logged", seq=d.seq, reading_id=0)

    async def _replay(self) -> None:
        """Quarantined unknown_key readings whose key is now enrolled, under the devices'
        locks (any collector may run it; the locks make a second run find duplicates)."""
        if not self._replay_due:
            return
        await self._log_statements_due()  # replayed readings follow their key's enrolment
        try:
            done = await self._cluster.replay(self._registry, self._max_future_ms)
        except StoreRetry as exc:
            event(log, "store_retry", logging.WARNING, detail=str(exc)[:300], during="replay")
            return
        self._replay_due = False
        self.metrics.accepted += done.accepted
        self.unsealed += done.accepted
        if done.changed:
            event(log, "quarantine_replayed", detail=done.summary(), devices=done.devices)

