"""A cluster collector finds PostgreSQL again within seconds of its return, whatever the outage
lasted, and idles meanwhile while it holds readings it cannot commit.

The connection pool doubles the pause between reconnection attempts (1, 2, 4 ... s); left to
double for the whole outage, its next attempt after a 17 s outage comes about 31 s after the
first failure, so the readings waited some 10-16 s more than the database was away (and after
an outage of minutes, minutes more). The collector starts each series of attempts over after
a few seconds, so the pause stays at 4 s at most.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.cluster import PgLedger, cluster_collector
from tests.support.collector import Publisher, make_devices, run_cli
from tests.support.polling import wait_until
from tests.support.postgres import PostgresServer
from tests.support.usage import measure

pytestmark = pytest.mark.slow

#: Seconds PostgreSQL stays away: past the pool's fourth pause (1+2+4+8 s), before its fifth.
OUTAGE = 17.0
#: Seconds after PostgreSQL is back by which every reading held must be sealed.
RETURN_BOUND = 8.0


def test_the_collector_finds_postgresql_again_within_seconds(
        tmp_path: Path, broker: Broker, postgres_server: PostgresServer) -> None:
    ledger = PgLedger(tmp_path / "ledger", url=postgres_server.create_db()).init()
    devices = make_devices(2, "back")
    ledger.enrol(devices)
    # Killed when the test ends, whatever fails: nothing else would stop it.
    with cluster_collector(ledger, broker, "back-0") as col:
        with Publisher(broker, "back-publisher") as pub:
            pub.publish([(d.topic, d.next()) for d in devices for _ in range(5)])
            wait_until(lambda: ledger.sealed() == 10, 30, message="the first readings sealed")

            stopped = time.monotonic()
            postgres_server.stop()
            try:
                # Received and not committed: held, unacknowledged, until the database returns.
                pub.publish([(d.topic, d.next()) for d in devices for _ in range(5)])
                time.sleep(1.0)
                usage = measure(col.pid, OUTAGE - 1 - (time.monotonic() - stopped))
                time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))
            finally:
                postgres_server.start()
            back = time.monotonic()
        assert usage.cpu_share < 0.20, f"the collector spins while PostgreSQL is away: {usage}"
        wait_until(lambda: ledger.sealed() == 20, 60, 0.1, "every reading sealed")
        took = time.monotonic() - back
        assert took < RETURN_BOUND, (
            f"sealed {took:.1f} s after PostgreSQL returned (from a {OUTAGE:.0f} s outage)")
        assert col.stop() == 0
    # One event a line, also while the pool failed to reconnect (it warns in plain text).
    assert all(line.startswith("{") for line in col.lines), [
        line for line in col.lines if not line.startswith("{")][:4]
    assert ledger.stored() == 20  # each once
    audit = run_cli("audit", "--db", ledger.url)
    assert audit.exit_code == 0, audit.output
