"""A cluster ledger logs the collector statements and admits private readings, numbered by the
cluster's sealer like readings: two collectors on one PostgreSQL and one broker, devices
enrolled before and while they run, one revoked while they run, private readings from a
patient monitor, one patient's values erased while they run. Every enrolment, revocation and
erasure is logged once, enrolments before the readings they admit; the private readings are
sealed with their sealed values kept beside the log until erased; the audit is clean."""

from __future__ import annotations

from pathlib import Path

from provenance.keys import PrivateKey
from provenance.statement import SignedStatement
from tests.support.broker import Broker
from tests.support.cluster import PgLedger, cluster_collector, private_stream
from tests.support.collector import Publisher, make_devices, now_ms, run_cli
from tests.support.polling import wait_until
from tests.support.postgres import PostgresServer

PER_DEVICE = 30


def _add(ledger: PgLedger, device_id: str, pem: str) -> None:
    result = run_cli("devices", "add", "--db", ledger.url, device_id, "-", input=pem)
    assert result.exit_code == 0, result.output


def test_two_collectors_log_statements_once_and_admit_private_readings(
        tmp_path: Path, broker: Broker, postgres_server: PostgresServer) -> None:
    ledger = PgLedger(tmp_path / "cluster", url=postgres_server.create_db()).init()
    first, late = make_devices(3, "st"), make_devices(1, "late")
    ledger.enrol(first)
    ward = PrivateKey.generate()
    _add(ledger, "ward-1", ward.public.to_pem())
    private = private_stream(ward, tmp_path, PER_DEVICE)
    args = ("--block-size", "10", "--block-age", "0.3")
    cols = [cluster_collector(ledger, broker, f"collector-{i}", *args).start() for i in range(2)]
    try:
        half = PER_DEVICE // 2
        with Publisher(broker, "statements-publisher") as pub:
            pub.publish([(d.topic, d.next()) for _ in range(half) for d in first] + private)
            wait_until(lambda: ledger.sealed() == 3 * half + len(private), 60,
                       message="first half sealed")
            # Enrolled and revoked while both collectors run.
            ledger.enrol(late)
            result = run_cli("devices", "revoke", "--db", ledger.url, first[2].device_id,
                             "--reason", "probe replaced")
            assert result.exit_code == 0, result.output
            wait_until(lambda: ledger.statements() == 6, 30, message="statements logged")
            pub.publish([(d.topic, d.next(time_ms=now_ms())) for _ in range(PER_DEVICE - half)
                         for d in first + late])
        # st-2's second half is refused: signed after its revocation.
        expected = 3 * half + len(private) + 3 * (PER_DEVICE - half)
        try:
            wait_until(lambda: ledger.sealed() == expected and ledger.count("quarantine")
                       == PER_DEVICE - half, 60, message="everything sealed")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {ledger.sealed()} of {expected} sealed, "
                                 f"{ledger.quarantine()} quarantined") from None
        revealed = run_cli("reveal", "--db", ledger.url, "ward-1", "7", "--reader-key",
                           str(tmp_path / "reader.pem"))
        assert revealed.exit_code == 0 and "spo2" in revealed.output, revealed.output
        # Erased while the collectors run: the erase statement takes the next seq, and the
        # cluster's sealer numbers it.
        erased = run_cli("erase", "--db", ledger.url, "--key", ledger.key, "--subject",
                         "patient-a", "--authority", "request 7")
        assert erased.exit_code == 0, erased.output
        wait_until(lambda: ledger.sql("SELECT COUNT(*) FROM readings WHERE id IS NULL")
                   == [(0,)], 30, message="statements sealed")
    finally:
        stopped = [col.stop() for col in cols]
        assert stopped == [0, 0], "".join(line for c in cols for line in c.lines[-20:])

    # Each enrolment and the revocation logged once, seqs 1..6, whichever collector did it.
    rows = ledger.sql("SELECT seq, id, envelope FROM readings WHERE device_id = '@collector' "
                      "ORDER BY seq")
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    statements = [SignedStatement.decode(bytes(r[2])).statement for r in rows]
    assert sorted(s.type for s in statements) == ["enrol"] * 5 + ["erase", "revoke"]
    assert statements[-1].type == "erase"
    enrolled = {s.enrolment().device_id: rid for s, (_, rid, _) in zip(statements, rows,
                                                                      strict=True)
                if s.type == "enrol"}
    assert sorted(enrolled) == sorted([d.device_id for d in first + late] + ["ward-1"])
    logged_by = [c for c in cols if any(e.get("event") == "statement_logged" for e in c.events)]
    assert logged_by, "a collector logged them"
    # Each device's readings come after its enrolment in the log.
    for device_id, first_id in ledger.sql("SELECT device_id, MIN(id) FROM readings "
                                          "WHERE device_id != '@collector' GROUP BY device_id"):
        assert enrolled[device_id] < first_id, device_id
    # Refused after the revocation, as one collector refuses them.
    assert {r[0] for r in ledger.quarantine()} == {"revoked_key"}
    # The private readings are sealed, their sealed values and grants kept beside the log;
    # patient-a's (the odd seqs) erased, patient-b's kept.
    assert ledger.sql("SELECT COUNT(*), MIN(subject), MAX(subject) FROM private_values p "
                      "JOIN readings r ON r.row_id = p.row_id WHERE r.device_id = 'ward-1' "
                      "AND r.id IS NOT NULL") == [(PER_DEVICE // 2, "patient-b", "patient-b")]
    assert ledger.sql("SELECT COUNT(*) FROM readings WHERE device_id = 'ward-1' "
                      "AND id IS NOT NULL") == [(PER_DEVICE,)]
    assert ledger.sql("SELECT DISTINCT subject FROM private_grants") == [("patient-b",)]
    assert ledger.sql("SELECT subject, erased_ms IS NOT NULL FROM erasures") == [(None, True)]
    gone = run_cli("reveal", "--db", ledger.url, "ward-1", "7", "--reader-key",
                   str(tmp_path / "reader.pem"))
    assert gone.exit_code != 0 and "erased" in gone.output, gone.output
    kept = run_cli("reveal", "--db", ledger.url, "ward-1", "8", "--reader-key",
                   str(tmp_path / "reader.pem"))
    assert kept.exit_code == 0 and "spo2" in kept.output, kept.output
    erasures = run_cli("erasures", "--db", ledger.url)
    assert "request 7" in erasures.output, erasures.output
    # One dense tree, and the audit (statements included) is clean.
    count, with_id, top = ledger.sql("SELECT COUNT(*), COUNT(id), MAX(id) FROM readings")[0]
    assert count == with_id == top
    audit = run_cli("audit", "--db", ledger.url)
    assert audit.exit_code == 0, audit.output
