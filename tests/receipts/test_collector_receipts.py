"""The collector's receipts on a real Mosquitto: what is sealed, what is refused and why."""

from __future__ import annotations

from collections.abc import Callable

from tests.receipts.conftest import ReceiptWatch, check_mixed, publish_mixed
from tests.support.broker import Broker
from tests.support.collector import CollectorProcess, Device, Ledger, Publisher, run_cli


def test_receipts_state_sealed_holes_and_refusals(
    broker: Broker, ledger: Ledger, collector: Callable[..., CollectorProcess],
    receipts: ReceiptWatch,
) -> None:
    a, b, c = Device("rc-a"), Device("rc-b"), Device("rc-c")
    ledger.enrol([a, c])
    collector("--block-age", "0.2").start()
    sent = publish_mixed(broker, a, b, c)
    rc = check_mixed(receipts, a, b, c, sent)

    # Enrolment: the quarantined readings are replayed, sealed, and the receipt says so.
    result = run_cli("devices", "add", "--db", ledger.db, b.device_id, "-", input=b.pem())
    assert result.exit_code == 0, result.output
    rb = receipts.wait("rc-b", lambda r: r.sealed_through == 4, timeout=30)
    assert rb.tree_size >= 10 + 3 + 5

    # A reading sent again after it was sealed is answered with a receipt too.
    with Publisher(broker, "again") as pub:
        pub.publish([(c.topic, sent.c_msgs[3])])
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
