"""The collector's receipts on a real Mosquitto: what is sealed, what is refused and why."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from provenance.receipt import Refusal, SeqRange
from tests.receipts.conftest import ReceiptWatch
from tests.support.broker import Broker
from tests.support.collector import CollectorProcess, Device, Ledger, Publisher, run_cli


def test_receipts_state_sealed_holes_and_refusals(
    broker: Broker, ledger: Ledger, collector: Callable[..., CollectorProcess],
    receipts: ReceiptWatch,
) -> None:
    a, b, c = Device("rc-a"), Device("rc-b"), Device("rc-c")
    ledger.enrol([a, c])
    collector("--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish([(a.topic, a.next()) for _ in range(10)])
        c_msgs = [c.next() for _ in range(4)]  # seq 0..3; seq 2 never arrives
        pub.publish([(c.topic, m) for i, m in enumerate(c_msgs) if i != 2])
        pub.publish([(b.topic, b.next()) for _ in range(5)])  # not enrolled yet
        good = bytearray(a.next())  # seq 10, its signature then broken
        good[-40] ^= 0x55
        bad = bytes(good)
        pub.publish([(a.topic, bad)])

    ra = receipts.wait("rc-a", lambda r: r.sealed_through == 9)
    assert ra.tree_size >= 10
    ra = receipts.wait("rc-a", lambda r: bool(r.refused))
    assert ra.refused == (Refusal(10, 10, "bad_signature", hashlib.sha256(bad).digest()),)
    rc = receipts.wait("rc-c", lambda r: r.covers(3))
    assert rc.sealed_through == 1 and rc.sealed == (SeqRange(3, 3),)
    assert not rc.covers(2)

    def refused_b() -> set[int]:  # refusals may be spread over several receipts
        return {s for r in receipts.receipts.get("rc-b", []) for f in r.refused
                for s in range(f.first, f.last + 1) if f.reason == "unknown_key"}
    receipts.wait("rc-b", lambda r: refused_b() == set(range(5)))
    assert all(r.sealed_through is None for r in receipts.receipts["rc-b"])

    # Enrolment: the quarantined readings are replayed, sealed, and the receipt says so.
    result = run_cli("devices", "add", "--db", ledger.db, b.device_id, "-", input=b.pem())
    assert result.exit_code == 0, result.output
    rb = receipts.wait("rc-b", lambda r: r.sealed_through == 4, timeout=30)
    assert rb.tree_size >= 10 + 3 + 5

    # A reading sent again after it was sealed is answered with a receipt too.
    with Publisher(broker, "again") as pub:
        pub.publish([(c.topic, c_msgs[3])])
    receipts.wait("rc-c", lambda r: r.sealed_through == 1 and r.covers(3)
                  and r is not rc)
    # Sealed seqs in the ledger match the receipts exactly.
    assert ledger.sql("SELECT seq FROM readings WHERE device_id = 'rc-c' ORDER BY seq") == [
        (0,), (1,), (3,)]


def test_no_receipts_when_turned_off(
    broker: Broker, ledger: Ledger, collector: Callable[..., CollectorProcess],
    receipts: ReceiptWatch,
) -> None:
    a = Device("rc-off")
    ledger.enrol([a])
    proc = collector("--block-age", "0.1", "--no-receipts").start()
    with Publisher(broker) as pub:
        pub.publish([(a.topic, a.next()) for _ in range(5)])
    proc.wait_event("block_sealed")
    proc.stop()
    assert receipts.receipts == {}
