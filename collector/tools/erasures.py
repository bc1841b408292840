"""The audit's view of erasures: every ``erase`` statement in the log checked and listed.

An erasure destroys sealed values, never a reading: the log, every proof and every history
still verify. The erase statements are leaves of the log (their signatures and counters are
checked with every other collector statement); what this adds is that each names readings the
ledger holds as private readings, that none of them still has sealed values, that each request
in the ``erasures`` table is the statement the log holds, and that no erasure was left half-way
(killed before its scrub: a finding until the command is run again).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from collector.ledger.private_vault import open_vault
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
    with open_vault(database) as vault:
        rows = vault.erasures()
        requests = {row.statement_id: row for row in rows if row.statement_id is not None}
        for row in rows:
            if row.statement_id is None:
                notes.append(f"erasure #{row.id} at {_utc(row.requested_ms)} (authority: "
                             f"{row.authority}): recorded beside the log, before erasures were "
                             "logged as statements")
        logged = vault.erase_statements()
        for statement_id in requests.keys() - {rid for rid, _ in logged}:
            findings.append(("erasure record", f"erasure #{requests[statement_id].id} names "
                             f"log row {statement_id}, which holds no erase statement"))
        for rid, envelope in logged:
            try:
                statement, erasure = verify_erasure(envelope, collector_key)
            except ProvenanceError as exc:
                findings.append(("erasure record", f"erase statement in row {rid}: "
                                 f"{exc.diagnostics()}"))
                continue
            request = requests.get(rid)
            if request is not None and request.record != envelope:
                findings.append(("erasure record", f"erasure #{request.id} keeps a record "
                                 f"other than the statement the log holds in row {rid}"))
            if request is not None and request.erased_ms is None:
                findings.append(("erasure unfinished",
                                 f"erasure #{request.id} ({_utc(request.requested_ms)}) has "
                                 "deleted the sealed values but not yet scrubbed the database "
                                 "files: run `ledger-collector erase` for its subject again"))
            left = 0
            for device_id, seq in erasure.readings:
                stored = vault.envelope(device_id, seq)
                if stored is None:
                    findings.append(("erasure record", f"statement {statement.seq} names "
                                     f"{device_id} seq {seq}, which the ledger does not hold"))
                elif Envelope.decode(stored).reading().commitment is None:
                    findings.append(("erasure record", f"statement {statement.seq} names "
                                     f"{device_id} seq {seq}, a public reading"))
                left += len(vault.sealed(device_id, seq))
            if left:
                findings.append(("erasure incomplete", f"statement {statement.seq}: {left} "
                                 "sealed value(s) of the readings it names are still stored"))
            devices = sorted({d for d, _ in erasure.readings})
            notes.append(
                f"erasure (collector statement {statement.seq}, log row {rid}) at "
                f"{_utc(statement.time_ms)}, authority: {erasure.authority}: sealed values of "
                f"{len(erasure.readings)} reading(s) of {', '.join(devices) or 'no device'} "
                f"and {len(erasure.keys)} data key(s) destroyed; the readings and their proofs "
                "stand")
    return notes, findings


def check_erasures(database: str | Path) -> tuple[list[str], bool]:
    """Lines for `ledger-collector erasures`, checked with the ledger's collector key."""
    with open_vault(database) as vault:
        pem = vault.collector_key_pem()
    if pem is None:
        return ["the ledger records no collector key"], False
    notes, findings = audit_erasures(database, PublicKey.from_pem(pem))
    lines = notes or ["no erasures"]
    lines += [f"FAIL {check}: {detail}" for check, detail in findings]
    return lines, not findings
