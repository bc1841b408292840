"""Which log keys a mirror trusts where in the log: the keys of its trust policy, then the keys
each ``key-rotate`` statement hands the log to, the way the audit follows them
(:mod:`collector.tools.keyschedule`).

A rotation statement at leaf ``L``, signed by the collector key in force, names the new P-256
collector key (statements, the checkpoint's ECDSA signature) and the new Ed25519 note key. The
collector seals the statement under the old keys (the checkpoint of tree size ``L + 1``), so
the new keys sign every checkpoint from tree size ``L + 2`` on and every statement after leaf
``L``. A checkpoint must carry the signatures of the keys in force at its size, and only those
of the log (the policy's witnesses still count for its quorum).

What a mirror learned lives in its copy of the log: :func:`load_log_keys` follows the stored
statements again at start, and :func:`record_rotations` writes the rotations into the copy's
``meta`` as the collector does (its collector key, note keys and key history), so that the
copy's own ``audit`` sees the same keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from collector.ledger.key_records import RetiredKey
from collector.ledger.sqlite_store import SQLiteStore
from collector.mirror.errors import MirrorError
from provenance.errors import ProvenanceError
from provenance.keys import PublicKey
from provenance.note import EcdsaNoteVerifier, NoteVerifier, parse_verifier_key
from provenance.statement import KEY_ROTATE, STATEMENT_DEVICE, KeyRotation, SignedStatement
from provenance.trust import TrustPolicy

__all__ = ["Epoch", "LogKeys", "load_log_keys", "record_rotations"]


@dataclass(frozen=True, slots=True)
class Epoch:
    """The log's keys from checkpoints of tree size ``from_size`` on."""

    from_size: int
    policy: TrustPolicy  # checkpoints of this epoch are checked under it
    signers: Mapping[bytes, PublicKey]  # collector keys whose statements count (by key id)
    leaf: int | None = None  # the key-rotate statement that announced it
    seq: int | None = None

    @property
    def key(self) -> PublicKey:
        return next(iter(self.signers.values()))

    def vkeys(self, origin: str) -> list[str]:
        """The note verifier keys of the log in this epoch (as the ledger records them)."""
        return [v.vkey for v in self.policy.required(origin)]


