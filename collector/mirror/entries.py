"""The checks of one entry of a mirrored log: a collector statement under the collector key
in force where it sits, and the row of a reading from the reading verifier's answer."""

from __future__ import annotations

from typing import Any

from collector.admission.reasons import Reason
from collector.admission.registry import DeviceKey
from collector.ledger.records import ReadingRecord
from collector.mirror.errors import MirrorError
from collector.mirror.keys import LogKeys, follow
from collector.tools.audit import AUDIT_CHECKS
from provenance.errors import ProvenanceError
from provenance.statement import ENROL, REVOKE

__all__ = ["check_statement", "reading_row"]


def check_statement(leaf: int, entry: bytes, expected: int, keys: dict[bytes, DeviceKey],
                    log_keys: LogKeys, origin: str) -> DeviceKey | None:
    """Check a collector statement under the collector key in force at ``leaf`` (a
    ``key-rotate`` hands ``log_keys`` on) and act on an enrolment or revocation."""
    statement = follow(log_keys, leaf, entry, origin).statement
    try:
        if statement.seq != expected:
            raise MirrorError(f"leaf {leaf}: collector statement {statement.seq}, expected "
                              f"{expected}")
        if statement.type == ENROL:
            e = statement.enrolment()
            known = keys.get(e.kid)
            if known is not None and known.device_id != e.device_id:
                raise MirrorError(f"leaf {leaf}: key {e.kid.hex()[:16]}… enrolled for "
                                  f"{e.device_id}, enrolled earlier for {known.device_id}")
            return known or DeviceKey(e.kid, e.device_id, e.key.der, e.enrolled_ms)
        if statement.type == REVOKE:
            r = statement.revocation()
            known = keys.get(r.kid)
            if known is None or known.device_id != r.device_id:
                raise MirrorError(f"leaf {leaf}: revokes key {r.kid.hex()[:16]}… of "
                                  f"{r.device_id}, which no earlier statement enrolled")
            return DeviceKey(known.kid, known.device_id, known.public_key_der,
                             known.enrolled_ms, r.revoked_ms, r.reason)
        return None  # a statement type this mirror does not act on (kept, verified)
    except ProvenanceError as exc:
        raise MirrorError(f"leaf {leaf}: collector statement: {exc.diagnostics()}") from None


def reading_row(leaf: int, entry: bytes, result: tuple[Any, ...],
                received: int) -> ReadingRecord:
    """The row of a reading from its check (:func:`collector.tools.audit.audit_envelopes`:
    the signed fields, or the failed check and why)."""
    if len(result) == 2:
        check, detail = result
        if check == AUDIT_CHECKS[Reason.UNKNOWN_KEY]:
            raise MirrorError(f"leaf {leaf}: signed by a device key that no collector "
                              f"statement earlier in the log enrols ({detail})")
        raise MirrorError(f"leaf {leaf}: {check}: {detail}")
    if len(result) < 7:
        raise MirrorError(f"leaf {leaf}: not a reading")
    device_id, seq, boot, time_ms, kind, _, revoked = result[:7]
    if revoked:
        raise MirrorError(f"leaf {leaf}: signed at device time {time_ms} ms, when an "
                          "earlier statement in the log had revoked its key")
    return ReadingRecord(leaf + 1, device_id, seq, boot, time_ms, received, kind, entry)
