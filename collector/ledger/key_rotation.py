"""Collector key rotation: ``ledger-collector key rotate`` prepares it, the collector completes
it at its next start, and the log itself records it.

``key rotate`` (collector stopped; it holds the ledger lock) keeps the old key files under
names that carry their key id (``KEY.<kid>.pem``, ``KEY.<kid>.note``, mode 0600), writes a new
P-256 key and a new Ed25519 note key, records the *pending* rotation in the ledger, then puts
the new keys in place as ``KEY.pem`` / ``KEY.note``. Until the ledger records the pending
rotation nothing has changed (a rerun starts over); after it, the file moves are idempotent
and the collector finishes them at start.

At its next start the collector, still signing with the old keys:

1. logs a ``key-rotate`` collector statement signed by the old key naming the new P-256 key
   and the new note verifier key (skipped when the log already holds it);
2. seals every unsealed leaf, the statement last, under checkpoints signed by the old keys;
3. in one transaction makes the new key the ledger's collector key and note verifier keys
   and appends the old key to the key history.

From then on block headers, checkpoints and statements are signed with the new keys. A kill
at any point leaves either the old keys signing (steps 1-2 are redone or skipped) or the
statement logged and sealed and the new keys signing: no checkpoint is ever signed by a key
the log has not announced in an earlier checkpoint's tree.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from collector import faults
from collector.errors import ConfigError, UsageError
from collector.ledger.logkeys import (
    checkpoint_signers,
    load_note_key,
    note_key_path,
    save_note_key,
)
from collector.ledger.records import BatchWrite
from collector.ledger.sealer import Sealer, TreeLog
from collector.ledger.sqlite_keys import PendingRotation, RetiredKey
from collector.ledger.sqlite_store import SQLiteStore
from collector.ledger.statement_log import StatementLog
from collector.ledger.store import LedgerStore
from provenance.errors import ProvenanceError
from provenance.keyfile import load_private_key, save_private_key
from provenance.keys import PrivateKey
from provenance.note import Ed25519NoteSigner
from provenance.statement import KeyRotation, key_rotation_statement

__all__ = ["RotationPlan", "complete_rotation", "prepare_rotation", "retired_keys"]

_STAGED = ".rotating"


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


async def prepare_rotation(store: SQLiteStore, key_file: Path, *,
                           new_key: PrivateKey | None = None) -> RotationPlan:
    """``key rotate``: new keys in place and the rotation pending in the ledger. The caller
    holds the ledger lock (no collector runs)."""
    if await store.pending_key_rotation() is not None:
        raise UsageError("a key rotation is already pending: start the collector once to "
                         "complete it, then rotate again")
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
    """At collector start (lock held): complete a pending rotation; True if there was one."""
    if not isinstance(store, SQLiteStore):
        return False
    pending = await store.pending_key_rotation()
    if pending is None:
        return False
    path = Path(key_file)
    _install_staged(path)
    stored = await store.collector_public_key()
    origin = await store.log_origin()
    assert stored is not None and origin is not None
    try:
        old = load_private_key(pending.old_key_file)
        new = load_private_key(path)
    except ProvenanceError as exc:
        raise ConfigError(f"completing the key rotation: {exc.diagnostics()}") from None
    if old.kid != stored.kid or new.kid != pending.new_kid:
        raise ConfigError(
            f"completing the key rotation: {pending.old_key_file} must hold the ledger's key "
            f"{stored.kid_hex} and {path} the new key {pending.new_kid.hex()}")
    old_note = load_note_key(Path(pending.old_note_file))
    new_note = load_note_key(note_key_path(path))
    new_signers = checkpoint_signers(origin, new, new_note)
    history = await store.key_history()
    statements = await StatementLog.load(store, old, [r.key for r in history])
    # 1. the statement, signed by the old key (once)
    if new.kid not in statements.rotated_to:
        now = _now_ms()
        due = statements.sign(lambda seq: key_rotation_statement(
            seq, now, KeyRotation(new.public, new_note.verifier.vkey)))
        next_id = await store.next_reading_id()
        await store.commit_batch(BatchWrite(readings=[due.record(next_id, now)]))
        faults.point("rotate.statement_committed")
    # 2. seal everything under the old keys
    size = await store.tree_size()
    sealer = Sealer(old, await store.last_block(), await store.pending_leaves(),
                    size=1 << 30, age_ms=0,
                    log=TreeLog(origin, checkpoint_signers(origin, old, old_note),
                                await store.compact_range(size)))
    while sealer.pending:
        block = sealer.seal(_now_ms())
        await store.commit_block(block)
        sealer.sealed(block)
    faults.point("rotate.sealed")
    # 3. switch
    old_vkeys = tuple(s.verifier.vkey for s in checkpoint_signers(origin, old, old_note))
    await store.finish_key_rotation(
        new.public, [s.verifier.vkey for s in new_signers],
        RetiredKey(old.public, old_vkeys, sealer.tree_size, statements.next_seq - 1))
    return True


async def retired_keys(store: LedgerStore) -> list[RetiredKey]:
    """The ledger's retired collector keys, oldest first (none on PostgreSQL yet)."""
    return await store.key_history() if isinstance(store, SQLiteStore) else []
