"""The publisher in receipts mode on a real Mosquitto: it keeps what no receipt covers,
publishes it again after the timeout, and believes only receipts signed by the collector key."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.clock import Clock
from agent.config import BrokerConfig
from agent.intake.sign_and_spool import sign_and_spool
from agent.outbox.publisher import Publisher
from agent.signer import ChainSigner, Draft
from agent.spool import Spool
from provenance.keys import PrivateKey
from provenance.receipt import Receipt, SignedReceipt
from provenance.senml import Measurement
from provenance.wire import receipt_topic
from tests.support.agent_harness import Subscriber
from tests.support.broker import Broker


def send_receipt(broker: Broker, raw: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fake-collector")
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(receipt_topic("dev-rp"), raw, qos=1, retain=True).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


async def until(predicate: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_keeps_republishes_and_checks_the_receipt_signature(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    key, collector, stranger = PrivateKey.generate(), PrivateKey.generate(), PrivateKey.generate()
    spool = await Spool.open(tmp_path / "spool.sqlite", "dev-rp", 1000, "receipts")
    subscriber = Subscriber(broker.host, broker.port, "sensorledger/v1/dev-rp/reading")
    try:
        signer = ChainSigner("dev-rp", key, spool.boot, spool.head, Clock("synced"))
        await sign_and_spool(spool, [Draft("s", "counter", 1_790_000_000_000 + i, True,
                                           (Measurement(name="n", value=i),))
                                     for i in range(20)], signer)
        config = BrokerConfig(url=broker.url, host=broker.host, port=broker.port, tls=None,
                              client_id="rp")
        publisher = Publisher("dev-rp", config, spool, tls=None, password=None,
                              heartbeat=dict, heartbeat_s=60, receipts=True,
                              receipt_timeout_s=0.5, receipt_key=collector.public)
        task = asyncio.create_task(publisher.run())
        # Acknowledged by the broker, and still held: nobody has said they are sealed.
        await until(lambda: spool.awaiting == 20)
        assert spool.depth == 20
        # Nothing covers them within the timeout: they go out again (identical bytes).
        await until(lambda: len(subscriber.payloads()) >= 40)
        assert set(subscriber.payloads()[20:40]) <= set(subscriber.payloads()[:20])
        assert publisher.link.receipts.republished >= 20
        assert "no receipt has come from the collector yet" in caplog.text  # says what to check

        forged = SignedReceipt.sign(Receipt("dev-rp", 1, 20, sealed_through=19), stranger)
        await asyncio.to_thread(send_receipt, broker, forged.raw)
        await until(lambda: publisher.link.receipts.bad == 1)
        assert spool.depth == 20  # a receipt that does not verify releases nothing

        genuine = SignedReceipt.sign(Receipt("dev-rp", 2, 20, sealed_through=9), collector)
        await asyncio.to_thread(send_receipt, broker, genuine.raw)
        await until(lambda: spool.depth == 10)
        assert publisher.link.receipts.sealed_through == 9 and spool.sealed_through == 9
        publisher.stop(time.monotonic() + 1)
        await task
    finally:
        subscriber.close()
        await spool.close()
