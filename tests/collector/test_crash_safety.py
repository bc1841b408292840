"""Must-show 3: SIGKILL the collector at several points while readings stream in (mid-batch,
after commit but before the acks, half-way through the acks, mid-seal, after a seal, and at an
arbitrary instant); restart it. The ledger then holds every published reading exactly once and
the audit passes.

The named points use the documented test hook SENSORLEDGER_COLLECTOR_CRASH_AT (collector.faults):
the process sends itself SIGKILL there, which is what a power cut at that instant looks like.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collector.faults import ENV
from tests.support.broker import Broker
from tests.support.collector import (
    CollectorProcess,
    Device,
    Ledger,
    Publisher,
    alive,
    child_pids,
    create_session,
    make_devices,
    run_cli,
)
from tests.support.polling import wait_until

CRASH_POINTS = [
    "batch.before_commit:3",  # rows written in the open transaction, COMMIT not issued
    "batch.after_commit:3",  # committed, nothing acknowledged yet
    "acks.partial:2",  # half of a batch's acks sent
    "seal.before_commit:2",  # block row written, COMMIT not issued
    "seal.after_commit:2",  # block committed
    "seal.nodes_written:3",  # block row, tree nodes and tree size written, checkpoint not yet
]
PER_CYCLE = 600
ARGS = ("--block-size", "200", "--block-age", "0.2")


class Stream:
    """Signs readings round-robin over the devices and publishes them in small bursts."""

    def __init__(self, broker: Broker, devices: list[Device]) -> None:
        self.devices = devices
        self.pub = Publisher(broker)
        self.published: list[bytes] = []
        self._turn = 0

    def publish(self, count: int, burst: int = 50, pause: float = 0.01) -> None:
        for _ in range(0, count, burst):
            batch = []
            for _ in range(burst):
                d = self.devices[self._turn % len(self.devices)]
                self._turn += 1
                batch.append((d.topic, d.next()))
            self.pub.publish(batch)
            self.published.extend(env for _, env in batch)
            time.sleep(pause)


@pytest.fixture
def stream(broker: Broker) -> Iterator[Stream]:
    s = Stream(broker, make_devices(10, "crash"))
    yield s
    s.pub.close()


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_sigkill_at_any_point_loses_nothing_and_stores_nothing_twice(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess], stream: Stream
) -> None:
    ledger.enrol(stream.devices)
    create_session(broker)  # the broker queues for the collector from now on, up or down

    for point in CRASH_POINTS:
        # Not waiting for the subscription: a crash point may come first (sealing what the
        # previous run left pending happens right at start-up).
        col = collector(*ARGS, env={ENV: point}).start(wait_connected=False)
        wait_until(lambda c=col: len(child_pids(c.pid)) >= 3 or c.proc.poll() is not None, 30,
                   0.01, "worker processes started")
        workers = [p for p in child_pids(col.pid) if "spawn_main" in cmdline(p)]
        stream.publish(PER_CYCLE)
        assert col.proc is not None
        try:
            rc = col.proc.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the collector never reached crash point {point}")
        assert rc == -signal.SIGKILL, f"{point}: exit code {rc}"
        # Its verification processes do not outlive it.
        wait_until(lambda w=workers: not any(alive(p) for p in w), 10, 0.05,
                   f"{point}: worker processes exit with the collector")

    # And once at an instant nobody chose, while messages are in flight.
    col = collector(*ARGS).start()
    publisher = threading.Thread(target=stream.publish, args=(PER_CYCLE,))
    publisher.start()
    wait_until(lambda: ledger.count("readings") > 0, 30, 0.01)
    time.sleep(0.05)
    col.kill()
    publisher.join(60)

    # A clean run drains what the broker kept for the session (everything unacknowledged).
    total = len(stream.published)
    col = collector(*ARGS).start()
    wait_until(lambda: ledger.sealed() >= total, 120, 0.05, "everything sealed after restart")
    assert col.stop() == 0

    envelopes = [r[0] for r in ledger.sql(
        "SELECT envelope FROM readings WHERE device_id != '@collector' ORDER BY id")]
    assert len(envelopes) == total, "every published reading stored exactly once"
    assert sorted(envelopes) == sorted(stream.published)
    assert ledger.sealed() == total
    for d in stream.devices:
        seqs = [r[0] for r in ledger.sql(
            "SELECT seq FROM readings WHERE device_id = ? ORDER BY id", (d.device_id,))]
        assert seqs == list(range(d.seq)), f"{d.device_id}: every seq once, in order"

    stats = ledger.stats()
    assert (stats["readings"], stats["unsealed"], stats["quarantined"]) == (total, 0, 0)
    for d in stream.devices:
        row = stats["devices"][d.device_id]
        assert (row["missing"], row["chain_breaks"], row["equivocations"]) == (0, 0, 0)

    audit = run_cli("audit", "--db", ledger.db, "--collector-key", ledger.public_key)
    assert audit.exit_code == 0, audit.output
    assert_log_agrees(ledger, [r[0] for r in ledger.sql(
        "SELECT envelope FROM readings ORDER BY id")])  # the statements are leaves too


def assert_log_agrees(ledger: Ledger, envelopes: list[bytes]) -> None:
    """The tree covers exactly the sealed readings, one checkpoint per block end and no other,
    each with the root of the readings up to its size."""
    from provenance.merkle import RFC9162_SHA256, root

    leaves = [RFC9162_SHA256.hash_leaf(e) for e in envelopes]
    tree_size = int(ledger.sql("SELECT value FROM meta WHERE key = 'tree_size'")[0][0])
    assert tree_size == ledger.sealed() + ledger.statements() == len(leaves)
    ends = [r[0] - 1 + r[1] for r in ledger.sql(
        "SELECT first_reading_id, leaf_count FROM blocks ORDER BY height")]
    checkpoints = ledger.sql("SELECT size, root FROM checkpoints ORDER BY size")
    assert [size for size, _ in checkpoints] == ends
    for size, digest in checkpoints:
        assert digest == root(leaves[:size]), f"checkpoint {size}"
