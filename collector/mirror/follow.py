"""One catch-up of a mirror: fetch the log's checkpoint, tiles and entries, verify all of it,
and append it to the mirror's own ledger.

A step, from the tree size the mirror holds (``old``) to the size of the checkpoint just
fetched (``new``):

1. The checkpoint verifies under the log's keys in force at its size and names the log the
   mirror follows: the trust policy's keys, then those each ``key-rotate`` statement in the log
   hands the log to (:mod:`collector.mirror.keys`). A checkpoint the keys known so far do not
   sign is checked again under the keys the rotation statements among its new leaves reach
   (read ahead once, when its tiles give its root); a key no statement announced is refused.
2. The level-0 tiles over leaves ``[old, new)`` give the leaf hashes. Appended to the mirror's
   own tree (its right edge at ``old``, from its own stored tiles), they must give the
   checkpoint's root: that proves the new checkpoint extends the one the mirror holds, and
   authenticates those tiles. If they do not, the log's own tiles decide what happened: if they
   reach the new root but give another root at ``old`` than the mirror holds, the log signed two
   histories (a fork: both signed checkpoints are written to the evidence file); otherwise a
   tile is wrong.
3. Every higher-level tile the new size adds equals the one the mirror computes.
4. Every entry bundle holds exactly the entries of its width, each hashing to its leaf; every
   collector statement verifies under the collector key in force at its leaf and carries the
   next counter (a ``key-rotate`` hands the log to the keys it names: a checkpoint of this
   step signed by the keys it retired is refused before that chunk is kept); every reading
   verifies (COSE, payload, signature) under a device key that a statement earlier in the log
   enrolled for that device, and no earlier revocation covers it.
5. Entries, the device keys the statements enrolled or revoked, the tree nodes and the tree
   size are committed a chunk of bundles at a time; the last chunk also stores the checkpoint.

Nothing from a step that fails verification is kept (the chunks committed before a failure
were all verified against the checkpoint's root in 2). Memory: the leaf hashes of one step
(32 bytes a leaf) and the entries of one chunk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from collector import faults
from collector.admission.registry import DeviceKey, RegistrySnapshot
from collector.admission.workers import RegistryShare, WorkerPool
from collector.ledger.records import CheckpointRecord, ReadingRecord
from collector.ledger.sqlite_store import SQLiteStore
from collector.mirror.entries import check_statement, reading_row
from collector.mirror.errors import ForkError, MirrorError
from collector.mirror.fetch import TileSource
from collector.mirror.keys import LogKeys, follow, load_log_keys, record_rotations
from collector.tools.audit import audit_envelopes
from provenance.checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint, parse_checkpoint
from provenance.compact import CompactRange, fold, node_from_tile, range_nodes, tile_entries
from provenance.compact import tile_span as node_tile_span
from provenance.errors import ProvenanceError, UnverifiedNoteError
from provenance.logproof import MISSING_SIGNER, check_checkpoint
from provenance.merkle import HASH_SIZE, RFC9162_SHA256, consistency_nodes
from provenance.misbehaviour import detect, sign_misbehaviour
from provenance.note import NoteSigner, parse_note
from provenance.statement import (
    STATEMENT_DEVICE,
    STATEMENT_KIND,
    SignedStatement,
    is_statement,
)
from provenance.tiles import TILE_WIDTH, Tile, new_tiles, split_hashes, unbundle
from provenance.trust import TrustPolicy

__all__ = ["Mirror", "SyncReport"]

_CHUNK_BUNDLES = 64


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class SyncReport:
    old_size: int
    size: int
    readings: int = 0
    statements: int = 0
    rotations: int = 0  # key-rotate statements followed
    seconds: float = 0.0
    fetched: list[str] = field(default_factory=list)

    def render(self) -> str:
        if self.size == self.old_size:
            return f"up to date at tree size {self.size}"
        rate = (self.size - self.old_size) / self.seconds if self.seconds else 0.0
        text = (f"tree size {self.old_size} -> {self.size}: {self.readings} readings and "
                f"{self.statements} collector statements verified and kept "
                f"({rate:,.0f} entries/s)")
        if self.rotations:
            text += (f"; followed the log's key-rotate statement(s) to {self.rotations} new "
                     "collector key(s)")
        return text


def _other_log_keys(exc: ProvenanceError) -> bool:
    """Whether other keys of the log could explain the refusal: no trusted key signed, or a
    required key did not. A bad signature by a key the mirror trusts, a malformed note or a
    witness quorum not met (rotations do not change the witnesses) are not worth reading the
    new entries for."""
    return exc.code in (UnverifiedNoteError.code, MISSING_SIGNER)


class Mirror:
    def __init__(self, store: SQLiteStore, policy: TrustPolicy, source: TileSource, *,
                 evidence: Path, reporter: NoteSigner, pool: WorkerPool | None = None,
                 chunk_bundles: int = _CHUNK_BUNDLES) -> None:
        self.pool = pool or WorkerPool(1)
        self.share = RegistryShare(self.pool)
        self._registry_version = 0
        self.store = store
        self.policy = policy
        self.source = source
        self.evidence = evidence
        self.reporter = reporter
        self.chunk_bundles = chunk_bundles
        self.collector_keys = {k.kid: k for k in policy.block_keys()}
        if not self.collector_keys:
            raise MirrorError("the trust policy names no collector P-256 key (its PEM or ECDSA "
                              "vkey): a mirror checks the log's statements with it")
        # The log's keys where in the log: read from the copy at the first catch-up, dropped
        # when a catch-up fails (what it followed may not have been kept).
        self._keys: LogKeys | None = None
        self._accepted = 0  # the epoch whose keys signed the checkpoint being caught up to

    def close(self) -> None:
        self.share.close()

    async def _get(self, path: str) -> bytes:
        data = await asyncio.to_thread(self.source.get, path)
        if data is None:
            raise MirrorError(f"the log serves no {path}")
        return data

    async def sync(self) -> SyncReport:
        try:
            return await self._sync()
        except BaseException:
            self._keys = None
            raise

    async def _sync(self) -> SyncReport:
        started = time.monotonic()
        note = await self._get("checkpoint")
        if self._keys is None:
            self._keys = await load_log_keys(self.store, self.policy, self.collector_keys)
        old = await self.store.tree_size()
        signed, leaves = await self._checkpoint(note, self._keys, old)
        cp = signed.checkpoint
        await self._identity(cp)
        report = SyncReport(old, max(old, cp.size))
        epochs = len(self._keys.epochs)
        if cp.size <= old:
            ours = await self.store.tree_root(cp.size)
            if ours != cp.root:
                held = await self.store.checkpoint()
                proof = (await self.store.subtree_hashes(consistency_nodes(cp.size, held.size))
                         if held is not None and held.size > cp.size else [])
                raise await self._fork(signed, proof, f"the log's checkpoint of tree size "
                                       f"{cp.size} has another root than the mirror's copy at "
                                       "that size", served_first=True)
            report.size = old
            return report
        leaves = leaves or await self._leaf_hashes(old, cp.size)
        tree = await self.store.compact_range(old)
        nodes = tree.append(leaves)
        if tree.root() != cp.root:
            await self._diagnose(signed, old)
        await self._check_upper_tiles(old, cp.size, nodes)
        await self._entries(old, cp, note, leaves, report)
        report.seconds = time.monotonic() - started
        report.rotations = len(self._keys.epochs) - epochs
        return report

    async def _checkpoint(self, note: bytes, keys: LogKeys, old: int
                          ) -> tuple[SignedCheckpoint, list[bytes]]:
        """The served checkpoint, verified under the log's keys in force at its size.

        A checkpoint larger than the copy that the keys in force do not sign may be signed by
        keys a ``key-rotate`` statement in the new leaves announced: when the log's tiles give
        the root it signs, its new entries are read for those statements (signed by the key in
        force; :mod:`collector.mirror.keys`) and it is checked under the keys they reach. The
        catch-up then checks everything again, statement by statement. Also returns the new
        leaf hashes when it had to read them."""
        try:
            cp = parse_checkpoint(parse_note(note).text)
        except ProvenanceError as exc:
            raise MirrorError(f"the log's checkpoint does not verify: {exc.diagnostics()}"
                              ) from None
        self._accepted = keys.index_at(cp.size)
        try:
            return check_checkpoint(note, keys.epochs[self._accepted].policy), []
        except ProvenanceError as exc:
            first = exc
        if not _other_log_keys(first):
            raise MirrorError(f"the log's checkpoint of tree size {cp.size} does not verify "
                              f"under {keys.describe(self._accepted)}: {first.diagnostics()}"
                              ) from None
        leaves: list[bytes] = []
        why = "no key-rotate statement in the log announced the keys that signed it"
        if cp.size > old:
            leaves = await self._leaf_hashes(old, cp.size)
            tree = await self.store.compact_range(old)
            tree.append(leaves)
            if tree.root() != cp.root:
                why = ("the log's tiles do not extend the mirror's copy to the root it signs, "
                       "so no key-rotate statement in them counts")
            else:
                ahead = await self._announced(keys.copy(), old, cp, leaves)
                if len(ahead.epochs) > len(keys.epochs):
                    self._accepted = ahead.index_at(cp.size)
                    try:
                        return check_checkpoint(note, ahead.epochs[self._accepted].policy), leaves
                    except ProvenanceError as exc:
                        first = exc
        raise MirrorError(f"the log's checkpoint of tree size {cp.size} does not verify under "
                          f"the keys in force at that size, the trust policy's or those a "
                          f"key-rotate statement in the log announced ({why}): "
                          f"{first.diagnostics()}") from None

    async def _announced(self, keys: LogKeys, old: int, cp: Checkpoint,
                         leaves: list[bytes]) -> LogKeys:
        """``keys`` followed through the rotation statements among leaves ``[old, size)``.
        A rotation at the last leaf is sealed under the old keys: its keys count from the next
        size on, but they already leave the policy's first keys, so that a policy naming every
        key the log had checks that checkpoint under the old keys alone."""
        for index in range(old // TILE_WIDTH, (cp.size - 1) // TILE_WIDTH + 1):
            for leaf, entry in await self._bundle(index, cp.size, old, leaves):
                if is_statement(entry):
                    follow(keys, leaf, entry, cp.origin)
        return keys

    async def _identity(self, cp: Checkpoint) -> None:
        origin = await self.store.log_origin()
        if origin is None:
            # The log's origin last: it marks the identity complete, so a mirror killed
            # between the two writes writes both again at its next start.
            await self.store.set_collector_public_key(next(iter(self.collector_keys.values())))
            faults.point("mirror.identity")
            vkeys = [v.vkey for v in self.policy.verifiers if v.name == cp.origin]
            await self.store.set_log_identity(cp.origin, vkeys)
        elif origin != cp.origin:
            raise MirrorError(f"the log serves checkpoints of {cp.origin!r}; this mirror holds "
                              f"{origin!r}")

    async def _leaf_hashes(self, old: int, new: int) -> list[bytes]:
        """The leaf hashes ``[old, new)`` from the log's level-0 tiles (not trusted yet)."""
        out: list[bytes] = []
        for index in range(old // TILE_WIDTH, (new - 1) // TILE_WIDTH + 1):
            tile = Tile(0, index, min(TILE_WIDTH, new - index * TILE_WIDTH))
            try:
                hashes = split_hashes(await self._get(tile.path()), tile.width)
            except ProvenanceError as exc:
                raise MirrorError(f"tile {tile.path()}: {exc.diagnostics()}") from None
            out += hashes[max(0, old - tile.start):]
        return out

    async def _check_upper_tiles(self, old: int, new: int, nodes: Sequence[tuple[int, int, bytes]]
                                 ) -> None:
        added = tile_entries(nodes)
        for tile in new_tiles(old, new):
            if tile.is_entries or tile.level == 0:
                continue
            stored = await self.store.tree_tile(tile.level, tile.index)
            expected = (stored + b"".join(h for _, h in added.get((tile.level, tile.index), []))
                        )[:tile.width * HASH_SIZE]
            if await self._get(tile.path()) != expected:
                raise MirrorError(f"tile {tile.path()} does not match the tree the checkpoint "
                                  f"of tree size {new} signs: a changed tile")

    async def _server_root(self, size: int, width_at: int) -> bytes:
        """The root at ``size`` from the log's own tiles (those of the tree at ``width_at``)."""
        if size == 0:
            return RFC9162_SHA256.empty_root()
        return await self._server_subtree(0, size, width_at)

    async def _server_subtree(self, begin: int, end: int, width_at: int) -> bytes:
        """The hash of leaves ``[begin, end)`` from the log's tiles of the tree at
        ``width_at``."""
        hashes: list[bytes] = []
        tiles: dict[tuple[int, int], bytes] = {}
        for level, index in range_nodes(begin, end):
            tile_level, tile_index, first, count = node_tile_span(level, index)
            key = (tile_level, tile_index)
            if key not in tiles:
                below = width_at >> (8 * tile_level)
                width = min(TILE_WIDTH, below - tile_index * TILE_WIDTH)
                tiles[key] = await self._get(Tile(tile_level, tile_index, width).path())
            node = node_from_tile(tiles[key], first, count)
            if node is None:
                raise MirrorError(f"the log's tile {tile_level}/{tile_index} is too short")
            hashes.append(node)
        return fold(hashes)

    async def _diagnose(self, signed: SignedCheckpoint, old: int) -> None:
        """The new leaves do not extend the mirror's tree to the checkpoint's root: a fork or a
        changed tile. Always raises. The fork is judged at the size of the last checkpoint the
        mirror holds (below ``old`` after a catch-up cut short)."""
        cp = signed.checkpoint
        held = await self.store.checkpoint()
        base = held.size if held is not None else old
        served_new: bytes | None
        served_base: bytes | None
        try:
            served_new = await self._server_root(cp.size, cp.size)
            served_base = await self._server_root(base, cp.size) if base else None
        except MirrorError:
            served_new = served_base = None
        ours_base = await self.store.tree_root(base) if base else None
        if served_new == cp.root and served_base != ours_base:
            proof = [await self._server_subtree(b, e, cp.size)
                     for b, e in consistency_nodes(base, cp.size)]
            raise await self._fork(signed, proof, f"the log's checkpoint of tree size {cp.size} "
                                   f"does not extend the checkpoint of tree size {base} the "
                                   "mirror holds: its tiles give another root at that size")
        raise MirrorError(f"the log's level-0 tiles over leaves {old}..{cp.size - 1} do not give "
                          f"the root the checkpoint of tree size {cp.size} signs: a changed "
                          "tile")

    async def _fork(self, served: SignedCheckpoint, proof: Sequence[bytes], detail: str, *,
                    served_first: bool = False) -> ForkError:
        """Keep the two contradicting checkpoints as a signed proof of misbehaviour
        (:mod:`provenance.misbehaviour`) and say so. ``proof`` is the consistency proof from
        the smaller size to the larger, from the tree that has the larger (``served_first``:
        the served checkpoint is the smaller one, the mirror's own tree gave the proof)."""
        record = await self.store.checkpoint()
        origin = served.checkpoint.origin
        assert self._keys is not None
        log_keys = self._keys.verifiers(origin)
        found = None
        if record is not None:
            held = open_checkpoint(record.note, log_keys, origin=origin)
            first, second = (served, held) if served_first else (held, served)
            found = detect(first, second, proof, log_keys, int(time.time()))
        if found is None:
            return ForkError(f"FORK: {detail}; no proof of misbehaviour could be built")
        data = sign_misbehaviour(found, self.reporter)
        self.evidence.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.evidence.with_name(self.evidence.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(self.evidence)
        return ForkError(f"FORK: {detail}; proof of misbehaviour ({found.kind}) kept in "
                         f"{self.evidence}", str(self.evidence))

    async def _entries(self, old: int, cp: Checkpoint, note: bytes, leaves: list[bytes],
                       report: SyncReport) -> None:
        keys = {k.kid: k for k in await self.store.device_keys()}
        next_statement = len([r async for r in self.store.query_readings(
            device_id=STATEMENT_DEVICE)]) + 1
        tree: CompactRange = await self.store.compact_range(old)
        log_keys = self._keys
        assert log_keys is not None
        # A log from before enrolments were logged: its first readings precede the statements
        # that enrol their keys (logged once, at the collector's first start after).
        early = (await self._first_enrolments(old, cp, leaves)
                 if next_statement == 1 else {})
        first_bundle, last_bundle = old // TILE_WIDTH, (cp.size - 1) // TILE_WIDTH
        for chunk_start in range(first_bundle, last_bundle + 1, self.chunk_bundles):
            chunk_end = min(last_bundle + 1, chunk_start + self.chunk_bundles)
            entries: list[tuple[int, bytes]] = []  # (leaf index, entry)
            for index in range(chunk_start, chunk_end):
                entries += await self._bundle(index, cp.size, old, leaves)
            rows, changed, next_statement = await self._verify(entries, keys, next_statement,
                                                               early, cp)
            end = entries[-1][0] + 1
            nodes = tree.append([leaves[i - old] for i, _ in entries])
            last = end == cp.size
            if last and log_keys.index_at(cp.size) != self._accepted:
                raise MirrorError(f"the log's checkpoint of tree size {cp.size} is signed by "
                                  f"{log_keys.describe(self._accepted)}, which the log's "
                                  "statements do not hand it to")
            record = CheckpointRecord(cp.size, cp.root, note, None, _now_ms()) if last else None
            epochs = len(log_keys.epochs)
            await self.store.commit_log_entries(rows, changed, nodes, end, record)
            faults.point("mirror.after_commit")
            if len(await self.store.key_history()) < epochs - 1:
                await record_rotations(self.store, log_keys, cp.origin)
            report.statements += sum(1 for r in rows if r.device_id == STATEMENT_DEVICE)
            report.readings += sum(1 for r in rows if r.device_id != STATEMENT_DEVICE)

    async def _bundle(self, index: int, size: int, old: int,
                      leaves: list[bytes]) -> list[tuple[int, bytes]]:
        """The entries (leaf index, bytes) at or after ``old`` of entry bundle ``index`` in the
        tree of ``size`` leaves, each checked against its authenticated leaf hash."""
        bundle = Tile(-1, index, min(TILE_WIDTH, size - index * TILE_WIDTH))
        try:
            got = unbundle(await self._get(bundle.path()), bundle.width)
        except ProvenanceError as exc:
            raise MirrorError(f"entry bundle {bundle.path()}: {exc.diagnostics()}") from None
        out: list[tuple[int, bytes]] = []
        for offset, entry in enumerate(got):
            leaf = bundle.start + offset
            if leaf < old:
                continue
            if RFC9162_SHA256.hash_leaf(entry) != leaves[leaf - old]:
                raise MirrorError(f"entry {leaf} in {bundle.path()} does not hash to its leaf "
                                  "in the tile the checkpoint signs: a changed entry")
            out.append((leaf, entry))
        return out

    async def _first_enrolments(self, old: int, cp: Checkpoint,
                                leaves: list[bytes]) -> dict[bytes, DeviceKey]:
        """The keys the log's first run of statements enrols, for the readings ahead of it
        (empty when the log starts with statements, as every log since they exist does)."""
        keys: dict[bytes, DeviceKey] = {}
        seen, size = 0, cp.size
        assert self._keys is not None
        log_keys = self._keys.copy()
        for index in range(old // TILE_WIDTH, (size - 1) // TILE_WIDTH + 1):
            for leaf, entry in await self._bundle(index, size, old, leaves):
                if not is_statement(entry):
                    if seen:
                        return keys
                    continue
                if leaf == 0:
                    return keys  # statements first: nothing ahead of them
                seen += 1
                key = check_statement(leaf, entry, seen, keys, log_keys, cp.origin)
                if key is not None:
                    keys[key.kid] = key
        if not seen and size > old:
            raise MirrorError("the log holds readings but no enrolment statement: a collector "
                              "of this version logs them at its next start; mirror it then")
        return keys

    async def _verify(self, entries: list[tuple[int, bytes]], keys: dict[bytes, DeviceKey],
                      next_statement: int, early: dict[bytes, DeviceKey], cp: Checkpoint
                      ) -> tuple[list[ReadingRecord], list[DeviceKey], int]:
        """Every entry of a chunk, in leaf order: statements change the registry the readings
        after them are checked against. Readings ahead of the log's first statement are
        checked against the keys its first statements enrol (``early``)."""
        rows: list[ReadingRecord] = []
        changed: dict[bytes, DeviceKey] = {}
        pending: list[tuple[int, bytes]] = []
        received = _now_ms()
        log_keys = self._keys
        assert log_keys is not None

        async def flush() -> None:
            # The audit's own check of stored envelopes (the reading verifier), spread over
            # the pool's processes a slice each.
            if not pending:
                return
            registry = early if next_statement == 1 else keys
            self._registry_version += 1
            source = self.share.publish(RegistrySnapshot.of(self._registry_version,
                                                            registry.values()))
            step = max(256, -(-len(pending) // (self.pool.workers * 2)))
            futures = [self.pool.submit(audit_envelopes, source,
                                        [e for _, e in pending[i:i + step]])
                       for i in range(0, len(pending), step)]
            results = [r for f in futures for r in await f]
            for (leaf, entry), result in zip(pending, results, strict=True):
                rows.append(reading_row(leaf, entry, result, received))
            pending.clear()

        for leaf, entry in entries:
            if not is_statement(entry):
                pending.append((leaf, entry))
                continue
            await flush()
            key = check_statement(leaf, entry, next_statement, keys, log_keys, cp.origin)
            if log_keys.index_at(cp.size) > self._accepted:
                raise MirrorError(
                    f"the log's checkpoint of tree size {cp.size} is signed by "
                    f"{log_keys.describe(self._accepted)}, which the key-rotate statement at "
                    f"leaf {leaf} retired before that size: a checkpoint signed by a retired key")
            if key is not None:
                keys[key.kid] = changed[key.kid] = key
            statement = SignedStatement.decode(entry).statement
            rows.append(ReadingRecord(leaf + 1, STATEMENT_DEVICE, statement.seq, 0,
                                      statement.time_ms, received, STATEMENT_KIND, entry))
            next_statement += 1
        await flush()
        return rows, list(changed.values()), next_statement
