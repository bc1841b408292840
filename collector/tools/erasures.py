"""The audit's view of erasures: every signed erasure record checked and listed.

An erasure destroys sealed values, never a reading: the log, every proof and every history
still verify. What the audit adds is that each record is signed by the collector key, that
each reading it names is in the ledger and private, and that no sealed value of those readings
is left; an erasure left half-way (killed before its scrub) is a finding until rerun.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from collector.ledger.private_vault import PrivateVault
from provenance.envelope import Envelope
from provenance.erasure import verify_erasure
from provenance.errors import ProvenanceError
from provenance.keys import PublicKey

__all__ = ["ErasureFinding", "audit_erasures", "check_erasures"]

ErasureFinding = tuple[str, str]  # (check, detail)


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def audit_erasures(database: str | Path, collector_key: PublicKey
                   ) -> tuple[list[str], list[ErasureFinding]]:
    """(notes listing each erasure, findings) for the ledger at ``database``."""
    notes: list[str] = []
    findings: list[ErasureFinding] = []
    with PrivateVault(database) as vault:
        for row in vault.erasures():
            try:
                record = verify_erasure(row.record, collector_key)
            except ProvenanceError as exc:
                findings.append(("erasure record", f"erasure #{row.id}: {exc.diagnostics()}"))
                continue
            if row.erased_ms is None:
                findings.append(("erasure unfinished",
                                 f"erasure #{row.id} requested {_utc(row.requested_ms)} has "
                                 "deleted the sealed values but not yet scrubbed the database "
                                 "files: run `ledger-collector erase` for its subject again"))
            left = 0
            for device_id, seq in record.readings:
                envelope = vault.envelope(device_id, seq)
                if envelope is None:
                    findings.append(("erasure record", f"erasure #{row.id} names {device_id} "
                                     f"seq {seq}, which the ledger does not hold"))
                elif Envelope.decode(envelope).reading().commitment is None:
                    findings.append(("erasure record", f"erasure #{row.id} names {device_id} "
                                     f"seq {seq}, a public reading"))
                left += len(vault.sealed(device_id, seq))
            if left:
                findings.append(("erasure incomplete", f"erasure #{row.id}: {left} sealed "
                                 "value(s) of the readings it names are still stored"))
            devices = sorted({d for d, _ in record.readings})
            notes.append(
                f"erasure #{row.id} at {_utc(record.time_ms)} (authority: {record.authority}): "
                f"sealed values of {len(record.readings)} reading(s) of "
                f"{', '.join(devices) or 'no device'} and {len(record.keys)} data key(s) "
                "destroyed; record signed by the collector key; the readings and their "
                "proofs stand")
    return notes, findings


def check_erasures(database: str | Path) -> tuple[list[str], bool]:
    """Lines for `ledger-collector erasures`, checked with the ledger's collector key."""
    import sqlite3

    con = sqlite3.connect(database)
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'collector_public_key'"
                          ).fetchone()
    finally:
        con.close()
    if row is None:
        return ["the ledger records no collector key"], False
    notes, findings = audit_erasures(database, PublicKey.from_pem(row[0]))
    lines = notes or ["no erasures"]
    lines += [f"FAIL {check}: {detail}" for check, detail in findings]
    return lines, not findings
