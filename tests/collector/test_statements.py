"""Enrolments and revocations are collector statements in the log, ahead of what they admit.

A running collector logs a key's enrolment before any reading that key signed, and a
revocation as soon as `devices revoke` changes the registry; `audit` checks every statement
with the collector key and every reading's key against the statements before it; a proof file
carries the key's enrolment and `verify-proof` checks that it came first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from collector.ledger.records import ReadingRecord
from collector.tools.statement_audit import StatementAudit
from provenance import cbor
from provenance.keys import PrivateKey
from provenance.logproof import decode_log_proof
from provenance.statement import (
    Enrolment,
    Revocation,
    SignedStatement,
    enrolment_statement,
    revocation_statement,
    sign_statement,
)
from provenance.wire import ProofLabel
from tests.support.broker import Broker
from tests.support.collector import (
    CollectorProcess,
    Device,
    Ledger,
    Publisher,
    make_devices,
    now_ms,
    run_cli,
)
from tests.support.polling import wait_until


def _log(ledger: Ledger) -> list[tuple[int, str, int, bytes]]:
    return [(r[0], r[1], r[2], bytes(r[3])) for r in ledger.sql(
        "SELECT id, device_id, seq, envelope FROM readings ORDER BY id")]


def test_statements_precede_the_readings_they_admit_and_audit_checks_them(
        ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess],
        tmp_path: Path) -> None:
    first, late = make_devices(2, "enr")
    ledger.enrol([first])
    col = collector("--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish([(first.topic, first.next()) for _ in range(3)])
        wait_until(lambda: ledger.count("readings") == 3, 30, 0.05)
        ledger.enrol([late])  # while the collector runs: it reloads the registry
        pub.publish([(late.topic, late.next()) for _ in range(2)])
        wait_until(lambda: ledger.count("readings") == 5, 30, 0.05)
        revoked_from = now_ms() - 60_000
        assert run_cli("devices", "revoke", "--db", ledger.db, first.device_id, "--at",
                       str(revoked_from), "--reason", "lost").exit_code == 0
        col.wait_event("statement_logged", timeout=30,
                       where=lambda e: e.get("seq") == 3)
        pub.publish([(first.topic, first.next())])  # signed after the revocation: refused
        wait_until(lambda: ledger.count("quarantine") == 1, 30, 0.05)
    wait_until(lambda: ledger.sealed() == 5, 30, 0.05)
    assert col.stop() == 0

    log = _log(ledger)
    collector_key = PrivateKey.from_pem(Path(ledger.key).read_bytes()).public
    statements = [(rid, SignedStatement.decode(env).verify(collector_key))
                  for rid, dev, _, env in log if dev == "@collector"]
    assert [(s.seq, s.type) for _, s in statements] == [(1, "enrol"), (2, "enrol"),
                                                        (3, "revoke")]
    enrolled_at = {s.enrolment().device_id: rid for rid, s in statements if s.type == "enrol"}
    for rid, dev, _, _ in log:
        if dev != "@collector":
            assert enrolled_at[dev] < rid  # every reading after its key's enrolment
    revocation = statements[2][1].revocation()
    assert (revocation.device_id, revocation.kid, revocation.revoked_ms, revocation.reason) == (
        first.device_id, first.key.kid, revoked_from, "lost")
    assert ledger.quarantine()[0][0] == "revoked_key"

    audit = run_cli("audit", "--db", ledger.db, "--json")
    assert audit.exit_code == 0, audit.output
    report = json.loads(audit.output)
    assert report["readings"] + report["statements"] == len(log)
    assert report["statements"] == len(statements)
    # The revocation is retroactive: the readings signed before it was logged are warned of.
    assert [w for w in report["warnings"] if "revocation" not in w] == []
    # Device views show devices only.
    assert set(ledger.stats()["devices"]) == {first.device_id, late.device_id}
    exported = run_cli("readings", "--db", ledger.db, "--format", "jsonl")
    assert {json.loads(line)["device_id"] for line in exported.output.splitlines()
            if line.startswith("{")} == {
        first.device_id, late.device_id}

    # The proof of the late device's first reading carries its enrolment, at an earlier leaf.
    proof = tmp_path / "late.proof"
    assert run_cli("proof", "--db", ledger.db, late.device_id, "0", "-o",
                   str(proof)).exit_code == 0
    checked = run_cli("verify-proof", str(proof), "--policy", ledger.vkey)
    assert checked.exit_code == 0, checked.output
    assert (f"[PASS] device key enrolment: key enrolled for {late.device_id} by collector "
            f"statement 2 at leaf {enrolled_at[late.device_id] - 1}") in checked.output
    # The tlog-proof form carries it too.
    tlog = tmp_path / "late.tlog-proof"
    assert run_cli("proof", "--db", ledger.db, late.device_id, "0", "--format", "tlog-proof",
                   "-o", str(tlog)).exit_code == 0
    assert decode_log_proof(tlog.read_bytes()).enrolment is not None
    assert "device key enrolment" in run_cli("verify-proof", str(tlog), "--policy",
                                             ledger.vkey).output

    # A proof claiming the enrolment sits after the reading, or another statement, fails.
    body = cbor.decode(proof.read_bytes(), what="proof")
    statement, index, path = body[ProofLabel.ENROLMENT]
    for changed in ([statement, body[ProofLabel.INDEX] + 1, path],
                    [log[2][3], index, path]):
        bad = tmp_path / "bad.proof"
        bad.write_bytes(cbor.encode({**body, ProofLabel.ENROLMENT: changed}))
        result = run_cli("verify-proof", str(bad), "--policy", ledger.vkey)
        assert result.exit_code == 1
        assert "[FAIL] device key enrolment" in result.output

    # A statement altered in the store is named by the audit.
    rid = statements[1][0]
    env = bytearray(log[rid - 1][3])
    env[-5] ^= 1
    ledger.execute("UPDATE readings SET envelope = ? WHERE id = ?", (bytes(env), rid))
    bad_audit = run_cli("audit", "--db", ledger.db)
    assert bad_audit.exit_code == 1
    assert f"reading {rid}" in bad_audit.output and "statement: does not verify" in (
        bad_audit.output)


def test_keys_enrolled_before_statements_existed_are_logged_once_at_start(
        ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess]) -> None:
    dev = Device("old-01")
    ledger.enrol([dev])
    for _ in range(2):
        col = collector("--block-age", "0.2").start()
        col.wait_event("collector_started", timeout=30)
        wait_until(lambda: ledger.sealed() == 0 and ledger.statements() == 1, 30, 0.05)
        assert col.stop() == 0
    assert ledger.statements() == 1  # not again at the second start


def _row(rid: int, device: str, seq: int, time_ms: int, kind: str, env: bytes) -> ReadingRecord:
    return ReadingRecord(rid, device, seq, 0, time_ms, time_ms, kind, env)


def test_audit_of_statements_against_the_readings_after_them() -> None:
    collector_key = PrivateKey.generate()
    device = PrivateKey.generate()
    dev = Device("unit-01", key=device)
    reading = dev.next(time_ms=5_000)
    enrol = sign_statement(enrolment_statement(1, 100, Enrolment("unit-01", device.public, 99)),
                           collector_key)
    revoke = sign_statement(revocation_statement(2, 200, Revocation("unit-01", device.kid,
                                                                    4_000)), collector_key)

    def run(rows: list[ReadingRecord]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        audit = StatementAudit(collector_key.public)
        for row in rows:
            fail = lambda check, detail: found.append((check, detail))  # noqa: E731
            if row.kind == "statement":
                audit.statement(row, fail)
            # as the audit runs it: a reading starting with a plain head has nothing to check
            elif not row.envelope.startswith(audit.plain_heads.get(row.device_id, ())):
                audit.reading(row, 5_000, fail)
        return found

    stmt_enrol = _row(1, "@collector", 1, 100, "statement", enrol)
    stmt_revoke = _row(3, "@collector", 2, 200, "statement", revoke)
    r = _row(2, "unit-01", 0, 5_000, "water", reading)
    assert run([stmt_enrol, r]) == []
    # A reading signed after a revocation logged before it.
    assert [c for c, _ in run([stmt_enrol, _row(2, "@collector", 2, 200, "statement", revoke),
                               _row(3, "unit-01", 0, 5_000, "water", reading)])] == [
        "revoked key"]
    # A key never enrolled, once the log holds statements.
    other = _row(2, "unit-01", 0, 5_000, "water", Device("unit-01").next())
    assert [c for c, _ in run([stmt_enrol, other])] == ["enrolment"]
    # A statement counter out of order, and one signed by another key.
    assert next(c for c, _ in run([stmt_revoke])) == "statement"
    forged = sign_statement(enrolment_statement(1, 100, Enrolment("unit-01", device.public, 9)),
                            PrivateKey.generate())
    assert "does not verify" in run([_row(1, "@collector", 1, 100, "statement", forged)])[0][1]
