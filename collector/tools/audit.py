"""Audit: re-verify the whole ledger from its stored bytes and name the first thing that broke.

For every block, in height order: heights contiguous from 0; the stored header decodes and its
collector signature verifies under the trusted key; its height, previous-hash link, leaf count
and hash match the row and the chain; it covers exactly the next reading ids; the RFC 9162 root
over those envelopes equals the signed root; the signed time range matches the readings. For
every reading (sealed or pending): the reading verifier that ingest uses passes it (envelope,
enrolled key, ES256 signature, every wire-format rule of the payload, key bound to the signed
device), the row's columns equal the signed values, and the device's hash chain links where
consecutive seqs follow each other.

Signature checks run on the worker pool (every core, :mod:`collector.tools.audit_worker`);
Merkle roots and chain checks run here, overlapping with them. So do the ledger-wide pass
(:mod:`collector.tools.findings`, beside the walk over the blocks) and the log's checkpoint
checks (while the workers verify the last blocks): the workers are never left waiting for this
process. The whole audit reads one database snapshot, so it may run beside a live collector.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from collector.admission.registry import RegistrySnapshot, RegistrySource
from collector.admission.workers import RegistryShare, WorkerPool
from collector.ledger.store import BlockRecord, LedgerStore, ReadingRecord

# (the worker side lives apart: a worker process imports only it)
from collector.tools.audit_worker import (
    AUDIT_CHECKS,
    Result,
    audit_envelopes,
    cycle_collection_paused,
)
from collector.tools.keyschedule import KeySchedule, load_schedule
from collector.tools.statement_audit import StatementAudit
from provenance.block import GENESIS_BLOCK_HASH, SignedBlock
from provenance.errors import ProvenanceError
from provenance.keys import PublicKey
from provenance.merkle import RFC9162_SHA256, root

__all__ = ["AUDIT_CHECKS", "AuditReport", "Finding", "audit_envelopes", "run_audit"]

@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    detail: str
    block: int | None = None  # height; None for readings no block holds yet
    leaf: int | None = None
    reading_id: int | None = None
    device_id: str | None = None
    seq: int | None = None

    def where(self) -> str:
        if self.block is None and self.reading_id is None:
            return f"device {self.device_id} seq {self.seq}" if self.device_id else "ledger"
        parts = [f"block {self.block}" if self.block is not None else "not yet sealed"]
        if self.reading_id is not None:
            what = f"reading {self.reading_id}"
            if self.leaf is not None:
                what += f" (leaf {self.leaf})"
            if self.device_id is not None:
                what += f" device {self.device_id} seq {self.seq}"
            parts.append(what)
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in (("block", self.block), ("leaf", self.leaf),
                                  ("reading_id", self.reading_id), ("device_id", self.device_id),
                                  ("seq", self.seq), ("check", self.check),
                                  ("detail", self.detail)) if v is not None}


@dataclass(slots=True)
class AuditReport:
    collector_kid: str
    blocks: int = 0
    readings: int = 0
    pending: int = 0
    head: str = GENESIS_BLOCK_HASH.hex()
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what else was shown (a saved checkpoint)
    seconds: float = 0.0
    tree_size: int = 0
    statements: int = 0  # collector statements verified (leaves too, not in ``readings``)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        """The first broken block (lowest height; pending last), its first broken reading."""
        if not self.findings:
            return None

        def key(f: Finding) -> tuple[float, float]:
            block = float("inf") if f.block is None else f.block
            return block, -1 if f.leaf is None else f.leaf

        first = min(self.findings, key=key)
        with_reading = [f for f in self.findings if f.block == first.block and f.reading_id]
        return min(with_reading, key=key) if with_reading else first

    def render(self, limit: int = 20) -> str:
        rate = self.readings / self.seconds if self.seconds else 0.0
        if self.ok:
            also = (f" and {self.statements} collector statement(s)" if self.statements
                    else "")
            lines = [f"audit OK: {self.blocks} blocks, {self.readings} readings{also} verified "
                     f"({self.pending} not yet sealed) in {self.seconds:.1f} s "
                     f"({rate:,.0f} readings/s)",
                     f"chain head {self.blocks - 1}:{self.head}" if self.blocks
                     else "chain head: no block sealed yet",
                     f"log tree of {self.tree_size} leaves" if self.tree_size
                     else "log tree: none (a format 1 ledger: run `ledger-collector migrate`)"
                     if self.blocks else "log tree: empty",
                     f"collector key {self.collector_kid}"]
        else:
            first = self.first
            assert first is not None
            lines = [f"audit FAILED: {len(self.findings)} problem(s); first broken: "
                     f"{first.where()}: {first.check}: {first.detail}"]
            lines += [f"  {f.where()}: {f.check}: {f.detail}" for f in self.findings[:limit]]
            if len(self.findings) > limit:
                lines.append(f"  … and {len(self.findings) - limit} more")
        lines += [f"warning: {w}" for w in self.warnings]
        lines += self.notes
        return "\n".join(lines)

    def to_json(self) -> str:
        first = self.first
        return json.dumps({
            "ok": self.ok,
            "blocks": self.blocks,
            "readings": self.readings,
            "statements": self.statements,
            "pending": self.pending,
            "head": self.head,
            "tree_size": self.tree_size,
            "notes": self.notes,
            "collector_kid": self.collector_kid,
            "seconds": round(self.seconds, 3),
            "first_broken": first.to_json() if first else None,
            "findings": [f.to_json() for f in self.findings],
            "warnings": self.warnings,
        }, indent=2)


class _Segment(NamedTuple):
    block: BlockRecord | None
    header: SignedBlock | None
    readings: Sequence[ReadingRecord]
    results: asyncio.Future[list[Result]]


class _Auditor:
    def __init__(self, report: AuditReport, schedule: KeySchedule, pool: WorkerPool,
                 registry: RegistrySource, progress: Callable[[int], None] | None) -> None:
        self.report = report
        self.schedule = schedule
        self.pool = pool
        self.registry = registry
        self.progress = progress
        self.chain: dict[str, tuple[int, bytes]] = {}  # device -> (max seq, its envelope hash)
        self.revoked = 0
        self.high_s = 0
        self.statements = StatementAudit(schedule.epochs[0].key)

    def fail(self, check: str, detail: str, block: BlockRecord | None,
             reading: ReadingRecord | None = None, leaf: int | None = None) -> None:
        self.report.findings.append(Finding(
            check, detail, block.height if block else None, leaf,
            reading.id if reading else None, reading.device_id if reading else None,
            reading.seq if reading else None))

    def check_block(self, index: int, block: BlockRecord, prev_hash: bytes,
                    expected_first: int) -> SignedBlock | None:
        if block.height != index:
            self.fail("height", f"block heights are not contiguous: expected {index}, found "
                      f"{block.height}", block)
        if hashlib.sha256(block.header).digest() != block.hash:
            self.fail("block hash", "stored hash is not the SHA-256 of the stored header", block)
        try:
            signed = SignedBlock.decode(block.header)
        except ProvenanceError as exc:
            self.fail("block header", f"stored header does not decode: {exc.diagnostics()}",
                      block)
            return None
        key = self.schedule.at(block.first_reading_id).key
        try:
            signed.verify(key)
        except ProvenanceError as exc:
            self.fail("block signature", f"header does not verify under collector key "
                      f"{key.kid_hex[:16]}…: {exc.diagnostics()}", block)
            return None
        h = signed.header
        if h.height != block.height:
            self.fail("height", f"signed header says height {h.height}, stored at "
                      f"{block.height}", block)
        if h.prev_hash != prev_hash:
            self.fail("chain link", f"previous-block hash {h.prev_hash.hex()} differs from "
                      f"the hash of block {index - 1} ({prev_hash.hex()})", block)
        if h.leaf_count != block.leaf_count:
            self.fail("leaf count", f"signed header commits to {h.leaf_count} readings, the "
                      f"row says {block.leaf_count}", block)
        if block.first_reading_id != expected_first:
            self.fail("reading range", f"block starts at reading {block.first_reading_id}, "
                      f"expected {expected_first} (right after the previous block)", block)
        return signed

    def check_rows(self, block: BlockRecord | None, start: int,
                   readings: Sequence[ReadingRecord], expected: int | None) -> None:
        """Reading ids must run start, start+1, ... with no hole."""
        want = start
        for r in readings:
            while want < r.id:
                self.report.findings.append(Finding(
                    "missing reading", f"reading id {want} is not in the store",
                    block.height if block else None,
                    want - start if block else None, want))
                want += 1
            want = r.id + 1
        if expected is not None:
            end = start + expected
            while want < end:
                self.report.findings.append(Finding(
                    "missing reading", f"reading id {want} is not in the store (the block "
                    f"commits to {expected} readings, {len(readings)} are stored)",
                    block.height if block else None, want - start, want))
                want += 1

    def check_root(self, block: BlockRecord, header: SignedBlock,
                   readings: Sequence[ReadingRecord]) -> None:
        if header.header.tree_size_before is not None:
            return  # format 2: the log tree's root, checked by TreeAudit
        hash_leaf = RFC9162_SHA256.hash_leaf
        computed = root([hash_leaf(r.envelope) for r in readings])
        if computed != header.header.merkle_root:
            self.fail("merkle root", f"root over the {len(readings)} stored envelopes is "
                      f"{computed.hex()}, the signed root is "
                      f"{header.header.merkle_root.hex()}", block)
            from collector.tools.findings import misplaced_leaves

            for r, detail in misplaced_leaves(readings, header.header.merkle_root)[0]:
                self.fail("reading order", detail, block, r, r.id - block.first_reading_id)

    def check_readings(self, segment: _Segment, results: list[Result]) -> None:
        block, readings = segment.block, segment.readings
        first = block.first_reading_id if block else 0
        times: list[int] = []
        add_time = times.append
        chain, sha256 = self.chain, hashlib.sha256
        statements = self.statements
        plain_heads = statements.plain_heads.get
        r: ReadingRecord

        def fail(check: str, detail: str) -> None:
            """A finding about the reading in hand (``r``, the loop's)."""
            self.fail(check, detail, block, r, r.id - first if block else None)

        # One pass per stored reading: kept lean, the main process's share of the audit.
        for r, res in zip(readings, results, strict=True):
            if len(res) == 7:
                device_id, seq, boot, time_ms, kind, prev, revoked = res
            elif len(res) == 1:
                signed_ms = statements.statement(r, fail)
                if signed_ms is not None:
                    add_time(signed_ms)
                continue
            elif len(res) == 2:
                if not statements.not_a_statement(r, fail):
                    fail(res[0], res[1])
                continue
            else:
                self.high_s += 1
                device_id, seq, boot, time_ms, kind, prev, revoked = res[:7]
            add_time(time_ms)
            if revoked:
                self.revoked += 1
            _, row_device, row_seq, row_boot, row_time, _, row_kind, envelope = r
            if (row_device != device_id or row_seq != seq or row_boot != boot
                    or row_time != time_ms or row_kind != kind):
                columns = (row_device, row_seq, row_boot, row_time, row_kind)
                fail("stored columns", f"row says {columns}, the envelope signs {res[:5]}")
                continue
            # (its key enrolled for it by the log and never revoked: nothing to check further)
            if not envelope.startswith(plain_heads(device_id, ())):
                statements.reading(r, time_ms, fail)
            last = chain.get(device_id)
            if last is None or seq > last[0]:
                chain[device_id] = (seq, sha256(envelope).digest())
            if last is not None and seq == last[0] + 1 and prev != last[1]:
                fail("device chain", f"prev {prev.hex()} is not the hash of seq {last[0]} "
                     f"({last[1].hex()})")
        if block is not None and segment.header is not None and times:
            h = segment.header.header
            if (h.first_time_ms, h.last_time_ms) != (min(times), max(times)):
                self.fail("time range", f"header covers {h.first_time_ms}..{h.last_time_ms}, "
                          f"the readings {min(times)}..{max(times)}", block)
        if self.progress:
            self.progress(len(readings))


def _finding_order(f: Finding) -> tuple[float, float, str, int]:
    return (float("inf") if f.block is None else f.block, -1 if f.leaf is None else f.leaf,
            f.device_id or "", f.seq or 0)


async def run_audit(store: LedgerStore, collector_key: PublicKey, pool: WorkerPool, *,
                    progress: Callable[[int], None] | None = None,
                    window: int | None = None,
                    anchors: Sequence[tuple[int, bytes]] = (),
                    block_age_ms: int | None = None,
                    saved_checkpoints: Sequence[bytes] = ()) -> AuditReport:
    """Audit everything in ``store`` against ``collector_key``.

    ``anchors`` are (height, block hash) pairs recorded earlier outside this database (a
    printed chain head, a witness). A hash chain alone cannot show that its newest blocks were
    cut off or the whole ledger re-sealed by someone holding the collector key; an anchor can.
    ``block_age_ms`` (the collector's block age) makes readings left unsealed longer a finding.
    ``saved_checkpoints`` are signed checkpoint notes saved earlier: the ledger must extend each
    (an RFC 9162 consistency proof, no block header in between), which also catches a cut-off
    or re-sealed log.
    """
    from collector.tools.findings import ledger_findings

    started = time.monotonic()
    report = AuditReport(collector_kid=collector_key.kid_hex)
    ledger_wide = AuditReport(collector_kid=collector_key.kid_hex)
    share = RegistryShare(pool)
    try:
        # Thousands of tuples stay alive, none in a cycle: the cycle collector would walk
        # them again and again (audit_worker.cycle_collection_paused).
        with cycle_collection_paused():
            async with store.snapshot():
                # The ledger-wide pass needs no worker: it runs beside the walk over the blocks,
                # in this process's time between the workers' results, on the same snapshot.
                beside = asyncio.create_task(ledger_findings(store, ledger_wide,
                                                             block_age_ms=block_age_ms))
                try:
                    auditor = await _audit(store, report, collector_key, pool, share, progress,
                                           window, anchors, saved_checkpoints)
                except BaseException:
                    beside.cancel()
                    await asyncio.wait([beside])  # ended before its snapshot is
                    raise
                await beside
        await _erasure_findings(store, report, auditor.schedule.current.key)
    finally:
        share.close()
    # What the ledger-wide pass found comes first, as when it ran first.
    report.findings[:0] = ledger_wide.findings
    report.warnings[:0] = ledger_wide.warnings
    report.findings.sort(key=_finding_order)
    if auditor.revoked:
        report.warnings.append(
            f"{auditor.revoked} stored reading(s) carry a device time at or after their key's "
            "revocation (the key was revoked with an effective time in the past)")
    report.warnings.extend(auditor.statements.warnings(report.readings))
    # Device readings and collector statements, counted apart (both are leaves of the log).
    report.statements = auditor.statements.statements
    report.readings -= report.statements
    if auditor.high_s:
        report.warnings.append(
            f"{auditor.high_s} stored reading(s) carry a high-S signature, which the collector "
            "now refuses on arrival (stored before it did; see docs/wire-format.md)")
    report.seconds = time.monotonic() - started
    return report


def _rotation_findings(report: AuditReport, schedule: KeySchedule, trusted: PublicKey,
                       recorded: PublicKey | None) -> None:
    """Rotations are noted; the trusted key and the ledger's key must be keys the log
    announced (or its first)."""
    report.notes.extend(schedule.notes())
    report.collector_kid = schedule.current.key.kid_hex
    kids = [e.key.kid for e in schedule.epochs]
    if trusted.kid not in kids:
        report.findings.append(Finding("collector key", f"the trusted collector key "
                                       f"{trusted.kid_hex[:16]}… is not a key of this log"))
    if recorded is not None and recorded.kid != kids[-1]:
        report.findings.append(Finding(
            "collector key", f"the ledger records collector key {recorded.kid_hex[:16]}…, "
            f"but the log's rotation statements end at {kids[-1].hex()[:16]}…: a key the log "
            "never announced"))


async def _erasure_findings(store: LedgerStore, report: AuditReport,
                            collector_key: PublicKey) -> None:
    """Erasures of private readings' values: listed, and their records checked."""
    from collector.ledger.pg_store import PostgresStore
    from collector.ledger.sqlite_store import SQLiteStore
    from collector.tools.erasures import audit_erasures

    if isinstance(store, PostgresStore):
        where = store.url
    elif isinstance(store, SQLiteStore):
        where = str(store.path)
    else:
        return
    notes, findings = await asyncio.to_thread(audit_erasures, where, collector_key)
    report.notes.extend(notes)
    report.findings.extend(Finding(check, detail) for check, detail in findings)


async def _audit(store: LedgerStore, report: AuditReport, collector_key: PublicKey,
                 pool: WorkerPool, share: RegistryShare,
                 progress: Callable[[int], None] | None, window: int | None,
                 anchors: Sequence[tuple[int, bytes]], saved: Sequence[bytes]) -> _Auditor:
    """The audit proper; the auditor holds what it counted for the warnings."""
    async with store.snapshot():
        keys = await store.device_keys()
        schedule = await load_schedule(store, collector_key, await store.log_vkeys())
        _rotation_findings(report, schedule, collector_key, await store.collector_public_key())
        auditor = _Auditor(report, schedule, pool,
                           share.publish(RegistrySnapshot.of(-1, keys)), progress)
        inflight: deque[_Segment] = deque()
        depth = window or max(2, pool.workers * 2)

        async def settle(limit: int) -> None:
            while len(inflight) > limit:
                segment = inflight.popleft()
                auditor.check_readings(segment, await segment.results)

        def submit(block: BlockRecord | None, header: SignedBlock | None,
                   readings: Sequence[ReadingRecord]) -> None:
            results = pool.submit(audit_envelopes, auditor.registry,
                                  [r.envelope for r in readings])
            inflight.append(_Segment(block, header, readings, results))
            report.readings += len(readings)

        from collector.tools.logaudit import (
            TreeAudit,
            check_log,
            check_saved_checkpoint,
            saved_sizes,
        )

        tree = TreeAudit(report, store, saved_sizes(saved),
                         has_log=await store.checkpoint() is not None)
        prev_hash, next_first = GENESIS_BLOCK_HASH, 1
        blocks = await store.blocks()
        for index, block in enumerate(blocks):
            header = auditor.check_block(index, block, prev_hash, next_first)
            readings = [r for chunk in [c async for c in store.iter_readings(
                block.first_reading_id, block.end_reading_id)] for r in chunk]
            auditor.check_rows(block, block.first_reading_id, readings, block.leaf_count)
            if header is not None:
                auditor.check_root(block, header, readings)
            await tree.grow(block, header, readings)
            submit(block, header, readings)
            await settle(depth)
            prev_hash = block.hash
            next_first = max(next_first, block.end_reading_id)
        report.blocks = len(blocks)
        report.head = prev_hash.hex()
        by_height = {b.height: b for b in blocks}
        for height, digest in anchors:
            anchored = by_height.get(height)
            if anchored is None or anchored.hash != digest:
                report.findings.append(Finding(
                    "anchor", f"expected block {height} with hash {digest.hex()}, the ledger "
                    + ("has none" if anchored is None else f"has {anchored.hash.hex()}"),
                    block=height))
        # Readings committed after the last block: not sealed yet, but accepted and durable.
        # A log with no blocks but a tree (a mirror's copy) is checked against its checkpoints.
        expected = next_first
        in_log = await store.tree_size() if not blocks else 0
        async for chunk in store.iter_readings(next_first):
            auditor.check_rows(None, expected, chunk, None)
            expected = chunk[-1].id + 1
            if in_log:
                await tree.grow_log([r for r in chunk if r.id <= in_log])
            report.pending += sum(1 for r in chunk if r.id > in_log)
            submit(None, None, chunk)
            await settle(depth)
        # The log's checks need the recomputed tree, complete once the last block is submitted:
        # they run while the workers verify the last blocks.
        await check_log(store, report, schedule, tree)
        report.tree_size = await store.tree_size()
        for data in saved:
            await check_saved_checkpoint(store, report, schedule, data,
                                         roots=tree.roots.get)
        await settle(0)
    return auditor
