"""Audit of the collector statements in the log, and of each reading's key against them.

Walking the log in leaf order, this keeps what the statements so far have said: which keys are
enrolled (for which device) and since when each key is revoked. Every statement must verify
under the collector key, sit in a ``@collector`` row whose columns match it, and carry the next
counter (1, 2, 3, ... with no hole). Every reading's key must be enrolled for the reading's
device by a statement earlier in the log, and no earlier revocation may cover the reading's
signed time.

A ledger from before the log held statements has readings ahead of its first statement; their
keys' enrolments are logged once, later (at the collector's next start). Those readings are
counted and their keys must be enrolled by some statement; a warning says so. What counts is
the first statement about device keys (an enrolment or a revocation): a ``key-rotate``
statement says nothing about them, and a cluster on PostgreSQL logs a rotation but no
enrolments yet (docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Callable

from collector.ledger.records import ReadingRecord
from provenance.envelope import Envelope
from provenance.erasure import ERASE, erasure_of
from provenance.errors import ProvenanceError
from provenance.keys import PublicKey
from provenance.statement import (
    ENROL,
    KEY_ROTATE,
    REVOKE,
    STATEMENT_DEVICE,
    STATEMENT_KIND,
    SignedStatement,
    Statement,
)

__all__ = ["StatementAudit", "reading_kid"]

Fail = Callable[[str, str], None]

# Every envelope a device signs starts with these bytes, the kid right after (provenance.envelope)
_ENVELOPE_HEAD = b"\xd2\x84\x58\x26\xa2\x01\x26\x04\x58\x20"
_KID = slice(len(_ENVELOPE_HEAD), len(_ENVELOPE_HEAD) + 32)


def reading_kid(envelope: bytes) -> bytes:
    """The kid of a reading envelope that passed the verifier."""
    if envelope.startswith(_ENVELOPE_HEAD):
        return envelope[_KID]
    return Envelope.decode(envelope).kid


class StatementAudit:
    def __init__(self, collector_key: PublicKey) -> None:
        self.key = collector_key
        self.statements = 0
        self.enrolled: dict[bytes, str] = {}  # kid -> device id
        self.revoked: dict[bytes, int] = {}  # kid -> effective time of the latest revocation
        self.registry_logged = False  # an enrolment or revocation statement seen
        self.before_first = 0  # readings ahead of the log's first such statement
        self.early_kids: set[bytes] = set()
        # device -> the envelope heads (kid included) of its keys enrolled by the statements so
        # far and never revoked: a reading of the device whose envelope starts with one passes
        # :meth:`reading` with nothing to say (the audit's one test per reading, see there).
        self.plain_heads: dict[str, tuple[bytes, ...]] = {}

    def statement(self, row: ReadingRecord, fail: Fail) -> int | None:
        """Check a row whose envelope is a statement; its signed time, or None if broken."""
        try:
            signed = SignedStatement.decode(row.envelope)
            statement = signed.verify(self.key)
        except ProvenanceError as exc:
            fail("statement", f"does not verify under the collector key "
                 f"{self.key.kid_hex[:16]}…: {exc.diagnostics()}")
            return None
        expected = self.statements + 1
        if statement.seq != expected:
            fail("statement", f"statement counter {statement.seq}, expected {expected} "
                 "(statements are numbered 1, 2, 3, ... in log order)")
        self.statements = max(self.statements, statement.seq)
        columns = (row.device_id, row.seq, row.time_ms, row.kind)
        signed_columns = (STATEMENT_DEVICE, statement.seq, statement.time_ms, STATEMENT_KIND)
        if columns != signed_columns:
            fail("stored columns", f"row says {columns}, the statement signs {signed_columns}")
        self._apply(statement, fail)
        return statement.time_ms

    def _apply(self, statement: Statement, fail: Fail) -> None:
        try:
            if statement.type in (ENROL, REVOKE):
                self.registry_logged = True
            if statement.type == ENROL:
                enrolment = statement.enrolment()
                device = self.enrolled.get(enrolment.kid)
                if device is not None and device != enrolment.device_id:
                    fail("statement", f"key {enrolment.kid.hex()[:16]}… enrolled for "
                         f"{enrolment.device_id}, enrolled earlier for {device}")
                    return
                self.enrolled[enrolment.kid] = enrolment.device_id
                self._plain_heads(enrolment.device_id, enrolment.kid)
            elif statement.type == KEY_ROTATE:
                # statements after it are signed by the key it names
                self.key = statement.key_rotation().key
            elif statement.type == REVOKE:
                revocation = statement.revocation()
                if self.enrolled.get(revocation.kid) != revocation.device_id:
                    fail("statement", f"revokes key {revocation.kid.hex()[:16]}… of "
                         f"{revocation.device_id}, which no earlier statement enrolled for it")
                self.revoked[revocation.kid] = revocation.revoked_ms
                device = self.enrolled.get(revocation.kid)
                if device is not None:
                    self._plain_heads(device, revocation.kid)
            elif statement.type == ERASE:
                erasure_of(statement)  # well formed; collector/tools/erasures.py checks more
        except ProvenanceError as exc:
            fail("statement", exc.diagnostics())

    def _plain_heads(self, device_id: str, kid: bytes) -> None:
        """Keep ``kid``'s envelope head among the device's plain heads exactly while it is
        enrolled for the device and not revoked."""
        head = _ENVELOPE_HEAD + kid
        heads = tuple(h for h in self.plain_heads.get(device_id, ()) if h != head)
        if self.enrolled.get(kid) == device_id and kid not in self.revoked:
            heads += (head,)
        self.plain_heads[device_id] = heads

    def not_a_statement(self, row: ReadingRecord, fail: Fail) -> bool:
        """True (and a finding) when a row claims the statement device without a statement."""
        if row.device_id == STATEMENT_DEVICE or row.kind == STATEMENT_KIND:
            fail("statement", "a row under the collector's statement device or kind holds no "
                 "collector statement")
            return True
        return False

    def reading(self, row: ReadingRecord, time_ms: int, fail: Fail) -> None:
        """A verified reading: its key enrolled earlier for its device, not revoked by then.

        Nearly every reading's envelope starts with one of :attr:`plain_heads` of its device,
        and then this has nothing to say: the audit calls it for the others only."""
        envelope = row.envelope  # (reading_kid, inline: this runs once per reading)
        kid = envelope[_KID] if envelope.startswith(_ENVELOPE_HEAD) else reading_kid(envelope)
        device = self.enrolled.get(kid)
        if device is None:
            if not self.registry_logged:
                self.before_first += 1
                self.early_kids.add(kid)
                return
            fail("enrolment", f"key {kid.hex()[:16]}… signed this reading, but no statement "
                 "earlier in the log enrols it")
            return
        if device != row.device_id:
            fail("enrolment", f"key {kid.hex()[:16]}… is enrolled for {device} in the log, "
                 f"the reading is of {row.device_id}")
            return
        revoked = self.revoked.get(kid)
        if revoked is not None and time_ms >= revoked:
            fail("revoked key", f"signed at {time_ms}, after a statement earlier in the log "
                 f"revoked key {kid.hex()[:16]}… from {revoked}")

    def warnings(self, readings: int) -> list[str]:
        out: list[str] = []
        if not self.registry_logged:
            if readings:
                out.append("the log holds no enrolment statements yet (a ledger from before "
                           "they were logged): the collector logs them at its next start")
            return out
        if self.before_first:
            missing = [k for k in self.early_kids if k not in self.enrolled]
            out.append(f"{self.before_first} reading(s) precede the log's first statement (a "
                       "ledger from before enrolments were logged); their keys' enrolment "
                       "statements follow them")
            if missing:
                out.append(f"{len(missing)} key(s) signed readings ahead of the first statement "
                           f"and no statement ever enrols them (e.g. {missing[0].hex()[:16]}…)")
        return out
