"""Must-show: a real agent's ``/metrics`` (``metrics_listen``) shows its counters: sensor
samples and faults, signed, spooled, published and acknowledged readings, spool depth; and the
spool's depth grows, as the counters say, while the broker is away."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.agent_harness import AgentProcess, Subscriber, write_config
from tests.support.broker import Broker
from tests.support.polling import wait_until
from tests.support.scrape import Scrape, scrape

SENSORS = """
[[sensors]]
name = "counter"
driver = "test-counter"
interval_s = 0.02

[[sensors]]
name = "dead"
driver = "test-broken"
interval_s = 0.05
"""


def test_agent_metrics_show_its_counters(tmp_path: Path, broker: Broker) -> None:
    config = write_config(tmp_path / "agent", broker.url, sensors=SENSORS,
                          extra='metrics_listen = "127.0.0.1:0"')
    sub = Subscriber(broker.host, broker.port)
    agent = AgentProcess(config).start()
    try:
        line = agent.wait_for_log("metrics: serving http://")
        found = re.search(r"metrics: serving (http://\S+)/metrics", line)
        assert found is not None
        base = found.group(1)
        wait_until(lambda: len(sub.payloads()) >= 30, timeout=20, message="30 readings out")
        s = scrape(base)
        read = s.value("sensorledger_agent_readings_read_total", sensor="counter")
        signed = s.value("sensorledger_agent_readings_signed_total")
        acked = s.value("sensorledger_agent_readings_acknowledged_total")
        assert read >= signed >= 30
        assert s.value("sensorledger_agent_readings_spooled_total") == signed  # no relays
        assert s.value("sensorledger_agent_readings_published_total") >= acked > 0
        assert s.value("sensorledger_agent_readings_read_total", sensor="dead") == 0
        assert s.value("sensorledger_agent_sensor_faults_total", sensor="dead") > 0
        assert s.value("sensorledger_agent_sensor_faults_total", sensor="counter") == 0
        assert s.value("sensorledger_agent_broker_connected") == 1
        assert s.value("sensorledger_agent_spool_limit") == 100_000
        assert s.families["sensorledger_agent_readings_signed"] == "counter"
        assert s.families["sensorledger_agent_spool_depth"] == "gauge"

        # The broker goes away: readings pile up in the spool, and the depth is exactly what
        # was spooled and not acknowledged.
        broker.stop()

        def piled_up(snap: list[Scrape]) -> bool:
            snap.append(scrape(base))
            x = snap[-1]
            depth = x.value("sensorledger_agent_spool_depth")
            return (x.value("sensorledger_agent_broker_connected") == 0 and depth >= 20
                    and depth == x.value("sensorledger_agent_readings_spooled_total")
                    - x.value("sensorledger_agent_readings_acknowledged_total")
                    - x.value("sensorledger_agent_readings_dropped_total", origin="own"))

        snaps: list[Scrape] = []
        wait_until(lambda: piled_up(snaps), timeout=20, message="spool depth grows offline")
        assert snaps[-1].value("sensorledger_agent_broker_failures_total") >= 1
        assert snaps[-1].value("sensorledger_agent_readings_signed_total") > signed
        assert snaps[-1].value("sensorledger_agent_last_puback_age_seconds") >= 0
        assert agent.terminate() == 0
    finally:
        agent.cleanup()
        sub.close()


def test_agent_metrics_are_off_by_default(tmp_path: Path, broker: Broker) -> None:
    config = write_config(tmp_path / "agent", broker.url)
    agent = AgentProcess(config).start()
    try:
        agent.wait_for_log("running:")
        assert agent.terminate() == 0
        assert "metrics:" not in agent.log()
    finally:
        agent.cleanup()
