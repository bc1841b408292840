"""Collector key rotation: ``ledger-collector key rotate`` prepares it, the collector completes
it at its next start, and the log itself records it. The same steps on SQLite and PostgreSQL;
the stores differ only in their SQL (:mod:`collector.ledger.sqlite_keys`,
:mod:`collector.ledger.pg_keys`) and in how they seal (one writer; the cluster's sealer).

``key rotate`` (collector stopped; it holds the ledger lock) keeps the old key files under
names that carry their key id (``KEY.<kid>.pem``, ``KEY.<kid>.note``, mode 0600), writes a new
P-256 key and a new Ed25519 note key, records the *pending* rotation in the ledger, then puts
the new keys in place as ``KEY.pem`` / ``KEY.note``. Until the ledger records the pending
rotation nothing has changed (a rerun starts over); after it, the file moves are idempotent
and the collector finishes them at start.

At its next start the collector, still signing with the old keys:

1. seals every unsealed leaf under the old keys, so the log it reads next is complete;
2. logs a ``key-rotate`` collector statement signed by the old key naming the new P-256 key
   and the new note verifier key (skipped when the log already holds it); on PostgreSQL as a
   cluster logs every statement: under the ``@collector`` row lock, with the seq that follows
   every statement row, sealed or not, and no leaf id (the cluster's sealer numbers it);
3. seals it under a checkpoint signed by the old keys;
4. in one transaction makes the new key the ledger's collector key and note verifier keys
   and appends the old key to the key history.

From then on block headers, checkpoints and statements are signed with the new keys. A kill
at any point leaves either the old keys signing (steps 1-3 are redone or skipped) or the
statement logged and sealed and the new keys signing: no checkpoint is ever signed by a key
the log has not announced in an earlier checkpoint's tree. On PostgreSQL steps 1-4 are one
transaction holding the pending rotation's row (:meth:`rotation_claim`), so a kill undoes them
all, and of several collectors started together one completes the rotation while the others
wait, then find it done.

Several collectors share a PostgreSQL ledger, and each signs with the collector key. ``key
rotate`` therefore refuses while PostgreSQL sees any collector connected (by the
``application_name`` a running collector gives its connections); once the rotation is
recorded, a collector started with the old key file is refused, with a pointer to the new
files. The operator copies the new key files to every collector machine before starting them
again (docs/scaling.md, "Rotating the collector key").
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from collector import faults
from collector.errors import ConfigError, UsageError
from collector.ledger.key_records import PendingRotation, RetiredKey
from collector.ledger.logkeys import (
    checkpoint_signers,
    load_note_key,
    note_key_path,
    save_note_key,
)
from collector.ledger.pg_store import PostgresStore
from collector.ledger.records import BatchWrite
from collector.ledger.sealer import Sealer, TreeLog
from collector.ledger.statement_log import StatementLog
from collector.ledger.store import LedgerStore
from provenance.errors import ProvenanceError
from provenance.keyfile import load_private_key, save_private_key
from provenance.keys import PrivateKey, PublicKey
from provenance.note import Ed25519NoteSigner, NoteSigner
from provenance.statement import (
    STATEMENT_DEVICE,
    KeyRotation,
    Statement,
    key_rotation_statement,
)

__all__ = ["RotationPlan", "complete_rotation", "prepare_rotation"]

_STAGED = ".rotating"
_ALL = 1 << 30  # block size when sealing what waits: all of it in one block


@dataclass(frozen=True, slots=True)
class RotationPlan:
    """What ``key rotate`` did: the old and new key ids and where the old files went."""

    old_kid: bytes
    new_kid: bytes
    old_key_file: Path
    old_note_file: Path
    new_vkeys: tuple[str, ...]


def _kept(path: Path, kid: bytes) -> Path:
    """``KEY.pem`` -> ``KEY.<kid 16 hex>.pem`` (same for ``.note``)."""
    return path.with_name(f"{path.stem}.{kid.hex()[:16]}{path.suffix}")


def _staged(path: Path) -> Path:
    return path.with_name(path.name + _STAGED)


def _copy_private(src: Path, dst: Path) -> None:
    """Copy a key file owner-only and durably (idempotent: an existing copy is kept)."""
    if dst.exists():
        return
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f, src.open("rb") as s:
        shutil.copyfileobj(s, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dst)


def _install_staged(key_file: Path) -> None:
    """Move staged new key files into place (idempotent)."""
    for path in (key_file, note_key_path(key_file)):
        staged = _staged(path)
        if staged.exists():
            os.replace(staged, path)
    dir_fd = os.open(key_file.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


async def prepare_rotation(store: LedgerStore, key_file: Path, *,
                           new_key: PrivateKey | None = None) -> RotationPlan:
    """``key rotate``: new keys in place and the rotation pending in the ledger. No collector
    may run: the caller holds a SQLite ledger's writer lock; on PostgreSQL any collector
    still connected is refused here."""
    if await store.pending_key_rotation() is not None:
        raise UsageError("a key rotation is already pending: start the collector once to "
                         "complete it, then rotate again")
    running = await store.running_collectors()
    if running:
        raise UsageError(
            f"{len(running)} collector(s) are connected to this ledger: {', '.join(running)}. "
            "Stop every collector of the ledger first (each signs with the key being "
            "replaced), rotate, copy the new key files to every collector machine, then "
            "start the collectors again")
    stored = await store.collector_public_key()
    origin = await store.log_origin()
    if stored is None or origin is None:
        raise UsageError("this ledger has no collector key or log name; run "
                         "`ledger-collector init` (or `migrate`) first")
    note_file = note_key_path(key_file)
    try:
        old = load_private_key(key_file)
    except ProvenanceError as exc:
        raise ConfigError(f"collector key: {exc.diagnostics()}") from None
    if old.kid != stored.kid:
        raise ConfigError(f"{key_file} (key id {old.kid.hex()}) is not the collector key of "
                          f"this ledger ({stored.kid_hex})")
    load_note_key(note_file)  # present and private
    new = new_key or PrivateKey.generate()
    if new.kid == old.kid:
        raise UsageError("the new collector key is the key in force")
    note = Ed25519NoteSigner.generate(origin)
    # 1. keep the old files under their key id; stage the new ones (nothing recorded yet, so
    #    a crash here leaves the old keys in force and a rerun starts over)
    old_key_file, old_note_file = _kept(key_file, old.kid), _kept(note_file, old.kid)
    _copy_private(key_file, old_key_file)
    _copy_private(note_file, old_note_file)
    for staged in (_staged(key_file), _staged(note_file)):
        staged.unlink(missing_ok=True)
    save_private_key(new, _staged(key_file))
    save_note_key(note, _staged(note_file))
    # 2. the commit point
    await store.record_key_rotation(PendingRotation(new.kid, str(old_key_file),
                                                    str(old_note_file)))
    faults.point("rotate.recorded")
    # 3. new keys in place (the collector redoes this at start if we die here)
    _install_staged(key_file)
    vkeys = tuple(s.verifier.vkey for s in checkpoint_signers(origin, new, note))
    key_file.with_name(key_file.name.removesuffix(".pem") + ".vkey").write_text(
        "".join(v + "\n" for v in vkeys))
    return RotationPlan(old.kid, new.kid, old_key_file, old_note_file, vkeys)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def complete_rotation(store: LedgerStore, key_file: str) -> bool:
    """At collector start: complete a pending rotation; True if this call completed one."""
    async with store.rotation_claim():
        pending = await store.pending_key_rotation()
        if pending is None:
            return False
        path = Path(key_file)
        _install_staged(path)
        stored = await store.collector_public_key()
        origin = await store.log_origin()
        assert stored is not None and origin is not None
        where = ("; start the collector of the machine that ran `ledger-collector key rotate` "
                 "first (it completes the rotation), and copy the new key files to the others")
        try:
            old = load_private_key(pending.old_key_file)
            new = load_private_key(path)
        except ProvenanceError as exc:
            raise ConfigError(f"completing the key rotation: {exc.diagnostics()}{where}"
                              ) from None
        if old.kid != stored.kid or new.kid != pending.new_kid:
            raise ConfigError(
                f"completing the key rotation: {pending.old_key_file} must hold the ledger's "
                f"key {stored.kid_hex} and {path} the new key {pending.new_kid.hex()}{where}")
        old_note = load_note_key(Path(pending.old_note_file))
        new_note = load_note_key(note_key_path(path))
        old_signers = checkpoint_signers(origin, old, old_note)
        # 1. what was admitted before, sealed under the old keys: the log read next is whole
        await _seal_pending(store, old, origin, old_signers)
        earlier = [r.key for r in await store.key_history()]
        # 2. the statement, signed by the old key (once)
        rotation = KeyRotation(new.public, new_note.verifier.vkey)
        statements = await _log_rotation(store, old, earlier, rotation)
        # 3. sealed under the old keys
        size = await _seal_pending(store, old, origin, old_signers)
        faults.point("rotate.sealed")
        # 4. switch
        await store.finish_key_rotation(
            new.public, [s.verifier.vkey for s in checkpoint_signers(origin, new, new_note)],
            RetiredKey(old.public, tuple(s.verifier.vkey for s in old_signers), size,
                       statements.next_seq - 1))
    return True


async def _log_rotation(store: LedgerStore, old: PrivateKey, earlier: list[PublicKey],
                        rotation: KeyRotation) -> StatementLog:
    """Append the ``key-rotate`` statement signed by ``old`` unless the log holds it; the
    statement log after it.

    SQLite (one writer): with the next reading id. PostgreSQL: as every statement a cluster
    logs, inside the completing transaction it joins: the ``@collector`` row locked (an
    ``erase`` or a collector logging statements waits, or is waited for), the next seq read
    from every statement row under that lock, sealed or not, and the row written without a
    leaf id for the cluster's sealer to number."""
    now = _now_ms()

    def make(seq: int) -> Statement:
        return key_rotation_statement(seq, now, rotation)

    if not isinstance(store, PostgresStore):
        statements = await StatementLog.load(store, old, earlier)
        if rotation.kid not in statements.rotated_to:
            due = statements.sign(make)
            await store.commit_batch(BatchWrite(readings=[due.record(
                await store.next_reading_id(), now)]))
            faults.point("rotate.statement_committed")
        return statements
    from collector.ledger.pg_cluster import ClusterLedger

    cluster = ClusterLedger(store)
    async with cluster.admission([STATEMENT_DEVICE]) as admission:
        statements = StatementLog.from_rows(await cluster.statement_rows(admission), old,
                                            earlier)
        if rotation.kid not in statements.rotated_to:
            due = statements.sign(make)
            await cluster.write(admission, BatchWrite(readings=[due.record(0, now)]))
            faults.point("rotate.statement_committed")
    return statements


async def _seal_pending(store: LedgerStore, key: PrivateKey, origin: str,
                        signers: list[NoteSigner]) -> int:
    """Seal every committed, unsealed leaf under ``key``; the tree size after."""
    if isinstance(store, PostgresStore):
        from collector.ledger.pg_cluster import ClusterLedger

        cluster = ClusterLedger(store)
        while await cluster.seal(key, origin, signers, size=_ALL, age_ms=0, now_ms=_now_ms,
                                 force=True) is not None:
            pass
        if (await cluster.unsealed())[0]:
            raise UsageError("another collector is sealing this ledger: stop every collector "
                             "of the ledger, then start one to complete the key rotation")
        return await store.tree_size()
    size = await store.tree_size()
    sealer = Sealer(key, await store.last_block(), await store.pending_leaves(), size=_ALL,
                    age_ms=0, log=TreeLog(origin, signers, await store.compact_range(size)))
    while sealer.pending:
        block = sealer.seal(_now_ms())
        await store.commit_block(block)
        sealer.sealed(block)
    return sealer.tree_size
