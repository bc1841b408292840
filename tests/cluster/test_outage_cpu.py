"""A cluster collector whose broker and PostgreSQL are both gone waits for them: it does not
spin (a loop retrying without a pause burns a core and fails no functional check) nor grow,
and once both are back it reconnects by itself and loses nothing.

Measured from outside, in /proc: the collector's CPU time over the outage must stay well
under a fifth of a core (it idles at about 1 %, and a spinning thread takes a whole core), a
bound that holds on a loaded two-core machine.
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

#: Seconds of the outage the collector is watched for (after a second to notice it).
WINDOW = 12.0
#: At most this share of one core on average while both are away.
CPU_BOUND = 0.20
#: At most this much resident memory gained over the window.
RSS_BOUND = 16 * 2**20


def test_a_collector_without_broker_and_database_idles_and_comes_back(
        tmp_path: Path, broker: Broker, postgres_server: PostgresServer) -> None:
    ledger = PgLedger(tmp_path / "ledger", url=postgres_server.create_db()).init()
    devices = make_devices(2, "dark")
    ledger.enrol(devices)
    # Killed when the test ends, whatever fails: nothing else would stop it.
    with cluster_collector(ledger, broker, "dark-0") as col:
        with Publisher(broker, "dark-before") as pub:
            pub.publish([(d.topic, d.next()) for d in devices for _ in range(5)])
        wait_until(lambda: ledger.sealed() == 10, 30, message="the first readings sealed")

        connected = len([e for e in col.events if e.get("event") == "broker_connected"])
        postgres_server.stop()
        broker.stop()
        try:
            time.sleep(1.0)  # the collector notices: its connections fail, its retries start
            usage = measure(col.pid, WINDOW)
        finally:
            postgres_server.start()  # the session's server, shared with the other tests
        assert col.proc is not None and col.proc.poll() is None, "".join(col.lines[-20:])
        assert usage.cpu_share < CPU_BOUND, f"the collector spins while both are away: {usage}"
        assert usage.rss_growth < RSS_BOUND, f"the collector grows while both are away: {usage}"
        broker.start()

        # Back by itself: its broker session resumed, its connection pool refilled.
        wait_until(lambda: len([e for e in col.events if e.get("event") == "broker_connected"])
                   > connected, 40, message="reconnected to the broker")
        with Publisher(broker, "dark-after") as pub:
            pub.publish([(d.topic, d.next()) for d in devices for _ in range(5)])
        wait_until(lambda: ledger.sealed() == 20, 40, message="the later readings sealed")
        assert col.stop() == 0
    assert ledger.stored() == 20  # each once
    audit = run_cli("audit", "--db", ledger.url)
    assert audit.exit_code == 0, audit.output
