"""The collectors of a cluster (PostgreSQL, shared subscription) each export their own
counters, and the shared log's tree size and checkpoint age, read from the database: every
member shows the whole cluster's head, whichever member sealed it, in ``/metrics`` and in
``/health``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.cluster import PgLedger, cluster_collector
from tests.support.collector import CollectorProcess, Publisher, make_devices
from tests.support.polling import wait_until
from tests.support.scrape import health, scrape

pytestmark = pytest.mark.slow


def test_cluster_members_export_the_shared_head(
        tmp_path: Path, broker: Broker, pg_url: str) -> None:
    ledger = PgLedger(tmp_path / "ledger", url=pg_url).init()
    devices = make_devices(2)
    ledger.enrol(devices)
    members: list[CollectorProcess] = []
    try:
        bases = []
        for name in ("metrics-c1", "metrics-c2"):
            col = cluster_collector(ledger, broker, name, "--block-age", "0.3",
                                    "--metrics-listen", "127.0.0.1:0")
            members.append(col.start())
            bases.append(str(col.wait_event("metrics_listening")["url"]).removesuffix("/metrics"))
        with Publisher(broker, client_id="metrics-cluster") as pub:
            pub.publish((d.topic, d.next()) for d in devices for _ in range(10))
        wait_until(lambda: sum(scrape(b).value("sensorledger_readings_accepted_total")
                               for b in bases) == 20, timeout=60, message="20 accepted")
        wait_until(lambda: ledger.sealed() >= 20, timeout=60, message="20 sealed")

        def head() -> int:
            return int(ledger.sql("SELECT MAX(size) FROM checkpoints")[0][0])

        # Each member reads the head every second: both show the size of the newest checkpoint.
        wait_until(lambda: all(scrape(b).value("sensorledger_tree_size") == head()
                               for b in bases), timeout=60, message="both show the head")
        size = head()
        assert size >= 20  # every reading (a cluster logs no statements yet: scaling.md)
        for base in bases:
            s = scrape(base)
            assert s.families["sensorledger_tree_size"] == "gauge"
            assert 0 <= s.value("sensorledger_checkpoint_age_seconds") < 300
            status, body = health(base)
            assert status == 200, body
            assert body["status"] == "ok" and body["tree_size"] == size, body
            assert isinstance(body["checkpoint_age_s"], float), body
        blocks = sum(scrape(b).value("sensorledger_blocks_sealed_total") for b in bases)
        assert blocks >= 1
        for col in members:
            assert col.stop() == 0
    finally:
        for col in members:
            if col.proc is not None and col.proc.poll() is None:
                col.kill()
