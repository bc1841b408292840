"""Must-show 1: 10,000 readings from 20 devices published concurrently land in sealed blocks
exactly once; audit passes; stats match what was sent."""

from __future__ import annotations

import threading
from collections.abc import Callable

from tests.support.broker import Broker
from tests.support.collector import (
    CollectorProcess,
    Device,
    Ledger,
    Publisher,
    make_devices,
    run_cli,
)
from tests.support.polling import wait_until

DEVICES = 20
PER_DEVICE = 500


def test_ten_thousand_readings_from_twenty_devices_sealed_exactly_once(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess]
) -> None:
    devices = make_devices(DEVICES)
    ledger.enrol(devices)
    signed = {d.device_id: [d.next() for _ in range(PER_DEVICE)] for d in devices}
    total = DEVICES * PER_DEVICE

    col = collector("--block-size", "1000", "--block-age", "0.5").start()

    # One MQTT client per device, all publishing at once, as a fleet of agents would.
    errors: list[BaseException] = []

    def agent(device: Device) -> None:
        try:
            with Publisher(broker, client_id=f"agent-{device.device_id}") as pub:
                pub.publish((device.topic, env) for env in signed[device.device_id])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors

    wait_until(lambda: ledger.sealed() >= total, timeout=120, message="all readings sealed")
    assert col.stop() == 0

    # Exactly once, byte for byte: every envelope sent is stored once, nothing else is.
    # (The collector's statements, the devices' enrolments, are leaves in the same table.)
    statements = len(devices)
    everything = ledger.sql("SELECT id, device_id, seq, envelope FROM readings ORDER BY id")
    assert len(everything) == total + statements
    rows = [r for r in everything if r[1] != "@collector"]
    assert len(rows) == total
    assert sorted(r[3] for r in rows) == sorted(e for envs in signed.values() for e in envs)
    assert {(r[1], r[2]) for r in rows} == {
        (d.device_id, s) for d in devices for s in range(PER_DEVICE)}
    # Arrival order is kept per device (leaves are in arrival order).
    for d in devices:
        seqs = [r[2] for r in rows if r[1] == d.device_id]
        assert seqs == sorted(seqs)

    # Every reading sits in exactly one sealed block: blocks tile reading ids 1..total.
    blocks = ledger.sql("SELECT height, first_reading_id, leaf_count FROM blocks "
                        "ORDER BY height")
    next_id = 1
    for i, (height, first, count) in enumerate(blocks):
        assert (height, first) == (i, next_id)
        assert 1 <= count <= 1000
        next_id += count
    assert next_id == total + statements + 1
    assert [r[0] for r in everything] == list(range(1, total + statements + 1))

    audit = run_cli("audit", "--db", ledger.db, "--collector-key", ledger.public_key)
    assert audit.exit_code == 0, audit.output
    assert (f"{len(blocks)} blocks, {total} readings and {statements} collector statement(s) "
            "verified (0 not yet sealed)") in audit.output

    stats = ledger.stats()
    assert (stats["readings"], stats["unsealed"], stats["blocks"]) == (total, 0, len(blocks))
    assert (stats["duplicates"], stats["quarantined"]) == (0, 0)
    assert set(stats["devices"]) == {d.device_id for d in devices}
    for d in devices:
        row = stats["devices"][d.device_id]
        assert (row["first_seq"], row["last_seq"], row["accepted"]) == (0, PER_DEVICE - 1,
                                                                         PER_DEVICE)
        assert (row["missing"], row["chain_breaks"], row["equivocations"]) == (0, 0, 0)
        assert row["quarantined"] == 0

    # The run's own counters (last stats event) agree with the ledger.
    final = [e for e in col.events if e.get("event") == "stats"][-1]
    assert (final["received"], final["accepted"], final["duplicate"]) == (total, total, 0)
    assert final["backlog"] == 0
    stopped = col.wait_event("collector_stopped")
    assert (stopped["received"], stopped["acked"], stopped["unacked"]) == (total, total, 0)
