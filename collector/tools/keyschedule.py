"""Which collector key was in force where in the log: the audit's view of key rotations.

The schedule starts from a key the auditor trusts and follows the ``key-rotate`` collector
statements in the log: a rotation statement that verifies under the key in force hands the log
to the key it names, for every block that starts, and every checkpoint whose tree ends, after
the statement's leaf. A key no statement announced is never in force, so a checkpoint or header
it signed is a finding.

Where the audit starts: a ledger that was rotated keeps its retired keys (oldest first); when
the trusted key is one of the ledger's keys the schedule starts from the first of them and
must pass through the trusted key. Pass the first key as ``--collector-key`` to pin it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from collector.ledger.store import LedgerStore
from provenance.errors import ProvenanceError
from provenance.keys import PublicKey
from provenance.statement import KEY_ROTATE, STATEMENT_DEVICE, SignedStatement

__all__ = ["KeyEpoch", "KeySchedule", "load_schedule"]


@dataclass(frozen=True, slots=True)
class KeyEpoch:
    """A collector key and its note verifier keys, in force from reading id ``from_id``."""

    key: PublicKey
    vkeys: tuple[str, ...]
    from_id: int
    statement_seq: int | None = None  # the key-rotate statement that announced it


@dataclass(slots=True)
class KeySchedule:
    epochs: list[KeyEpoch]

    def at(self, reading_id: int) -> KeyEpoch:
        """The key in force for a block starting at ``reading_id`` or a checkpoint of that
        tree size."""
        starts = [e.from_id for e in self.epochs]
        return self.epochs[max(0, bisect_right(starts, reading_id) - 1)]

    @property
    def current(self) -> KeyEpoch:
        return self.epochs[-1]

    def notes(self) -> list[str]:
        out = []
        for before, after in zip(self.epochs, self.epochs[1:], strict=False):
            out.append(f"collector key rotated by statement {after.statement_seq} at leaf "
                       f"{after.from_id - 2}: {before.key.kid_hex[:16]}… signs up to tree size "
                       f"{after.from_id - 1}, {after.key.kid_hex[:16]}… from there on")
        return out


async def load_schedule(store: LedgerStore, trusted: PublicKey,
                        vkeys: Sequence[str]) -> KeySchedule:
    """Follow the log's rotation statements from the first key (see the module text)."""
    history = await store.key_history()
    ledger_key = await store.collector_public_key()
    known = {h.key.kid for h in history} | ({ledger_key.kid} if ledger_key else set())
    if history and trusted.kid in known:
        first = KeyEpoch(history[0].key, history[0].vkeys, 1)
    else:
        first = KeyEpoch(trusted, tuple(vkeys), 1)
    epochs = [first]
    async for row in store.query_readings(device_id=STATEMENT_DEVICE):
        try:
            statement = SignedStatement.decode(row.envelope).verify(epochs[-1].key)
            if statement.type != KEY_ROTATE:
                continue
            rotation = statement.key_rotation()
        except ProvenanceError:
            continue  # the statement audit names it
        epochs.append(KeyEpoch(rotation.key, (rotation.vkey,), row.id + 1, statement.seq))
    return KeySchedule(epochs)
