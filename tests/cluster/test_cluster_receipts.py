"""Receipts from a cluster: two collectors on one PostgreSQL ledger and a real Mosquitto.

Collector A admits its share of the readings and never seals while it runs (its block rule is
out of reach); collector B admits the other share and seals every block, A's readings
included. Two real agents in receipts mode (checking each receipt against the collector's
public key) and a test publisher send side by side: every agent hears receipts covering what
it signed, whichever collector admitted it, and lets go of those readings; every receipt on
the broker verifies under the collector key; a reading sent again after it was sealed is
answered; refusals (unknown key, bad signature) reach their device from both collectors.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provenance.receipt import Refusal
from tests.receipts.conftest import ReceiptWatch, broken, check_mixed, publish_mixed
from tests.receipts.test_agent_receipts import enrol, lost, runtime_status, spool_rows
from tests.support.agent_harness import AgentProcess, write_config
from tests.support.broker import Broker
from tests.support.cluster import PgLedger, cluster_collector
from tests.support.collector import CollectorProcess, Device, Publisher
from tests.support.polling import wait_until
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.slow

AGENTS = 2
#: Each agent's readings that must be covered by receipts while both collectors run.
COVERED = 60


def _sealed_seqs(ledger: PgLedger, device_id: str) -> set[int]:
    return {s for (s,) in ledger.sql(
        "SELECT seq FROM readings WHERE device_id = ? AND id IS NOT NULL", (device_id,))}


def _bad_signatures(col: CollectorProcess, topic: str) -> int:
    """Messages on ``topic`` that ``col`` quarantined as ``bad_signature`` (its log)."""
    return sum(1 for e in list(col.events) if e.get("event") == "quarantined"
               and e.get("topic") == topic and e.get("reason") == "bad_signature")


def _accepted(col: CollectorProcess) -> int:
    """Readings ``col`` admitted, from its last ``stats`` line (logged when it stops)."""
    return max((e["accepted"] for e in col.events if e.get("event") == "stats"), default=0)


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    made: list[AgentProcess] = []
    yield made
    for agent in made:
        agent.cleanup()


def test_cluster_receipts_reach_every_device(
        tmp_path: Path, broker: Broker, postgres_server: PostgresServer,
        agents: list[AgentProcess]) -> None:
    ledger = PgLedger(tmp_path / "cluster", url=postgres_server.create_db()).init()
    works = [tmp_path / f"agent-{i}" for i in range(AGENTS)]
    ids = [f"cr-agent-{i}" for i in range(AGENTS)]
    configs = [write_config(
        work, broker.url, device_id=device_id, delivery="receipts",
        extra=f'receipt_timeout_s = 1.5\nreceipt_key_file = "{ledger.public_key}"\n')
        for work, device_id in zip(works, ids, strict=True)]
    for work, device_id in zip(works, ids, strict=True):
        enrol(ledger, device_id, work)
    a, b, c = Device("cr-a"), Device("cr-b"), Device("cr-c")  # cr-b is not enrolled
    ledger.enrol([a, c])
    watch = ReceiptWatch(broker, ledger)
    col_a = cluster_collector(ledger, broker, "collector-a", "--block-size", "1000000",
                              "--block-age", "3600")
    col_b = cluster_collector(ledger, broker, "collector-b", "--block-size", "20",
                              "--block-age", "0.3")
    cols = [col_a, col_b]
    try:
        for col in cols:
            col.start()
        agents.extend(AgentProcess(config).start() for config in configs)

        # Every agent hears receipts covering its readings, from both collectors' admissions.
        for work in works:
            wait_until(lambda w=work: (runtime_status(w).get("sealed_through") or -1)
                       >= COVERED, 30, message=f"a receipt covering {COVERED} in {work}")

        sent = publish_mixed(broker, a, b, c)
        rc = check_mixed(watch, a, b, c, sent, timeout=30, in_order=False)

        # A reading sent again after it was sealed is answered with a receipt.
        with Publisher(broker, "again") as pub:
            pub.publish([(c.topic, sent.c_msgs[3])])
        watch.wait("cr-c", lambda r: r.sealed_through == 1 and r.covers(3) and r is not rc)

        # Refusals reach their device whichever collector quarantined the message: bad
        # signatures until each collector has refused one (the group takes turns).
        refused_by: set[int] = set()
        for _ in range(12):
            before = [_bad_signatures(col, c.topic) for col in cols]
            bad = broken(c.next())
            seq = c.seq - 1
            with Publisher(broker, f"bad-{seq}") as pub:
                pub.publish([(c.topic, bad)])
            refusal = Refusal(seq, seq, "bad_signature", hashlib.sha256(bad).digest())
            watch.wait("cr-c", lambda r, f=refusal: f in r.refused)
            wait_until(lambda b=before: [_bad_signatures(col, c.topic) for col in cols] != b,
                       10, message=f"cr-c seq {seq} quarantined")
            refused_by |= {i for i, col in enumerate(cols)
                           if _bad_signatures(col, c.topic) > before[i]}
            if len(refused_by) == 2:
                break
        assert refused_by == {0, 1}, "each collector refused one and its receipt came"

        # Collector A sealed nothing: what it admitted reached the agents through B's blocks.
        assert not [e for e in col_a.events if e.get("event") == "block_sealed"]
        for agent in agents:
            assert agent.terminate() == 0

        # With B stopped nothing is sealed: a reading A stored and then receives again is a
        # duplicate of an unsealed reading, and no receipt may call it sealed. (B's share of
        # the group's messages waits in its session.) B back: sealed, and the receipt says so.
        assert col_b.stop() == 0
        admitted_b = _accepted(col_b)  # its first run's
        d = Device("cr-d")
        ledger.enrol([d])
        with Publisher(broker, "twice") as pub:
            pub.publish([(d.topic, env) for env in (d.next() for _ in range(5))
                         for _ in range(4)])
        wait_until(lambda: ledger.sql("SELECT COUNT(*) FROM readings WHERE device_id = "
                                      "'cr-d'")[0][0] == 5, 10, message="cr-d stored")
        time.sleep(1.0)  # refusals and re-sent readings are answered within 0.2 s
        assert not any(r.sealed_through is not None or r.sealed
                       for r in watch.receipts.get("cr-d", [])), watch.receipts["cr-d"]
        assert _sealed_seqs(ledger, "cr-d") == set()
        col_b.start()
        watch.wait("cr-d", lambda r: r.sealed_through == 4, timeout=30)
    finally:
        watch.close()
        for col in cols:
            if col.proc is not None and col.proc.poll() is None:
                assert col.stop() == 0
    accepted = [_accepted(col_a), admitted_b]
    assert all(n > 0 for n in accepted), f"both collectors admitted readings: {accepted}"
    # Every seq a receipt states as sealed is a leaf below the receipt's tree size.
    for device_id, got in watch.receipts.items():
        ids_of = dict(ledger.sql("SELECT seq, id FROM readings WHERE device_id = ?",
                                 (device_id,)))
        for r in got:
            stated = set(range((r.sealed_through if r.sealed_through is not None else -1) + 1))
            stated |= {s for span in r.sealed for s in range(span.first, span.last + 1)}
            gaps = {s for s in stated if s not in ids_of}  # stated dropped by a gap record
            assert all(ids_of[s] is not None and ids_of[s] <= r.tree_size
                       for s in stated - gaps), (device_id, r)
    for work, device_id in zip(works, ids, strict=True):
        assert lost(ledger, device_id, work) == []
        next_seq, spooled = spool_rows(work)
        status = runtime_status(work)
        through = status["sealed_through"]
        assert set(range(through + 1)) <= _sealed_seqs(ledger, device_id)
        assert not spooled & set(range(through + 1)), "released once a receipt covered them"
        assert _sealed_seqs(ledger, device_id) | spooled >= set(range(next_seq))
        assert status["receipts"]["received"] > 0 and status["receipts"]["bad"] == 0
