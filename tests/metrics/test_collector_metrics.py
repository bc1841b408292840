"""Must-show: a scrape of a real collector during a real ingest, whose counts agree with
``ledger-collector stats`` on the same ledger after the stream; and ``/health`` that fails
while sealing is stopped (another process holds the ledger's write lock) and recovers after.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.broker import Broker
from tests.support.collector import (
    CollectorProcess,
    Device,
    Ledger,
    Publisher,
    make_devices,
    topic_of,
)
from tests.support.polling import wait_until
from tests.support.scrape import Scrape, health, scrape
from tests.support.signed import SignedReading

DEVICES = 4
PER_DEVICE = 400


def _config(tmp_path: Path, block_age: float, *, listen: bool = True) -> str:
    """A config with a small block age; ``listen``: with ``metrics.listen`` on a free port."""
    path = tmp_path / "collector.toml"
    path.write_text(f"""
[blocks]
size = 250
age = {block_age}

[log]
stats_interval = 0.5

""" + ('[metrics]\nlisten = "127.0.0.1:0"\n' if listen else ""))
    return str(path)


def _base(col: CollectorProcess) -> str:
    return str(col.wait_event("metrics_listening")["url"]).removesuffix("/metrics")


def test_scrape_during_ingest_agrees_with_stats(
    tmp_path: Path, ledger: Ledger, broker: Broker,
    collector: Callable[..., CollectorProcess],
) -> None:
    devices = make_devices(DEVICES)
    ledger.enrol(devices)
    stranger = Device("not-enrolled")  # its readings are quarantined as unknown_key
    signed = {d.device_id: [d.next() for _ in range(PER_DEVICE)] for d in devices}
    for envelope in signed[devices[0].device_id]:  # real signatures, checked as such
        SignedReading.open(envelope, devices[0].key.public)
    junk = [(topic_of("dev-000"), b"\xff not cbor %d" % i) for i in range(7)]
    junk.append(junk[0])  # a repeat: stored once, counted twice (times_seen)
    strangers = [(stranger.topic, stranger.next()) for _ in range(5)]
    replays = [(devices[1].topic, env) for env in signed[devices[1].device_id][:30]]
    accepted = DEVICES * PER_DEVICE

    col = collector("--config", _config(tmp_path, 0.3), "--workers", "2").start()
    base = _base(col)
    before = scrape(base)
    assert before.value("sensorledger_readings_received_total") == 0
    assert before.families["sensorledger_readings_received"] == "counter"
    assert before.families["sensorledger_receive_to_commit_seconds"] == "histogram"

    done = threading.Event()
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            with Publisher(broker, client_id="metrics-fleet") as pub:
                for i in range(PER_DEVICE // 50):
                    pub.publish((d.topic, env) for d in devices
                                for env in signed[d.device_id][i * 50:(i + 1) * 50])
                    time.sleep(0.05)  # a stream, not one burst: scrapes land mid-way
                pub.publish([*junk, *strangers, *replays])
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    publisher = threading.Thread(target=publish)
    publisher.start()
    during: list[Scrape] = []
    while not done.is_set():
        during.append(scrape(base))
        time.sleep(0.05)
    publisher.join(60)
    assert not errors, errors
    # Scraped while the stream ran: counters moved, never backwards, never past the end.
    mid = [s.value("sensorledger_readings_accepted_total") for s in during]
    assert any(0 < v < accepted for v in mid), mid
    assert mid == sorted(mid)

    wait_until(lambda: ledger.sealed() >= accepted, timeout=60, message="all sealed")
    total = accepted + len(junk) + len(strangers) + len(replays)
    wait_until(lambda: scrape(base).value("sensorledger_readings_received_total") == total
               and sum(scrape(base).by_label("sensorledger_backlog", "stage").values()) == 0,
               timeout=30, message="every message received and sealed")
    after = scrape(base)
    stats = ledger.stats()  # `ledger-collector stats --json` on the same ledger, while running

    assert after.value("sensorledger_readings_accepted_total") == stats["readings"] == accepted
    assert after.value("sensorledger_readings_duplicate_total") == stats["duplicates"] == 30
    quarantined = {r: v for r, v in after.by_label("sensorledger_readings_quarantined_total",
                                                   "reason").items() if v}
    assert quarantined == stats["quarantined_by_reason"] == {"not_cbor": 8, "unknown_key": 5}
    assert after.value("sensorledger_blocks_sealed_total") == stats["blocks"]
    # The tree also holds the collector's statements (the devices' enrolments).
    assert after.value("sensorledger_tree_size") == stats["readings"] + stats["statements"]
    assert stats["unsealed"] == 0
    # Every accepted reading was timed from arrival to commit and from commit to seal.
    # (Commit->seal also times the collector's statements, which are leaves too.)
    for hist, leaves in (("sensorledger_receive_to_commit_seconds", accepted),
                         ("sensorledger_commit_to_seal_seconds",
                          accepted + stats["statements"])):
        assert after.value(f"{hist}_count") == leaves
        assert after.value(f"{hist}_bucket", le="+Inf") == leaves
        assert 0 < after.value(f"{hist}_sum") < leaves * 60
    # Commit->seal waits for the block age (0.3 s) or size (250): most readings wait < 1 s.
    assert after.value("sensorledger_commit_to_seal_seconds_bucket", le="1.0") > accepted / 2
    age = after.value("sensorledger_checkpoint_age_seconds")
    assert 0 <= age < 60
    assert after.value("sensorledger_broker_connected") == 1
    assert after.value("sensorledger_broker_unacked_messages") == 0
    # The JSON stats line counts from the same counters: the next one says the same.
    seen = len(col.events)
    line = col.wait_event("stats", where=lambda e: col.events.index(e) >= seen)
    assert (line["received"], line["accepted"], line["duplicate"]) == (total, accepted, 30)
    assert line["quarantined_by_reason"] == quarantined
    assert (line["blocks_sealed"], line["tree_size"], line["backlog"]) == (
        after.value("sensorledger_blocks_sealed_total"), accepted + stats["statements"], 0)
    assert col.stop() == 0


def test_health_fails_while_sealing_is_stopped_and_recovers(
    tmp_path: Path, ledger: Ledger, broker: Broker,
    collector: Callable[..., CollectorProcess],
) -> None:
    devices = make_devices(2)
    ledger.enrol(devices)
    col = collector("--config", _config(tmp_path, 0.25, listen=False), "--workers", "1",
                    "--metrics-listen", "127.0.0.1:0").start()
    base = _base(col)
    # (The devices' enrolment statements are logged and sealed when the collector starts.)
    wait_until(lambda: health(base)[1].get("reason") == "no readings waiting", timeout=10,
               message="/health: nothing waiting")
    status, body = health(base)
    assert status == 200, body
    statements = len(devices)

    # Another process takes the ledger's write lock (as a stray `sqlite3 ledger.db` shell
    # in a transaction would): the collector can neither commit nor seal, and waits.
    holder = sqlite3.connect(ledger.db, isolation_level=None, timeout=30)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Publisher(broker, client_id="metrics-health") as pub:
            pub.publish((d.topic, d.next()) for d in devices for _ in range(20))
        failing: list[tuple[int, dict[str, object]]] = []
        wait_until(lambda: failing.append(health(base)) or failing[-1][0] == 503,
                   timeout=8, interval=0.05, message="/health 503")
        status, body = failing[-1]
        assert str(body["reason"]).startswith("sealing has stopped"), body
        assert body["status"] == "failing"
        assert float(str(body["oldest_waiting_s"])) > 0.5  # twice the 0.25 s block age
        assert int(str(body["waiting"])) == 40
        # The metrics say where the readings wait: decided, in the commit that cannot start.
        stuck = scrape(base)
        assert stuck.value("sensorledger_backlog", stage="commit") > 0
        assert stuck.value("sensorledger_oldest_waiting_seconds") > 0.5
        assert stuck.value("sensorledger_tree_size") <= statements  # no reading sealed
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    wait_until(lambda: ledger.sealed() == 40, timeout=20, message="sealed after the lock")
    wait_until(lambda: health(base)[0] == 200, timeout=10, message="/health 200 again")
    status, body = health(base)
    assert body["tree_size"] == 40 + statements
    assert scrape(base).value("sensorledger_tree_size") == 40 + statements
    assert col.stop() == 0
