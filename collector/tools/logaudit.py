"""The audit's log checks: the one tree over every sealed reading, and its checkpoints.

While the audit walks the blocks in height order, :class:`TreeAudit` appends each block's leaf
hashes to a compact range of the whole tree (O(log n) memory) and checks, for a format 2
block, that the header's tree size before is the number of readings sealed before it and its
tree root is the root of the recomputed tree; and for every stored checkpoint at the size just
reached, that its root is that root. After the walk:

* every checkpoint row must decode, name the ledger's log, carry the size and root of its
  row, verify under the trusted collector key (signed-note type 0x02) and the log's Ed25519
  note key, and lie within the tree;
* the stored tree (its perfect nodes) must give the recomputed root at its size;
* for a block whose tree root failed, the stored level-0 nodes (the leaf hashes recorded when
  it was sealed) name the readings whose bytes changed or moved;
* a saved checkpoint (``audit --checkpoint``) must verify, and the ledger must extend it: an
  RFC 9162 consistency proof from its size to the latest checkpoint, built from stored nodes,
  verifies, and the recomputed tree has its root at its size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from collector.ledger.records import BlockRecord, CheckpointRecord, ReadingRecord
from collector.ledger.store import LedgerStore
from collector.tools.audit import AuditReport, Finding
from collector.tools.keyschedule import KeyEpoch, KeySchedule
from provenance.block import SignedBlock
from provenance.checkpoint import open_checkpoint, parse_checkpoint
from provenance.compact import CompactRange
from provenance.errors import ProvenanceError
from provenance.keys import PublicKey
from provenance.merkle import LEAF_PREFIX, consistency_nodes, verify_consistency
from provenance.note import EcdsaNoteVerifier, NoteVerifier, parse_note, parse_verifier_key

__all__ = ["TreeAudit", "check_log", "check_saved_checkpoint", "saved_sizes"]

_LIMIT = 20


class TreeAudit:
    """The recomputed log tree, grown block by block.

    A format 2 block whose root fails is named once: its readings are compared with the leaf
    hashes recorded when it was sealed (naming a changed or moved reading), and the tree is
    then re-based on the stored nodes at the block's end when those give the signed root, so
    that one damaged block does not make every later block fail too.
    """

    def __init__(self, report: AuditReport, store: LedgerStore,
                 wanted: Iterable[int] = (), *, has_log: bool = True) -> None:
        self.report = report
        self.store = store
        self.has_log = has_log  # False: a format 1 ledger never migrated (no checkpoint)
        self.tree = CompactRange()
        self.wanted = set(wanted)  # sizes whose recomputed root a saved checkpoint needs
        self.roots: dict[int, bytes] = {}  # wanted size -> recomputed root
        self.block_ends: set[int] = set()  # tree sizes a block leaves (checkpoints sign these)

    def fail(self, check: str, detail: str, block: BlockRecord | None) -> None:
        self.report.findings.append(Finding(check, detail, block.height if block else None))

    async def _rebase(self, size: int) -> bool:
        try:
            self.tree = await self.store.compact_range(size)
        except Exception:  # a missing node row (StoreError): nothing to re-base on
            return False
        return True

    async def grow(self, block: BlockRecord, header: SignedBlock | None,
                   readings: Sequence[ReadingRecord]) -> None:
        h = header.header if header is not None else None
        v1 = h is None or h.tree_size_before is None
        if v1 and not self.has_log:
            # A format 1 ledger never migrated: it has no log tree to hold to, and each block's
            # own root is checked against its signed header. (A later format 2 block re-bases
            # on the stored nodes, which its signed root commits to.)
            return
        self.block_ends.add(block.end_reading_id - 1)
        leaves = _leaf_hashes(readings)
        if h is None or h.tree_size_before is None:
            self.tree.extend(leaves)  # format 1 (or unreadable): the tree as migrate built it
            self._keep_root()
            cp = await self.store.checkpoint(self.tree.size)
            if cp is not None and h is not None and cp.root != self.tree.root():
                self.fail("checkpoint", f"checkpoint of tree size {cp.size} has root "
                          f"{cp.root.hex()}, the tree of the stored readings has "
                          f"{self.tree.root().hex()}", block)
            return
        if h.tree_size_before != block.first_reading_id - 1:
            self.fail("tree size", f"header says the tree held {h.tree_size_before} readings "
                      f"before the block, {block.first_reading_id - 1} were sealed before it",
                      block)
        if self.tree.size != h.tree_size_before and not await self._rebase(h.tree_size_before):
            self.tree.extend(leaves)
            return
        before = self.tree.copy()
        self.tree.extend(leaves)
        computed = self.tree.root()
        if computed == h.merkle_root and self.tree.size == h.tree_size_after:
            self._keep_root()
        else:
            self.fail("merkle root", f"root of the log tree over the {self.tree.size} stored "
                      f"readings is {computed.hex()}, the signed tree root after the block is "
                      f"{h.merkle_root.hex()}", block)
            await self._blame(block, before, readings, leaves, h.merkle_root)
            size_after = h.tree_size_after
            assert size_after is not None
            if await self._rebase(size_after) and self.tree.root() != h.merkle_root:
                self.fail("tree nodes", f"the stored tree nodes give another root at size "
                          f"{size_after} than the block signs", block)
        cp = await self.store.checkpoint(block.end_reading_id - 1)
        if cp is None:
            self.fail("checkpoint", f"no checkpoint of tree size {block.end_reading_id - 1}, "
                      "though the collector signs one in the transaction of every block", block)
        elif cp.root != h.merkle_root:
            self.fail("checkpoint", f"checkpoint of tree size {cp.size} has root "
                      f"{cp.root.hex()}, block {block.height} signs root {h.merkle_root.hex()} "
                      "for that size", block)

    async def grow_log(self, readings: Sequence[ReadingRecord]) -> None:
        """A log with no blocks (a mirror's copy, built from tiles): the readings in leaf
        order; every stored checkpoint the tree passes must have the recomputed root."""
        leaves = _leaf_hashes(readings)
        start, pos = self.tree.size, 0
        while True:
            cp = await self.store.checkpoint_at_least(self.tree.size + 1)
            if cp is None or cp.size > start + len(leaves):
                break
            self.tree.extend(leaves[pos:cp.size - start])
            pos = cp.size - start
            self._keep_root()
            if cp.root != self.tree.root():
                self.fail("checkpoint", f"checkpoint of tree size {cp.size} has root "
                          f"{cp.root.hex()}, the tree of the stored readings has "
                          f"{self.tree.root().hex()}", None)
            else:  # held to the recomputed tree, as a block's end is
                self.block_ends.add(cp.size)
        self.tree.extend(leaves[pos:])
        self._keep_root()

    def _keep_root(self) -> None:
        if self.tree.size in self.wanted:
            self.roots[self.tree.size] = self.tree.root()

    async def _blame(self, block: BlockRecord, before: CompactRange,
                     readings: Sequence[ReadingRecord], leaves: list[bytes],
                     signed_root: bytes) -> None:
        """Name the readings whose leaf differs from the one recorded when it was sealed."""
        recorded = await self.store.leaf_hashes(before.size, before.size + len(leaves))
        at = {h: i for i, h in recorded.items()}
        base = block.first_reading_id - 1
        for r, leaf in zip(readings, leaves, strict=True):
            index = r.id - 1
            if recorded.get(index, leaf) == leaf:
                continue
            j = at.get(leaf)
            if j is not None and 0 <= j - base < len(readings):
                other = readings[j - base] if readings[j - base].id == j + 1 else None
                trial = list(leaves)
                k = index - base
                trial[k], trial[j - base] = trial[j - base], trial[k]
                tree = before.copy()
                tree.extend(trial)
                if other is not None and tree.root() == signed_root:
                    a, b = sorted((r.id, other.id))
                    detail = (f"stored in the place of reading {other.id}: the signed root "
                              f"matches with readings {a} and {b} exchanged")
                    self.report.findings.append(Finding("reading order", detail, block.height,
                                                        index - base, r.id, r.device_id, r.seq))
                    continue
            self.report.findings.append(Finding(
                "leaf hash", "envelope bytes differ from the leaf recorded when the block was "
                "sealed", block.height, index - base, r.id, r.device_id, r.seq))


def _leaf_hashes(readings: Sequence[ReadingRecord]) -> list[bytes]:
    """RFC 9162 leaf hashes of the readings' envelopes (``hash_leaf``, inline: one per
    reading)."""
    sha256, prefix = hashlib.sha256, LEAF_PREFIX
    return [sha256(prefix + r[7]).digest() for r in readings]  # r[7]: the envelope


def _verifiers(origin: str, key: PublicKey, vkeys: Sequence[str]) -> list[NoteVerifier]:
    out: list[NoteVerifier] = [EcdsaNoteVerifier(origin, key)]
    for vkey in vkeys:
        v = parse_verifier_key(vkey)
        if not isinstance(v, EcdsaNoteVerifier):
            out.append(v)
    return out


async def check_log(store: LedgerStore, report: AuditReport, schedule: KeySchedule,
                    audit: TreeAudit) -> None:
    """The checkpoint rows, the stored tree and, for broken blocks, the readings to blame."""
    origin = await store.log_origin()
    vkeys = await store.log_vkeys()
    tree_size = await store.tree_size()
    latest = await store.checkpoint()
    if origin is None:
        if latest or tree_size:
            report.findings.append(Finding("log", "the ledger has a log tree or checkpoints "
                                           "but no log name"))
        return
    if len(schedule.epochs) == 1:  # the keys the ledger records (as before any rotation)
        epoch = schedule.epochs[0]
        schedule = KeySchedule([KeyEpoch(epoch.key, (*epoch.vkeys, *vkeys), epoch.from_id)])
    verifiers = {e.from_id: _verifiers(origin, e.key, e.vkeys) for e in schedule.epochs}
    named = 0
    async for chunk in store.iter_checkpoints():
        for cp in chunk:
            problem = _checkpoint_problem(cp, origin, verifiers[schedule.at(cp.size).from_id],
                                          tree_size)
            if problem is None and cp.size not in audit.block_ends:
                problem = await _unsealed_size(store, cp)
            if problem is not None and named < _LIMIT:
                named += 1
                report.findings.append(Finding("checkpoint", f"checkpoint of tree size "
                                               f"{cp.size}: {problem}", cp.block_height))
    if tree_size > audit.tree.size:
        report.findings.append(Finding("tree size", f"the ledger says its tree holds "
                                       f"{tree_size} readings, {audit.tree.size} are sealed"))
    elif tree_size:
        try:
            stored = await store.tree_root(tree_size)
        except ProvenanceError as exc:
            stored = b""
            report.findings.append(Finding("tree nodes", exc.diagnostics()))
        except Exception as exc:  # a missing node row: StoreError
            stored = b""
            report.findings.append(Finding("tree nodes", str(exc)))
        if stored and tree_size == audit.tree.size and stored != audit.tree.root():
            report.findings.append(Finding(
                "tree nodes", f"the stored tree nodes give root {stored.hex()} at size "
                f"{tree_size}, the stored readings {audit.tree.root().hex()}"))
    if audit.tree.size and tree_size and latest is None:
        report.findings.append(Finding("checkpoint", "the log tree has no checkpoint"))


def _checkpoint_problem(cp: CheckpointRecord, origin: str, verifiers: Sequence[NoteVerifier],
                        tree_size: int) -> str | None:
    try:
        signed = open_checkpoint(cp.note, verifiers, origin=origin)
    except ProvenanceError as exc:
        return f"its note does not verify: {exc.diagnostics()}"
    have = {(s.name, s.key_id) for s in signed.note.verified}
    missing = [f"{v.name}+{v.key_id:08x}" for v in verifiers if (v.name, v.key_id) not in have]
    if missing:
        return f"not signed by {', '.join(missing)}"
    body = signed.checkpoint
    if (body.size, body.root) != (cp.size, cp.root):
        return (f"the signed note says size {body.size} root {body.root.hex()}, the row says "
                f"size {cp.size} root {cp.root.hex()}")
    if cp.size > tree_size:
        return f"it lies beyond the tree ({tree_size} readings)"
    return None


async def _unsealed_size(store: LedgerStore, cp: CheckpointRecord) -> str:
    """A checkpoint at a tree size no block ends at: the collector signs one only for the
    tree a block leaves, so its root was never held to a signed block header."""
    try:
        stored = await store.tree_root(cp.size)
    except Exception:  # a missing node row (StoreError) or a bad tile: say only what is sure
        stored = None
    compared = ("" if stored is None else "; its root matches the stored tree" if
                stored == cp.root else f"; the stored tree has root {stored.hex()} at that size")
    return f"no block ends at this tree size (a checkpoint is signed for each block){compared}"


def saved_sizes(notes: Iterable[bytes]) -> list[int]:
    """The tree sizes of saved checkpoint notes that parse (the others fail later, named)."""
    sizes = []
    for data in notes:
        try:
            sizes.append(parse_checkpoint(parse_note(data).text).size)
        except ProvenanceError:
            continue
    return sizes


async def check_saved_checkpoint(store: LedgerStore, report: AuditReport,
                                 keys: KeySchedule | PublicKey, data: bytes,
                                 extra_vkeys: Sequence[str] = (),
                                 roots: Callable[[int], bytes | None] | None = None) -> None:
    """The ledger extends the checkpoint ``data`` someone saved earlier."""
    where = "saved checkpoint"
    try:
        origin = parse_checkpoint(parse_note(data).text).origin
        vkeys = [*await store.log_vkeys(), *extra_vkeys]
        epochs = keys.epochs if isinstance(keys, KeySchedule) else [KeyEpoch(keys, (), 1)]
        verifiers = [v for e in epochs for v in _verifiers(origin, e.key, (*e.vkeys, *vkeys))]
        saved = open_checkpoint(data, verifiers, origin=await store.log_origin()).checkpoint
    except ProvenanceError as exc:
        report.findings.append(Finding(where, f"does not verify: {exc.diagnostics()}"))
        return
    latest = await store.checkpoint()
    if latest is None or latest.size < saved.size:
        report.findings.append(Finding(where, f"tree size {saved.size}, but the ledger's "
                                       f"latest checkpoint is {latest.size if latest else 0}: "
                                       "the log was cut off"))
        return
    try:
        proof = await store.subtree_hashes(consistency_nodes(saved.size, latest.size))
        verify_consistency(saved.size, latest.size, saved.root, latest.root, proof)
    except Exception as exc:
        detail = exc.diagnostics() if isinstance(exc, ProvenanceError) else str(exc)
        report.findings.append(Finding(where, f"the ledger does not extend tree size "
                                       f"{saved.size} root {saved.root.hex()}: {detail}"))
        return
    computed = roots(saved.size) if roots else None
    if computed is not None and computed != saved.root:
        report.findings.append(Finding(where, f"the stored readings give root "
                                       f"{computed.hex()} at size {saved.size}, the saved "
                                       f"checkpoint {saved.root.hex()}"))
    report.notes.append(f"extends the saved checkpoint of tree size {saved.size} "
                           f"(consistency proof of {len(proof)} hashes to size {latest.size})")