class LogKeys:
    """The epochs of the log's keys followed so far.

    A policy may name later keys of the log as well as its first (every ``.vkey`` file the log
    had, concatenated): a key a rotation statement announces then leaves the first epoch, which
    is the keys the log started with. It must not have signed a statement before that."""

    def __init__(self, policy: TrustPolicy, signers: Mapping[bytes, PublicKey]) -> None:
        self.base = policy
        self.epochs = [Epoch(0, policy, dict(signers))]
        self.used: set[bytes] = set()  # the collector keys that signed a statement so far

    @property
    def current(self) -> Epoch:
        return self.epochs[-1]

    def index_at(self, size: int) -> int:
        """The epoch whose keys sign the checkpoint of tree size ``size``."""
        return max(i for i, e in enumerate(self.epochs) if e.from_size <= size)

    def at(self, size: int) -> Epoch:
        return self.epochs[self.index_at(size)]

    def copy(self) -> LogKeys:
        out = LogKeys(self.base, {})
        out.epochs = list(self.epochs)
        out.used = set(self.used)
        return out

    def verifiers(self, origin: str) -> list[NoteVerifier]:
        """Every key of every epoch that may sign a checkpoint of ``origin``."""
        out: dict[tuple[str, int], NoteVerifier] = {}
        for epoch in self.epochs:
            for v in epoch.policy.note_verifiers(origin):
                out.setdefault((v.name, v.key_id), v)
        return list(out.values())

    def statement(self, leaf: int, entry: bytes) -> SignedStatement:
        """The collector statement at ``leaf``, its signature checked under the key in force
        there (not yet its counter or content)."""
        signed = SignedStatement.decode(entry)
        key = self.current.signers.get(signed.kid)
        if key is None:
            raise MirrorError(f"leaf {leaf}: a collector statement signed by key "
                              f"{signed.kid.hex()[:16]}…, not the collector key in force "
                              "there (the policy's, or the last a key-rotate statement "
                              "earlier in the log announced)")
        signed.verify(key)
        self.used.add(signed.kid)
        return signed

    def rotate(self, leaf: int, seq: int, rotation: KeyRotation, origin: str) -> Epoch:
        """Hand the log to the keys a verified ``key-rotate`` statement at ``leaf`` names."""
        try:
            note_key = parse_verifier_key(rotation.vkey)
        except ProvenanceError as exc:
            raise MirrorError(f"leaf {leaf}: the key-rotate statement names note key "
                              f"{rotation.vkey!r}: {exc.diagnostics()}") from None
        if note_key.name != origin or isinstance(note_key, EcdsaNoteVerifier):
            raise MirrorError(f"leaf {leaf}: the key-rotate statement names note key "
                              f"{rotation.vkey!r}, not an Ed25519 key of log {origin!r}")
        if rotation.kid in self.used:
            raise MirrorError(f"leaf {leaf}: the key-rotate statement names collector key "
                              f"{rotation.kid.hex()[:16]}…, which signed statements before "
                              "the log announced it")
        self._leave_first(rotation.kid, note_key)
        others = tuple(v for v in self.base.verifiers if v.name != origin)
        policy = replace(self.base, verifiers=(*others, note_key),
                         collector_keys=(rotation.key,))
        epoch = Epoch(leaf + 2, policy, {rotation.kid: rotation.key}, leaf, seq)
        self.epochs.append(epoch)
        return epoch

    def _leave_first(self, kid: bytes, note_key: NoteVerifier) -> None:
        """A later key the policy names too is not one of the keys the log started with."""
        first = self.epochs[0]

        def later(v: NoteVerifier) -> bool:
            return ((v.name, v.key_id) == (note_key.name, note_key.key_id)
                    or (isinstance(v, EcdsaNoteVerifier) and v.key.kid == kid))

        policy = replace(first.policy,
                         verifiers=tuple(v for v in first.policy.verifiers if not later(v)),
                         collector_keys=tuple(k for k in first.policy.collector_keys
                                              if k.kid != kid))
        signers = {k: v for k, v in first.signers.items() if k != kid}
        if signers:
            self.epochs[0] = replace(first, policy=policy, signers=signers)

    def describe(self, index: int) -> str:
        epoch = self.epochs[index]
        if epoch.leaf is None:
            return "the keys of the trust policy"
        return (f"the keys the key-rotate statement {epoch.seq} at leaf {epoch.leaf} announced "
                f"(collector key {epoch.key.kid_hex[:16]}…)")


def follow(keys: LogKeys, leaf: int, entry: bytes, origin: str) -> SignedStatement:
    """Check one statement under ``keys`` and, for a ``key-rotate``, follow it."""
    try:
        signed = keys.statement(leaf, entry)
        if signed.statement.type == KEY_ROTATE:
            keys.rotate(leaf, signed.statement.seq, signed.statement.key_rotation(), origin)
    except ProvenanceError as exc:
        raise MirrorError(f"leaf {leaf}: collector statement: {exc.diagnostics()}") from None
    return signed


async def load_log_keys(store: SQLiteStore, policy: TrustPolicy,
                        signers: Mapping[bytes, PublicKey]) -> LogKeys:
    """The policy's keys, followed through the rotation statements the copy holds."""
    keys = LogKeys(policy, signers)
    origin = await store.log_origin()
    if origin is None:
        return keys
    async for row in store.query_readings(device_id=STATEMENT_DEVICE):
        try:
            signed = SignedStatement.decode(row.envelope)
        except ProvenanceError:
            continue  # verified when it was mirrored; `audit` names a damaged copy
        if signed.statement.type == KEY_ROTATE:
            follow(keys, row.id - 1, row.envelope, origin)
        else:
            # Verified when it was mirrored; its signer counts as a key that signed before
            # any later rotation announced it, after a restart as before.
            keys.used.add(signed.kid)
    await record_rotations(store, keys, origin)
    return keys


async def record_rotations(store: SQLiteStore, keys: LogKeys, origin: str) -> None:
    """Write the rotations the copy holds and its ``meta`` does not yet record (a mirror
    stopped between committing the statement and this)."""
    history = await store.key_history()
    for before, after in list(zip(keys.epochs, keys.epochs[1:], strict=False))[len(history):]:
        assert after.seq is not None
        retired = RetiredKey(before.key, tuple(before.vkeys(origin)), after.from_size - 1,
                             after.seq)
        await store.finish_key_rotation(after.key, after.vkeys(origin), retired)
