"""The publisher: pipelined QoS 1 in spool order, backoff, and errors in plain words."""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from pathlib import Path

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.clock import Clock
from agent.config import BrokerConfig, TlsConfig
from agent.errors import BrokerError
from agent.intake.sign_and_spool import sign_and_spool
from agent.outbox.publisher import Publisher, backoff_delay, explain
from agent.signer import ChainSigner, Draft
from agent.spool import Spool
from provenance.keys import PrivateKey
from provenance.senml import Measurement
from tests.support.agent_harness import Subscriber, check_chain, verify_stream
from tests.support.broker import Broker

PLAIN = BrokerConfig(url="mqtt://h:1883", host="h", port=1883, tls=None, client_id="c",
                     connect_timeout_s=2)
TLS_NO_CERT = BrokerConfig(url="mqtts://h:8883", host="h", port=8883, tls=TlsConfig(),
                           client_id="c")


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    for attempt in range(12):
        ceiling = min(30.0, 0.5 * 2**attempt)
        delays = [backoff_delay(attempt, 0.5, 30.0, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 40  # jittered: a fleet does not reconnect in lockstep
    assert backoff_delay(10_000, 0.5, 30.0, rng) <= 30.0


def test_connection_failures_are_explained() -> None:
    cases = [
        (aiomqtt.MqttError("[Errno 111] Connection refused"), None, PLAIN,
         "cannot reach broker at h:1883: connection refused (is the broker running?)"),
        (aiomqtt.MqttError("Operation timed out"), None, PLAIN,
         "no answer from broker at h:1883 within 2 s"),
        (aiomqtt.MqttError("Operation timed out"),
         "failed to receive on socket: [SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert",
         TLS_NO_CERT, "the broker requires a client certificate and none is configured"),
        (aiomqtt.MqttError("Operation timed out"),
         "failed to receive on socket: [SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca",
         TLS_NO_CERT, "our client certificate was not issued by a CA the broker trusts"),
        (aiomqtt.MqttError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
                           "unable to get local issuer certificate (_ssl.c:1006)"), None,
         TLS_NO_CERT, "the broker's certificate is not trusted"),
        (MqttConnectError(ReasonCode(PacketTypes.CONNACK, "Not authorized")), None, PLAIN,
         "broker refused the connection: Not authorized (check broker.username"),
        (BrokerError("the broker refused a publish (Not authorized)"), None, PLAIN,
         "the broker refused a publish (Not authorized)"),
    ]
    for exc, paho_error, broker, expected in cases:
        assert expected in explain(exc, broker, paho_error), (exc, explain(exc, broker))
    assert isinstance(ssl.SSLError, type)


async def test_pipelined_publishing_keeps_spool_order_and_deletes_only_acked(
    broker: Broker, tmp_path: Path
) -> None:
    key = PrivateKey.generate()
    spool = await Spool.open(tmp_path / "spool.sqlite", "dev-pipe", 100_000)
    subscriber = Subscriber(broker.host, broker.port, "sensorledger/v1/dev-pipe/reading")
    try:
        signer = ChainSigner("dev-pipe", key, spool.boot, spool.head, Clock("synced"))
        total = 3_000
        for start in range(0, total, 500):
            await sign_and_spool(spool, [Draft("s", "counter", 1_790_000_000_000 + i, True,
                                      (Measurement(name="n", value=i),))
                                for i in range(start, start + 500)], signer)
        config = BrokerConfig(url=broker.url, host=broker.host, port=broker.port, tls=None,
                              client_id="pipe", in_flight=64)
        publisher = Publisher("dev-pipe", config, spool, tls=None, password=None,
                              heartbeat=dict, heartbeat_s=60)
        task = asyncio.create_task(publisher.run())
        started = time.monotonic()
        while spool.depth and time.monotonic() - started < 30:
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - started
        publisher.stop(time.monotonic() + 1)
        await task
        assert spool.depth == 0 and spool.counters.published == total
        await asyncio.to_thread(subscriber.wait_until,
                                lambda: len(subscriber.payloads()) >= total, 20, "delivery")
        stream = verify_stream(subscriber.payloads(), key.public)
        assert stream.arrival == list(range(total)), "on the wire in spool (seq) order"
        assert stream.duplicates == 0
        check_chain(stream)
        print(f"published {total} readings in {elapsed:.2f} s ({total / elapsed:.0f}/s)")
    finally:
        subscriber.close()
        await spool.close()
