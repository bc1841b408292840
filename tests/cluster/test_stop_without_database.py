"""A cluster collector asked to stop while PostgreSQL is away stops, instead of waiting for the
database for as long as it stays away; what it had received and not committed stays with the
broker and reaches the ledger after the restart: nothing lost, audit clean."""

from __future__ import annotations

from pathlib import Path

from tests.support.broker import Broker
from tests.support.cluster import PgLedger, cluster_collector
from tests.support.collector import Publisher, make_devices, run_cli
from tests.support.polling import wait_until
from tests.support.postgres import PostgresServer


def test_a_stop_while_postgresql_is_away_loses_nothing(
        tmp_path: Path, broker: Broker, postgres_server: PostgresServer) -> None:
    ledger = PgLedger(tmp_path / "ledger", url=postgres_server.create_db()).init()
    devices = make_devices(2, "away")
    ledger.enrol(devices)
    col = cluster_collector(ledger, broker, "away-0").start()
    with Publisher(broker, "away-publisher") as pub:
        pub.publish([(d.topic, d.next()) for d in devices for _ in range(5)])
        wait_until(lambda: ledger.stored() == 10, 30, message="the first readings stored")
        postgres_server.stop()
        try:
            pub.publish([(d.topic, d.next()) for d in devices for _ in range(5)])
            col.wait_event("store_retry", timeout=90)  # received, and cannot commit
            assert col.proc is not None
            col.proc.terminate()
            code = col.proc.wait(timeout=75)  # the pool's 30 s connection timeout, at most twice
        finally:
            postgres_server.start()
    col.stop()  # reads the rest of its log
    assert code != 0
    assert "stopped before the database came back" in "".join(col.lines), col.lines[-5:]

    # The same member again (its session kept the unacknowledged messages): all 20 sealed.
    again = cluster_collector(ledger, broker, "away-0").start()
    wait_until(lambda: ledger.sealed() == 20, 60, message="every reading sealed")
    assert again.stop() == 0
    assert ledger.stored() == 20  # each once
    audit = run_cli("audit", "--db", ledger.url)
    assert audit.exit_code == 0, audit.output
