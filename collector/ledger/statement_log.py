"""The registry's history in the log: which enrolments and revocations the log already holds as
collector statements (:mod:`provenance.statement`), and which it still lacks.

The running collector holds one :class:`StatementLog`. When the registry changes (``devices
add`` / ``devices revoke`` bump its version; the pipeline reloads it), :meth:`StatementLog.due`
returns the signed statements the log lacks, and the pipeline puts them in its next committed
batch, before any reading it admits under the new registry. So a reading's key is always
enrolled by a statement earlier in the log. Keys enrolled before the log held statements get
their enrolment statement once, at the next start.

The state is rebuilt at start from the statement rows themselves (the log is the truth), so a
crash between signing and committing leaves nothing to reconcile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from collector.admission.registry import DeviceKey
from collector.errors import StoreError
from collector.ledger.records import BatchWrite, ReadingRecord
from collector.ledger.store import LedgerStore
from provenance.errors import ProvenanceError
from provenance.keys import PrivateKey, PublicKey
from provenance.statement import (
    ENROL,
    KEY_ROTATE,
    REVOKE,
    STATEMENT_DEVICE,
    STATEMENT_KIND,
    Enrolment,
    Revocation,
    SignedStatement,
    Statement,
    enrolment_statement,
    revocation_statement,
    sign_statement,
)

__all__ = ["DueStatement", "StatementLog"]


@dataclass(frozen=True, slots=True)
class DueStatement:
    """A signed statement the log lacks: its counter, time and envelope."""

    seq: int
    time_ms: int
    envelope: bytes

    def record(self, reading_id: int, received_ms: int) -> ReadingRecord:
        """The ``readings`` row that logs it."""
        return ReadingRecord(reading_id, STATEMENT_DEVICE, self.seq, 0, self.time_ms,
                             received_ms, STATEMENT_KIND, self.envelope)


class StatementLog:
    def __init__(self, key: PrivateKey, logged: Iterable[Statement] = ()) -> None:
        self._key = key
        self.earlier: tuple[PublicKey, ...] = ()  # retired collector keys statements verify with
        self.next_seq = 1
        self.enrolled: set[bytes] = set()
        self.revoked: dict[bytes, int] = {}  # kid -> effective time of its latest revocation
        self.rotated_to: list[bytes] = []  # kids announced by key-rotate statements, in order
        for statement in logged:
            self._note(statement)

    @classmethod
    async def load(cls, store: LedgerStore, key: PrivateKey,
                   earlier: Iterable[PublicKey] = ()) -> StatementLog:
        """The statements the ledger holds, read from its statement rows in seq order. Each
        verifies with ``key`` or one of the ``earlier`` (retired) collector keys, or a key an
        earlier ``key-rotate`` statement announced."""
        rows = [row async for row in store.query_readings(device_id=STATEMENT_DEVICE)]
        return cls.from_rows(rows, key, earlier)

    @classmethod
    def from_rows(cls, rows: Iterable[ReadingRecord], key: PrivateKey,
                  earlier: Iterable[PublicKey] = ()) -> StatementLog:
        """As :meth:`load`, from the statement rows (in seq order) read by the caller: a
        cluster's collector reads them, sealed or not, under the ``@collector`` row lock."""
        earlier = tuple(earlier)
        logged: list[Statement] = []
        keys = {k.kid: k for k in earlier}
        keys[key.kid] = key.public
        for row in rows:
            try:
                signed = SignedStatement.decode(row.envelope)
                signer = keys.get(signed.kid, key.public)
                logged.append(signed.verify(signer))
                if logged[-1].type == KEY_ROTATE:
                    announced = logged[-1].key_rotation().key
                    keys[announced.kid] = announced
            except ProvenanceError as exc:
                raise StoreError(f"stored statement {row.seq} (reading {row.id}) does not "
                                 f"verify: {exc.diagnostics()}; run `ledger-collector audit`"
                                 ) from None
            if logged[-1].seq != row.seq:
                raise StoreError(f"stored statement row seq {row.seq} holds statement "
                                 f"{logged[-1].seq}; run `ledger-collector audit`")
        log = cls(key, logged)
        log.earlier = earlier
        return log

    def _note(self, statement: Statement) -> None:
        self.next_seq = statement.seq + 1
        if statement.type == ENROL:
            self.enrolled.add(statement.enrolment().kid)
        elif statement.type == REVOKE:
            revocation = statement.revocation()
            self.revoked[revocation.kid] = revocation.revoked_ms
        elif statement.type == KEY_ROTATE:
            self.rotated_to.append(statement.key_rotation().kid)

    def due(self, keys: Iterable[DeviceKey], now_ms: int) -> list[DueStatement]:
        """Signed statements for what ``keys`` (the registry) says and the log does not yet:
        enrolments first, in enrolment order, then revocations. They count as logged from
        here on: the caller commits them before anything that relies on them."""
        out: list[DueStatement] = []
        ordered = sorted(keys, key=lambda k: (k.enrolled_ms, k.kid))
        for k in ordered:
            if k.kid not in self.enrolled:
                try:
                    public = PublicKey.from_der(k.public_key_der)
                except ProvenanceError as exc:
                    raise StoreError(f"device key {k.kid.hex()} of {k.device_id} is damaged "
                                     f"in the registry: {exc.diagnostics()}") from None
                out.append(self._sign(enrolment_statement(
                    self.next_seq, now_ms, Enrolment(k.device_id, public, k.enrolled_ms))))
        for k in ordered:
            if k.revoked_ms is not None and self.revoked.get(k.kid) != k.revoked_ms:
                out.append(self._sign(revocation_statement(
                    self.next_seq, now_ms,
                    Revocation(k.device_id, k.kid, k.revoked_ms, k.revoke_reason))))
        return out

    async def commit_due(self, store: LedgerStore, next_id: int, now_ms: int) -> int:
        """Commit, in a batch of their own, the statements the registry in ``store`` needs
        (what a command that appends readings while no collector runs does first); the next
        reading id after them."""
        due = self.due(await store.device_keys(), now_ms)
        if due:
            batch = BatchWrite(readings=[d.record(next_id + i, now_ms)
                                         for i, d in enumerate(due)])
            await store.commit_batch(batch)
        return next_id + len(due)

    def reload(self, rows: Iterable[ReadingRecord]) -> StatementLog:
        """The log as ``rows`` (every statement row, in seq order) hold it, same keys."""
        return StatementLog.from_rows(rows, self._key, self.earlier)

    def sign(self, make: Callable[[int], Statement]) -> DueStatement:
        """Sign the statement ``make(next seq)`` builds; it counts as logged from here on."""
        return self._sign(make(self.next_seq))

    def _sign(self, statement: Statement) -> DueStatement:
        self._note(statement)
        return DueStatement(statement.seq, statement.time_ms,
                            sign_statement(statement, self._key))
