"""Fixtures for the receipt tests (the ledger and collectors come from tests/conftest.py): a
subscriber that collects (and verifies) receipts."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from provenance.keyfile import load_private_key
from provenance.receipt import Receipt, SignedReceipt
from provenance.wire import RECEIPT_FILTER, receipt_topic_device
from tests.support.broker import Broker
from tests.support.collector import Ledger


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

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def receipts(broker: Broker, ledger: Ledger) -> Iterator[ReceiptWatch]:
    watch = ReceiptWatch(broker, ledger)
    try:
        yield watch
    finally:
        watch.close()
