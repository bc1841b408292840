"""A collector of a cluster (PostgreSQL, shared subscription) exports its own counters but
neither the shared log's tree size nor a health rule, which it cannot judge alone."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.cluster import PgLedger, cluster_collector
from tests.support.collector import Publisher, make_devices
from tests.support.polling import wait_until
from tests.support.scrape import scrape

pytestmark = pytest.mark.slow


def test_cluster_member_metrics(tmp_path: Path, broker: Broker, pg_url: str) -> None:
    ledger = PgLedger(tmp_path / "ledger", url=pg_url).init()
    devices = make_devices(2)
    ledger.enrol(devices)
    col = cluster_collector(ledger, broker, "metrics-c1", "--block-age", "0.3",
                            "--metrics-listen", "127.0.0.1:0")
    try:
        col.start()
        base = str(col.wait_event("metrics_listening")["url"]).removesuffix("/metrics")
        with Publisher(broker, client_id="metrics-cluster") as pub:
            pub.publish((d.topic, d.next()) for d in devices for _ in range(10))
        wait_until(lambda: scrape(base).value("sensorledger_readings_accepted_total") == 20,
                   timeout=30, message="20 accepted")
        wait_until(lambda: ledger.sealed() >= 20, timeout=30, message="20 sealed")
        s = scrape(base)
        assert s.value("sensorledger_readings_received_total") == 20
        assert s.value("sensorledger_blocks_sealed_total") >= 1
        assert "sensorledger_tree_size" not in s.families
        assert "sensorledger_checkpoint_age_seconds" not in s.families
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/health", timeout=5)
        assert err.value.code == 404
        assert col.stop() == 0
    finally:
        if col.proc is not None and col.proc.poll() is None:
            col.kill()
