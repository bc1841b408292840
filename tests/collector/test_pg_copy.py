"""``ledger-collector copy``: a SQLite ledger into PostgreSQL, verified as it is copied; then
the same audit, checkpoint and proofs from the PostgreSQL ledger."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.support.broker import Broker
from tests.support.collector import CollectorProcess, Ledger, Publisher, make_devices, run_cli
from tests.support.polling import wait_until
from tests.support.postgres import PostgresServer


def test_copy_into_postgres_verifies_and_keeps_every_proof(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess], tmp_path: Path,
    postgres_server: PostgresServer,
) -> None:
    devices = make_devices(3, "cp")
    ledger.enrol(devices)
    # Blocks are cut by size only (the age rule would cut one whenever the stream pauses, at
    # whatever size, e.g. the three statements the collector logs at start on their own), so
    # the checkpoints are of sizes 25, 50, 75, 100 and, sealed at stop, 123.
    col = collector("--block-size", "25", "--block-age", "3600").start()
    with Publisher(broker) as pub:
        pub.publish((d.topic, d.next()) for _ in range(40) for d in devices)
    # The readings, and the collector's statements (each device's enrolment) before them.
    wait_until(lambda: ledger.count("readings") == 120, 30, message="everything committed")
    assert col.stop() == 0
    assert ledger.sealed() == 120
    assert [int(r[0]) for r in ledger.sql("SELECT size FROM checkpoints ORDER BY size")] == [
        25, 50, 75, 100, 123]
    total = int(ledger.sql("SELECT COUNT(*) FROM readings")[0][0])
    assert total == 123  # with the three enrolment statements
    # The last block's readings committed but not sealed: copied without an id, sealed later.
    ledger.execute("DELETE FROM checkpoints WHERE size = ?", (total,))
    ledger.execute("DELETE FROM blocks WHERE height = (SELECT MAX(height) FROM blocks)")
    head = ledger.sql("SELECT MAX(size) FROM checkpoints")[0][0]
    ledger.execute("UPDATE meta SET value = ? WHERE key = 'tree_size'", (head,))
    # (the tree tiles still hold the removed block's leaves; the copy rebuilds the tree)

    url = postgres_server.create_db()
    done = run_cli("copy", ledger.db, url)
    assert done.exit_code == 0, done.output
    assert f"{total} readings ({total - head} not yet sealed)" in done.output, done.output
    audit = run_cli("audit", "--db", url)
    assert audit.exit_code == 0, audit.output
    for size in (25, head):
        a = run_cli("checkpoint", "--db", ledger.db, "--size", str(size)).output
        b = run_cli("checkpoint", "--db", url, "--size", str(size)).output
        assert a == b and a.startswith("sensorledger.invalid/ledger\n")
    proof = tmp_path / "r.proof"
    made = run_cli("proof", "--db", url, "cp-001", "7", "-o", str(proof))
    assert made.exit_code == 0, made.output
    checked = run_cli("verify-proof", str(proof), "--policy", ledger.vkey)
    assert checked.exit_code == 0, checked.output
    assert run_cli("copy", ledger.db, url).exit_code == 2  # the target holds a ledger now

    # One changed byte in a stored envelope stops the copy, naming the reading.
    env = ledger.sql("SELECT envelope FROM readings WHERE id = 30")[0][0]
    ledger.execute("UPDATE readings SET envelope = ? WHERE id = 30",
                   (env[:-5] + bytes([env[-5] ^ 1]) + env[-4:],))
    bad = run_cli("copy", ledger.db, postgres_server.create_db())
    assert bad.exit_code == 1 and "reading 30" in bad.output, bad.output
