"""Fixtures for the receipt tests (the ledger and collectors come from tests/conftest.py): a
subscriber that collects (and verifies) receipts."""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from provenance.keyfile import load_private_key
from provenance.receipt import Receipt, Refusal, SeqRange, SignedReceipt
from provenance.wire import RECEIPT_FILTER, receipt_topic_device
from tests.support.broker import Broker
from tests.support.collector import Device, Ledger, Publisher


class ReceiptWatch:
    """Every receipt the broker delivers, checked against the collector's key."""

    def __init__(self, broker: Broker, ledger: Ledger) -> None:
        self._key = load_private_key(ledger.key).public
        self.receipts: dict[str, list[Receipt]] = {}
        self.errors: queue.Queue[str] = queue.Queue()
        self._cond = threading.Condition()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="receipt-watch")
        self._client.on_message = self._on_message
        self._client.on_connect = lambda c, *_: c.subscribe(RECEIPT_FILTER, qos=1)
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            signed = SignedReceipt.decode(bytes(msg.payload))
            signed.verify(self._key)
            assert receipt_topic_device(msg.topic) == signed.receipt.device_id
        except Exception as exc:  # recorded, and failed on in wait()
            self.errors.put(f"{msg.topic}: {exc!r}")
            return
        with self._cond:
            self.receipts.setdefault(signed.receipt.device_id, []).append(signed.receipt)
            self._cond.notify_all()

    def wait(self, device_id: str, predicate: Callable[[Receipt], bool],
             timeout: float = 20) -> Receipt:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                assert self.errors.empty(), self.errors.get()
                for r in self.receipts.get(device_id, []):
                    if predicate(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching receipt for {device_id}; got "
                                         f"{self.receipts.get(device_id)}")
                self._cond.wait(min(left, 0.2))

    def refused(self, device_id: str, reason: str) -> set[int]:
        """Seqs of ``device_id`` refused for ``reason`` in any receipt so far (refusals may be
        spread over several receipts)."""
        with self._cond:
            return {s for r in self.receipts.get(device_id, []) for f in r.refused
                    for s in range(f.first, f.last + 1) if f.reason == reason}

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def broken(envelope: bytes) -> bytes:
    """``envelope`` with its signature damaged: refused as ``bad_signature``."""
    raw = bytearray(envelope)
    raw[-40] ^= 0x55
    return bytes(raw)


@dataclass
class Mixed:
    """What :func:`publish_mixed` sent: device c's four readings (seq 2 held back) and the
    message of device a with a broken signature."""

    c_msgs: list[bytes]
    bad: bytes


def publish_mixed(broker: Broker, a: Device, b: Device, c: Device) -> Mixed:
    """a: seqs 0..9, then seq 10 with a broken signature; c: seqs 0, 1 and 3 (2 never comes);
    b (not enrolled): seqs 0..4."""
    with Publisher(broker, "mixed-publisher") as pub:
        pub.publish([(a.topic, a.next()) for _ in range(10)])
        c_msgs = [c.next() for _ in range(4)]
        pub.publish([(c.topic, m) for i, m in enumerate(c_msgs) if i != 2])
        pub.publish([(b.topic, b.next()) for _ in range(5)])
        bad = broken(a.next())
        pub.publish([(a.topic, bad)])
    return Mixed(c_msgs, bad)


def check_mixed(watch: ReceiptWatch, a: Device, b: Device, c: Device, sent: Mixed,
                timeout: float = 20, *, in_order: bool = True) -> Receipt:
    """The receipts :func:`publish_mixed` earns: a sealed through 9 and its seq 10 refused with
    the message's digest; c sealed through 1 and at 3, not at 2; b's five refused as
    ``unknown_key`` with nothing sealed. Returns c's receipt covering seq 3.

    ``in_order``: c's seqs are sealed in the order they came, so one receipt states both.
    On a cluster seq 3 may be sealed in an earlier block than seq 1 (another collector admitted
    it): a receipt states seq 3 above the hole at 1, a later one the mark at 1, each the facts
    of its own block (docs/wire-format.md, "sealed")."""
    ra = watch.wait(a.device_id, lambda r: r.sealed_through == 9, timeout)
    assert ra.tree_size >= 10
    digest = hashlib.sha256(sent.bad).digest()
    ra = watch.wait(a.device_id, lambda r: bool(r.refused), timeout)
    assert ra.refused == (Refusal(10, 10, "bad_signature", digest),)
    if in_order:
        rc = watch.wait(c.device_id, lambda r: r.covers(3) and r.sealed_through == 1, timeout)
    else:
        watch.wait(c.device_id, lambda r: r.covers(1), timeout)
        rc = watch.wait(c.device_id, lambda r: any(3 in x for x in r.sealed), timeout)
        assert all(not r.covers(2) for r in watch.receipts[c.device_id])
    assert rc.sealed == (SeqRange(3, 3),)
    assert not rc.covers(2)
    watch.wait(b.device_id, lambda r: watch.refused(b.device_id, "unknown_key") == set(range(5)),
               timeout)
    assert all(r.sealed_through is None for r in watch.receipts[b.device_id])
    return rc


@pytest.fixture
def receipts(broker: Broker, ledger: Ledger) -> Iterator[ReceiptWatch]:
    watch = ReceiptWatch(broker, ledger)
    try:
        yield watch
    finally:
        watch.close()
