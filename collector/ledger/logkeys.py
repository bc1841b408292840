"""The log's note signing key: an Ed25519 key in the signed-note key format, in a file beside
the collector key (``collector-key.pem`` -> ``collector-key.note``, mode 0600).

Checkpoints carry two signatures: this key's (type 0x01, what witnesses and Go's
``golang.org/x/mod/sumdb/note`` read) and the collector's P-256 key's (type 0x02).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from collector import faults
from collector.errors import ConfigError, UsageError
from collector.ledger.sealer import TreeLog
from collector.ledger.store import LedgerStore
from provenance.errors import ProvenanceError
from provenance.keys import PrivateKey
from provenance.note import EcdsaNoteSigner, Ed25519NoteSigner, NoteSigner

__all__ = ["check_log_name", "checkpoint_signers", "ensure_log_keys", "load_note_key",
           "load_tree_log", "note_key_path", "save_note_key"]


def note_key_path(collector_key_file: str | os.PathLike[str]) -> Path:
    p = Path(collector_key_file)
    return p.with_name(p.name.removesuffix(".pem") + ".note")


def save_note_key(signer: Ed25519NoteSigner, path: Path) -> None:
    """Write the note key owner-only; never overwrite one.

    Crash-safe: the key is written and fsynced under a temporary name and then linked to
    ``path`` (which fails if ``path`` exists), so a process killed at any point leaves either
    no key at ``path`` or the whole key, never an empty or partial file that every later
    start would refuse."""
    if path.exists():
        raise FileExistsError(errno.EEXIST, "a note key is already there", str(path))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(signer.skey + "\n")
            f.flush()
            os.fsync(f.fileno())
        faults.point("note_key.written")
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_note_key(path: Path) -> Ed25519NoteSigner:
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"note key {path}: {exc.strerror}; `ledger-collector init` (a new "
                          "ledger) or `ledger-collector migrate` (a format 1 ledger) creates "
                          "it") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"note key {path} has mode {stat.S_IMODE(mode):04o}; it must be "
                          f"readable by its owner only: run `chmod 600 {path}`")
    try:
        return Ed25519NoteSigner.from_skey(text)
    except ProvenanceError as exc:
        raise ConfigError(f"note key {path}: {exc.diagnostics()}") from None


def checkpoint_signers(origin: str, key: PrivateKey, note_key: Ed25519NoteSigner
                       ) -> list[NoteSigner]:
    """Ed25519 first (the signature C2SP tools look for), then the collector's ECDSA key."""
    if note_key.name != origin:
        raise ConfigError(f"the note key is for log {note_key.name!r}, the ledger is log "
                          f"{origin!r}")
    return [note_key, EcdsaNoteSigner(origin, key)]


async def load_tree_log(store: LedgerStore, key: PrivateKey, key_file: str) -> TreeLog:
    """The log the running collector grows, checked against the ledger: it must have a log
    name and note key, and its tree must cover exactly the sealed readings."""
    origin = await store.log_origin()
    last = await store.last_block()
    sealed = last.end_reading_id - 1 if last else 0
    size = await store.tree_size()
    if origin is None or size != sealed:
        raise UsageError(
            f"{getattr(store, 'path', 'the ledger')} is a format 1 ledger (its blocks are not "
            "one log tree yet); run "
            "`ledger-collector migrate` once, then start the collector again"
        )
    note_key = load_note_key(note_key_path(key_file))
    return TreeLog(origin, checkpoint_signers(origin, key, note_key),
                   await store.compact_range(size))


def check_log_name(origin: str) -> None:
    """A log name is one printable line without spaces or '+' (it names the note key)."""
    if not origin or any(c <= " " or c == "+" for c in origin) or not origin.isprintable():
        raise UsageError(f"log name {origin!r} must be one word of printable characters "
                         "without spaces or '+', e.g. sensorledger.example/water-busan")


def ensure_log_keys(origin: str, key: PrivateKey, key_file: Path) -> list[str]:
    """Create the note key beside the collector key if absent (or use the one there); write
    KEY.vkey; return the log's verifier keys (Ed25519 note key, then the collector's ECDSA)."""
    path = note_key_path(key_file)
    if path.exists():
        note_key = load_note_key(path)
    else:
        note_key = Ed25519NoteSigner.generate(origin)
        save_note_key(note_key, path)
    vkeys = [s.verifier.vkey for s in checkpoint_signers(origin, key, note_key)]
    key_file.with_name(key_file.name.removesuffix(".pem") + ".vkey").write_text(
        "".join(v + "\n" for v in vkeys))
    return vkeys
