"""Copy a SQLite ledger into an empty PostgreSQL database, verifying it as it is copied.

Nothing is taken on trust from the source file: every stored envelope is checked with the
reading verifier ingest uses (signature, device key binding) and must say what its row says;
every block header must verify with the collector key in force for it (the first key, then
each key a ``key-rotate`` statement of the log announced; the key history is copied too) and
chain to the previous one; the one
log tree is rebuilt from the envelopes, and each format 2 block's root and every checkpoint
(its signed note and its root) must match the rebuilt tree at its size. The first mismatch
stops the copy with :class:`~collector.errors.VerificationFailed`, naming what differs.

The copy is written in chunks of whole blocks, each chunk in one transaction, with the log
head last; readings the source had not sealed yet are copied without an id, for a collector
on the PostgreSQL ledger to seal. The target must hold no ledger yet (a copy that stopped half
way is dropped with the database and run again).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from collector.admission.registry import Registry
from collector.admission.verify import ReadingVerifier, Rejected
from collector.errors import UsageError, VerificationFailed
from collector.ledger.key_records import HISTORY, history_to_json
from collector.ledger.pg_store import PostgresStore
from collector.ledger.records import BatchWrite, BlockRecord, CheckpointRecord, ReadingRecord
from collector.ledger.sqlite_store import SQLiteStore
from collector.tools.keyschedule import load_schedule
from collector.tools.logaudit import _verifiers
from provenance.block import BLOCK_FORMAT_VERSION_2, GENESIS_BLOCK_HASH, SignedBlock
from provenance.checkpoint import open_checkpoint
from provenance.compact import CompactRange, Node
from provenance.errors import ProvenanceError
from provenance.merkle import RFC9162_SHA256, root
from provenance.note import NoteVerifier
from provenance.statement import STATEMENT_DEVICE, SignedStatement

__all__ = ["CopyResult", "copy_ledger"]

CHUNK = 20_000


@dataclass(frozen=True, slots=True)
class CopyResult:
    readings: int
    unsealed: int
    blocks: int
    checkpoints: int
    tree_size: int
    root: bytes


async def _checkpoints(source: SQLiteStore) -> AsyncIterator[CheckpointRecord]:
    async for chunk in source.iter_checkpoints():
        for cp in chunk:
            yield cp


class _Copier:
    def __init__(self, source: SQLiteStore, target: PostgresStore) -> None:
        self.source = source
        self.target = target
        self.tree = CompactRange()
        self.prev_hash = GENESIS_BLOCK_HASH
        self.next_id = 1
        self.blocks = 0
        self.checkpoints = 0

    async def run(self) -> CopyResult:
        src, dst = self.source, self.target
        if await dst.collector_public_key() is not None or await dst.reading_count():
            raise UsageError(f"{dst.path} already holds a ledger; copy into an empty database")
        key = await src.collector_public_key()
        if key is None:
            raise UsageError(f"{src.path} has no collector key: not an initialised ledger")
        self.key = key
        origin = await src.log_origin()
        last = await src.last_block()
        sealed = last.end_reading_id - 1 if last else 0
        if origin is None or await src.tree_size() != sealed:
            raise UsageError(f"{src.path} is a format 1 ledger; run `ledger-collector migrate` "
                             "on it first")
        if await src.pending_key_rotation() is not None:
            raise UsageError(f"{src.path} has a collector key rotation pending: start its "
                             "collector once to complete it, then copy")
        # Which collector key signed what: the log's own key-rotate statements say.
        self.schedule = await load_schedule(src, key, await src.log_vkeys())
        self.verifiers: dict[int, list[NoteVerifier]] = {}  # by the epoch's first reading id
        history = await src.key_history()
        self.origin = origin
        keys = await src.device_keys()
        self.verifier = ReadingVerifier(Registry(await src.registry_version(), keys))

        async with dst._write("copying into") as conn:
            await dst._set_meta(conn, [
                ("collector_public_key", key.to_pem()), ("log_origin", origin),
                ("log_vkeys", "\n".join(await src.log_vkeys())),
                ("registry_version", str(await src.registry_version())),
                *([(HISTORY, history_to_json(history))] if history else [])])
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO device_keys(kid, device_id, public_key, enrolled_ms, revoked_ms,"
                    " revoke_reason) VALUES (%s, %s, %s, %s, %s, %s)",
                    [(k.kid, k.device_id, k.public_key_der, k.enrolled_ms, k.revoked_ms,
                      k.revoke_reason) for k in keys])

        cps = _checkpoints(src)
        self.pending_cp = await anext(cps, None)
        self.cps = cps
        batch_blocks: list[BlockRecord] = []
        batch_count = 0
        height = 0
        while True:
            chunk_blocks = await src.blocks(height, 256)
            if not chunk_blocks:
                break
            for block in chunk_blocks:
                batch_blocks.append(block)
                batch_count += block.leaf_count
                if batch_count >= CHUNK:
                    await self._copy_blocks(batch_blocks)
                    batch_blocks, batch_count = [], 0
            height = chunk_blocks[-1].height + 1
        if batch_blocks:
            await self._copy_blocks(batch_blocks)
        if self.pending_cp is not None:
            raise VerificationFailed(f"checkpoint of tree size {self.pending_cp.size} lies "
                                     f"beyond the sealed readings ({self.tree.size})")
        unsealed = await self._copy_rest()
        return CopyResult(self.tree.size + unsealed, unsealed, self.blocks, self.checkpoints,
                          self.tree.size, self.tree.root() if self.tree.size else b"")

    def _check_readings(self, rows: list[ReadingRecord]) -> None:
        readings = []
        for row in rows:
            if row.device_id != STATEMENT_DEVICE:
                readings.append(row)
                continue
            try:  # a collector statement (enrolment, revocation, ...): the collector signs it
                statement = SignedStatement.decode(row.envelope).verify(
                    self.schedule.at(row.id).key)
            except ProvenanceError as exc:
                raise VerificationFailed(f"reading {row.id} (collector statement {row.seq}): "
                                         f"{exc.diagnostics()}") from None
            if statement.seq != row.seq:
                raise VerificationFailed(f"reading {row.id}: the row says statement {row.seq}, "
                                         f"its envelope {statement.seq}")
        for row, result in zip(readings, self.verifier.check_batch([(None, r.envelope)
                                                                   for r in readings]),
                               strict=True):
            if isinstance(result, Rejected):
                raise VerificationFailed(f"reading {row.id} ({row.device_id} seq {row.seq}): "
                                         f"{result.reason}: {result.detail}")
            r = result.reading
            if (r.device_id, r.seq, r.boot, r.time_ms, r.kind) != (
                    row.device_id, row.seq, row.boot, row.time_ms, row.kind):
                raise VerificationFailed(f"reading {row.id}: the row says {row.device_id} seq "
                                         f"{row.seq}, its envelope {r.device_id} seq {r.seq}")

    async def _copy_blocks(self, blocks: list[BlockRecord]) -> None:
        first, end = blocks[0].first_reading_id, blocks[-1].end_reading_id
        rows: list[ReadingRecord] = []
        async for chunk in self.source.iter_readings(first, end):
            rows.extend(chunk)
        if first != self.next_id or [r.id for r in rows] != list(range(first, end)):
            raise VerificationFailed(f"readings {first}..{end - 1} are not all stored, or not "
                                     f"after reading {self.next_id - 1}")
        self._check_readings(rows)
        leaves = [RFC9162_SHA256.hash_leaf(r.envelope) for r in rows]
        nodes: list[Node] = []
        checkpoints: list[CheckpointRecord] = []
        for block in blocks:
            self._check_block(block)
            lo = block.first_reading_id - first
            block_leaves = leaves[lo:lo + block.leaf_count]
            header = SignedBlock.decode(block.header).header
            if (header.version != BLOCK_FORMAT_VERSION_2
                    and header.merkle_root != root(block_leaves)):
                raise VerificationFailed(f"block {block.height}: its Merkle root does not "
                                         "match its readings")
            nodes.extend(self.tree.append(block_leaves))
            if header.version == BLOCK_FORMAT_VERSION_2 and (
                    header.tree_size_before != self.tree.size - block.leaf_count
                    or header.merkle_root != self.tree.root()):
                raise VerificationFailed(f"block {block.height}: its tree root does not match "
                                         f"the log tree rebuilt from the readings")
            while self.pending_cp is not None and self.pending_cp.size <= self.tree.size:
                checkpoints.append(self._check_checkpoint(self.pending_cp))
                self.pending_cp = await anext(self.cps, None)
        async with self.target._write("copying into") as conn:
            await self.target.write_batch(conn, BatchWrite(rows))
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO blocks(height, hash, header, first_reading_id, leaf_count, "
                    "sealed_ms) VALUES (%s, %s, %s, %s, %s, %s)",
                    [(b.height, b.hash, b.header, b.first_reading_id, b.leaf_count, b.sealed_ms)
                     for b in blocks])
            await self.target.write_nodes(conn, nodes, self.tree.size)
            for cp in checkpoints:
                await self.target.write_checkpoint(conn, cp)
            last = blocks[-1]
            await conn.execute(
                "UPDATE log_head SET root = %s, height = %s, block_hash = %s, sealed_ms = %s "
                "WHERE id = 1", (self.tree.root(), last.height, last.hash, last.sealed_ms))
        self.next_id = end
        self.blocks += len(blocks)
        self.checkpoints += len(checkpoints)

    def _check_block(self, block: BlockRecord) -> None:
        try:
            signed = SignedBlock.decode(block.header)
            signed.verify(self.schedule.at(block.first_reading_id).key)
        except ProvenanceError as exc:
            raise VerificationFailed(f"block {block.height}: {exc.diagnostics()}") from None
        h = signed.header
        if (signed.hash != block.hash or h.height != block.height
                or h.prev_hash != self.prev_hash or h.leaf_count != block.leaf_count):
            raise VerificationFailed(f"block {block.height}: its header does not chain to "
                                     "the previous block or does not match its row")
        self.prev_hash = block.hash

    def _check_checkpoint(self, cp: CheckpointRecord) -> CheckpointRecord:
        try:
            epoch = self.schedule.at(cp.size)
            verifiers = self.verifiers.get(epoch.from_id)
            if verifiers is None:
                verifiers = self.verifiers[epoch.from_id] = _verifiers(
                    self.origin, epoch.key, epoch.vkeys)
            body = open_checkpoint(cp.note, verifiers, origin=self.origin).checkpoint
        except ProvenanceError as exc:
            raise VerificationFailed(f"checkpoint of tree size {cp.size}: "
                                     f"{exc.diagnostics()}") from None
        if cp.size != self.tree.size or (body.size, body.root) != (cp.size, cp.root) \
                or cp.root != self.tree.root():
            raise VerificationFailed(f"checkpoint of tree size {cp.size} does not match the log "
                                     "tree rebuilt from the readings")
        return cp

    async def _copy_rest(self) -> int:
        """Unsealed readings (without ids), quarantine, device state and gaps, and the
        witnesses' cosignatures (checked by `audit` like the source's)."""
        rest: list[ReadingRecord] = []
        async for chunk in self.source.iter_readings(self.next_id):
            rest.extend(chunk)
        self._check_readings(rest)
        states = await self.source.device_states()
        for state in states.values():
            state.gaps_changed = True
        quarantine = await self.source.quarantine_entries(limit=2**62)
        cosignatures = await self.source._all(
            "SELECT size, witness, line, cosigned_s, received_ms FROM cosignatures")
        async with self.target._write("copying into") as conn:
            await self.target.write_batch(conn, BatchWrite(
                readings=[r._replace(id=0) for r in rest], devices=list(states.values())))
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO quarantine(raw_sha256, reason, detail, topic, topic_device, "
                    "device_id, seq, size, raw, first_ms, last_ms, times_seen) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [(e.record.raw_sha256, e.record.reason, e.record.detail, e.record.topic,
                      e.record.topic_device, e.record.device_id, e.record.seq, e.record.size,
                      e.record.raw, e.record.received_ms, e.last_ms, e.times_seen)
                     for e in quarantine])
                await cur.executemany(
                    "INSERT INTO cosignatures(size, witness, line, cosigned_s, received_ms) "
                    "VALUES (%s, %s, %s, %s, %s)", [tuple(row) for row in cosignatures])
        return len(rest)


async def copy_ledger(source: SQLiteStore, target: PostgresStore) -> CopyResult:
    """Copy the ledger ``source`` into the empty ``target``, verifying every part."""
    async with source.snapshot():
        return await _Copier(source, target).run()
