"""A collector that submits its checkpoints to a real witness process exports what it knows
of that witness: cosignatures stored, the size the witness has cosigned, failures; and a
collector without witnesses exports no witness metrics at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.collector import CollectorProcess, Device, Ledger, Publisher
from tests.support.polling import wait_until
from tests.support.scrape import scrape
from tests.witness.support import WitnessProcess

pytestmark = pytest.mark.slow


def test_witness_metrics(tmp_path: Path, broker: Broker) -> None:
    ledger = Ledger(tmp_path / "ledger").init()
    vkeys = Path(ledger.vkey).read_text().split()
    witness = WitnessProcess(tmp_path / "w1", "witness1.example/w", vkeys[0].split("+")[0],
                             vkeys).start()
    config = tmp_path / "collector.toml"
    config.write_text('[metrics]\nlisten = "127.0.0.1:0"\n\n[witnessing]\nquorum = 1\n'
                      f'backoff_max = 0.5\n\n[[witnessing.witness]]\nurl = "{witness.url}"\n'
                      f'vkey = "{witness.vkey}"\n')
    device = Device("meter-01")
    ledger.enrol([device])
    col = CollectorProcess(ledger, broker, "--config", str(config), "--block-age", "0.2",
                           "--workers", "1")
    try:
        col.start()
        base = str(col.wait_event("metrics_listening")["url"]).removesuffix("/metrics")
        with Publisher(broker) as pub:
            pub.publish([(device.topic, device.next()) for _ in range(7)])
        wait_until(lambda: ledger.sealed() >= 7, timeout=30)

        def cosigned_latest() -> bool:
            s = scrape(base)
            return s.get("sensorledger_witness_cosigned_size",
                         witness="witness1.example/w") == s.value("sensorledger_tree_size")

        wait_until(cosigned_latest, timeout=30, message="the witness cosigned the newest size")
        s = scrape(base)
        stored = ledger.sql("SELECT COUNT(*), MAX(size) FROM cosignatures WHERE witness = ?",
                            (witness.vkey,))[0]
        assert s.value("sensorledger_witness_cosignatures_total",
                       witness="witness1.example/w") == stored[0] >= 1
        assert s.value("sensorledger_witness_cosigned_size",
                       witness="witness1.example/w") == stored[1]
        assert s.value("sensorledger_witness_failures", witness="witness1.example/w") == 0
        assert s.value("sensorledger_witness_last_cosignature_timestamp_seconds",
                       witness="witness1.example/w") > 0

        # The witness goes away: the next checkpoints are not cosigned, and failures count.
        witness.kill()
        with Publisher(broker) as pub:
            pub.publish([(device.topic, device.next()) for _ in range(3)])
        wait_until(lambda: scrape(base).value("sensorledger_witness_failures",
                                              witness="witness1.example/w") >= 2,
                   timeout=30, message="failures counted")
        s = scrape(base)
        assert s.value("sensorledger_witness_cosigned_size",
                       witness="witness1.example/w") < s.value("sensorledger_tree_size")
        assert col.stop() == 0
    finally:
        if col.proc is not None and col.proc.poll() is None:
            col.kill()
        witness.stop()


def test_no_witnesses_no_witness_metrics(tmp_path: Path, broker: Broker) -> None:
    ledger = Ledger(tmp_path / "ledger").init()
    col = CollectorProcess(ledger, broker, "--metrics-listen", "127.0.0.1:0", "--workers", "1")
    try:
        col.start()
        base = str(col.wait_event("metrics_listening")["url"]).removesuffix("/metrics")
        s = scrape(base)
        assert "sensorledger_tree_size" in s.families
        assert not [f for f in s.families if "witness" in f]
        assert col.stop() == 0
    finally:
        if col.proc is not None and col.proc.poll() is None:
            col.kill()
