"""What a ledger records about collector key rotations, whichever database holds it.

``key rotate`` records a *pending* rotation (the new key's id and where the old key files
went); the collector completes it at its next start (:mod:`collector.ledger.key_rotation`) and,
in one transaction, makes the new key the ledger's collector key and note verifier keys and
appends the retired key to the key history. Audit reads the history to check what the retired
keys signed. Both stores keep these as JSON values of ``meta`` (``key_rotation_pending``,
``collector_key_history``); only their SQL differs (:mod:`collector.ledger.sqlite_keys`,
:mod:`collector.ledger.pg_keys`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from collector.errors import StoreError
from provenance.errors import ProvenanceError
from provenance.keys import PublicKey

__all__ = ["HISTORY", "PENDING", "PendingRotation", "RetiredKey", "history_from_json",
           "history_to_json", "rotated_meta", "stored_collector_key"]

PENDING = "key_rotation_pending"
HISTORY = "collector_key_history"


@dataclass(frozen=True, slots=True)
class PendingRotation:
    """A rotation ``key rotate`` recorded and the collector has not completed yet."""

    new_kid: bytes
    old_key_file: str
    old_note_file: str

    def to_json(self) -> str:
        return json.dumps({"new_kid": self.new_kid.hex(), "old_key_file": self.old_key_file,
                           "old_note_file": self.old_note_file}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PendingRotation:
        try:
            v = json.loads(text)
            return cls(bytes.fromhex(v["new_kid"]), str(v["old_key_file"]),
                       str(v["old_note_file"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"the pending key rotation record is damaged: {exc}") from None


@dataclass(frozen=True, slots=True)
class RetiredKey:
    """A collector key that signed until a rotation: its public key, its note verifier keys,
    the tree size of the last checkpoint it signed and the seq of the statement that retired
    it."""

    key: PublicKey
    vkeys: tuple[str, ...]
    last_size: int
    statement_seq: int

    def to_dict(self) -> dict[str, object]:
        return {"key": self.key.to_pem(), "vkeys": list(self.vkeys),
                "last_size": self.last_size, "statement_seq": self.statement_seq}

    @classmethod
    def from_dict(cls, v: dict[str, object]) -> RetiredKey:
        key, vkeys = v["key"], v["vkeys"]
        last_size, seq = v["last_size"], v["statement_seq"]
        if not (isinstance(key, str) and isinstance(vkeys, list) and isinstance(last_size, int)
                and isinstance(seq, int)):
            raise StoreError("the collector key history is damaged")
        try:
            public = PublicKey.from_pem(key)
        except ProvenanceError as exc:
            raise StoreError(f"the collector key history is damaged: {exc}") from None
        return cls(public, tuple(str(x) for x in vkeys), last_size, seq)


def stored_collector_key(pem: str) -> PublicKey:
    """The ledger's collector public key from its ``meta`` value."""
    try:
        return PublicKey.from_pem(pem)
    except ProvenanceError as exc:
        raise StoreError(f"stored collector key is damaged: {exc.diagnostics()}") from None


def history_from_json(text: str | None) -> list[RetiredKey]:
    """The ``collector_key_history`` value (None: no rotation yet), oldest first."""
    if text is None:
        return []
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise StoreError(f"the collector key history is damaged: {exc}") from None
    if not isinstance(items, list):
        raise StoreError("the collector key history is damaged")
    return [RetiredKey.from_dict(v) for v in items]


def history_to_json(history: Sequence[RetiredKey]) -> str:
    return json.dumps([r.to_dict() for r in history], sort_keys=True)


def rotated_meta(history: Sequence[RetiredKey], new_key: PublicKey, new_vkeys: Sequence[str],
                 retired: RetiredKey) -> list[tuple[str, str]]:
    """The ``meta`` rows a completed rotation sets (the pending row is then deleted)."""
    return [("collector_public_key", new_key.to_pem()),
            ("log_vkeys", "\n".join(new_vkeys)),
            (HISTORY, history_to_json([*history, retired]))]
