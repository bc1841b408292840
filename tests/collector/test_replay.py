"""Issue 13, defect 6: readings from a device that starts before it is enrolled.

They were quarantined as unknown_key, acknowledged, deleted by the agent, and lost for good;
`stats` then showed missing readings and `audit` said nothing. Now they enter the ledger in seq
order when the key is enrolled (a running collector) or with `quarantine replay` (offline),
each through every check it met on arrival; gaps nobody explains are warned about.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from tests.support.broker import Broker
from tests.support.collector import CollectorProcess, Device, Ledger, Publisher, now_ms, run_cli
from tests.support.polling import wait_until


def reasons(ledger: Ledger) -> list[tuple[str, int | None]]:
    return [(r[0], r[2]) for r in ledger.quarantine()]


def test_enrolment_brings_the_early_readings_into_the_ledger_in_seq_order(
        ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess]) -> None:
    dev = Device("early-01")
    col = collector("--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish([(dev.topic, dev.next()) for _ in range(5)])
    wait_until(lambda: ledger.count("quarantine") == 5, 30, 0.05)
    assert {r for r, _ in reasons(ledger)} == {"unknown_key"}
    ledger.enrol([dev])  # the running collector notices within registry_poll (1 s)
    col.wait_event("quarantine_replayed", timeout=30)
    with Publisher(broker) as pub:
        pub.publish([(dev.topic, dev.next()) for _ in range(2)])
    wait_until(lambda: ledger.sealed() >= 7, 30, 0.05)
    assert col.stop() == 0
    assert ledger.quarantine() == []
    # The key's enrolment statement first, then the readings: ids follow seq, replayed in order
    rows = ledger.sql("SELECT device_id, seq FROM readings ORDER BY id")
    assert rows == [("@collector", 1)] + [("early-01", seq) for seq in range(7)]
    assert ledger.sql("SELECT received_ms FROM readings WHERE seq = 0")[0][0] < now_ms() - 500
    stats = ledger.stats()["devices"]["early-01"]
    assert (stats["accepted"], stats["missing"], stats["last_seq"]) == (7, 0, 6)
    audit = run_cli("audit", "--db", ledger.db, "--json")
    assert audit.exit_code == 0, audit.output
    assert json.loads(audit.output)["warnings"] == []


def test_replay_applies_every_check_as_on_arrival(
        ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess]) -> None:
    """Device time is judged against the arrival time (a reading 4 s ahead of a 2 s bound
    stays out, however late it is enrolled), and the hash chain still holds (a reading whose
    prev does not fit is a chain_break)."""
    dev = Device("early-02")
    col = collector("--block-age", "0.2", "--max-clock-skew", "2").start()
    good = [dev.next() for _ in range(2)]
    forged = dev.next(prev=os.urandom(32))  # seq 2 does not chain to seq 1
    ahead = dev.next(time_ms=now_ms() + 4_000)  # seq 3
    with Publisher(broker) as pub:
        pub.publish([(dev.topic, m) for m in (*good, forged, ahead)])
    wait_until(lambda: ledger.count("quarantine") == 4, 30, 0.05)
    time.sleep(2.5)  # by now seq 3's device time is within the bound of the clock
    ledger.enrol([dev])
    col.wait_event("quarantine_replayed", timeout=30)
    assert col.stop() == 0
    assert sorted(reasons(ledger), key=lambda r: r[1] or 0) == [("chain_break", 2),
                                                               ("clock_skew", 3)]
    assert "(on replay after enrolment)" in ledger.sql(
        "SELECT detail FROM quarantine WHERE reason = 'clock_skew'")[0][0]
    assert ledger.sql("SELECT seq FROM readings WHERE device_id = 'early-02' "
                      "ORDER BY id") == [(0,), (1,)]


def test_quarantine_replay_offline_then_the_next_run_seals(
        ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess]) -> None:
    dev, stranger = Device("early-03"), Device("never-01")
    col = collector().start()
    with Publisher(broker) as pub:
        pub.publish([(d.topic, d.next()) for _ in range(3) for d in (dev, stranger)])
    wait_until(lambda: ledger.count("quarantine") == 6, 30, 0.05)
    assert col.stop() == 0
    ledger.enrol([dev])
    result = run_cli("quarantine", "replay", "--db", ledger.db, "--key", ledger.key)
    assert result.exit_code == 0, result.output
    assert "replayed: 3 accepted, 0 already stored, 0 quarantined again, 3 still unknown_key" \
        in result.output
    again = run_cli("quarantine", "replay", "--db", ledger.db, "--key", ledger.key)
    assert "replayed: 0 accepted" in again.output  # nothing twice
    # The key's enrolment statement, logged by the replay itself, then the readings.
    assert ledger.sql("SELECT device_id, seq FROM readings ORDER BY id") == [
        ("@collector", 1), ("early-03", 0), ("early-03", 1), ("early-03", 2)]
    assert {r for r, _ in reasons(ledger)} == {"unknown_key"}
    col = collector("--block-age", "0.2").start()
    wait_until(lambda: ledger.sealed() == 3, 30, 0.05)
    assert col.stop() == 0
    assert run_cli("audit", "--db", ledger.db).exit_code == 0


def test_audit_and_stats_warn_about_unexplained_gaps(
        ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess]) -> None:
    dev = Device("gappy-01")
    ledger.enrol([dev])
    col = collector("--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish([(dev.topic, dev.next()) for _ in range(2)])
        for _ in range(5):
            dev.next()  # signed, never delivered
        pub.publish([(dev.topic, dev.next())])
    wait_until(lambda: ledger.sealed() >= 3, 30, 0.05)
    assert col.stop() == 0
    audit = run_cli("audit", "--db", ledger.db)
    assert audit.exit_code == 0, audit.output
    line = ("warning: device gappy-01: 5 missing reading(s) that no gap record explains "
            "(seq 2..6)")
    assert line in audit.output
    assert line in run_cli("stats", "--db", ledger.db).output
