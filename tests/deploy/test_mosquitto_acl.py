"""The shipped Mosquitto configuration: TLS client certificates and per-device topic ACLs.

The broker runs deploy/mosquitto/sensorledger.conf and sensorledger.acl as shipped; only the
file paths and the port are rewritten to the test's own, and certificates come from
deploy/make-certs.sh.
"""

from __future__ import annotations

import os
import queue
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from tests.support.broker import Broker, free_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
NOT_AUTHORIZED = 135
NO_SUBSCRIBERS = 16


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Broker, Path]]:
    certs = tmp_path / "certs"
    subprocess.run([str(DEPLOY / "make-certs.sh"), str(certs), "localhost", "dev-a", "dev-b",
                    "relay-9", "collector"], check=True, capture_output=True)
    acl = tmp_path / "sensorledger.acl"
    shipped = (DEPLOY / "mosquitto" / "sensorledger.acl").read_text()
    # Enable the documented relay stanza, as an operator would for relay-9.
    relay = "#user relay-9\n#topic write sensorledger/v1/smart-sensor-9/reading\n"
    assert relay in shipped
    acl.write_text(shipped.replace(relay, relay.replace("#", "")))
    port = free_port()
    conf = (DEPLOY / "mosquitto" / "sensorledger.conf").read_text()
    assert "listener 8883\n" in conf
    conf = (conf.replace("/etc/mosquitto/certs/", f"{certs}/")
            .replace("/etc/mosquitto/sensorledger.acl", str(acl))
            .replace("listener 8883\n", f"listener {port} 127.0.0.1\n"))
    conf += f"\npersistence false\nlog_dest file {tmp_path / 'mosquitto.log'}\n"
    if os.geteuid() == 0:
        conf += "user root\n"  # keep access to the test's key files (they are mode 0600)
    broker = Broker(workdir=tmp_path, port=port, full_conf=conf)
    broker.start()
    try:
        yield broker, certs
    finally:
        broker.stop()


class Client:
    """A paho MQTT v5 client over TLS that records PUBACK / SUBACK reason codes."""

    def __init__(self, broker: Broker, certs: Path, name: str | None) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.pubacks: dict[int, int] = {}
        self.subacks: list[int] = []
        self.connected = threading.Event()
        self.acked = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name or "anon",
                                  protocol=mqtt.MQTTv5)
        ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        if name is not None:
            ctx.load_cert_chain(str(certs / f"{name}.crt"), str(certs / f"{name}.key"))
        self.client.tls_set_context(ctx)
        self.client.on_connect = lambda c, u, f, rc, p: rc.is_failure or self.connected.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.broker = broker

    def _on_publish(self, c: object, u: object, mid: int, rc: ReasonCode, p: object) -> None:
        with self.acked:
            self.pubacks[mid] = int(rc.value)
            self.acked.notify_all()

    def _on_subscribe(self, c: object, u: object, mid: int, rcs: list[ReasonCode],
                      p: object) -> None:
        with self.acked:
            self.subacks.extend(int(rc.value) for rc in rcs)
            self.acked.notify_all()

    def subscribe(self, topic: str) -> int:
        """Subscribe at QoS 1 and wait for the SUBACK: its reason code (1 = granted QoS 1)."""
        count = len(self.subacks)
        self.client.subscribe(topic, qos=1)
        with self.acked:
            assert self.acked.wait_for(lambda: len(self.subacks) > count, timeout=60)
        return self.subacks[count]

    def connect(self) -> Client:
        self.client.connect("localhost", self.broker.port)
        self.client.loop_start()
        assert self.connected.wait(10), "TLS connection with a client certificate failed"
        return self

    def publish(self, topic: str, payload: bytes) -> int:
        info = self.client.publish(topic, payload, qos=1)
        with self.acked:
            assert self.acked.wait_for(lambda: info.mid in self.pubacks, timeout=10)
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_device_publishes_only_under_its_own_topic(tls_broker: tuple[Broker, Path]) -> None:
    broker, certs = tls_broker
    collector = Client(broker, certs, "collector").connect()
    dev_a = Client(broker, certs, "dev-a").connect()
    try:
        assert collector.subscribe("sensorledger/v1/+/reading") == 1  # granted QoS 1

        assert dev_a.publish("sensorledger/v1/dev-a/reading", b"own") == 0
        assert collector.messages.get(timeout=10) == ("sensorledger/v1/dev-a/reading", b"own")

        assert dev_a.publish("sensorledger/v1/dev-b/reading", b"forged") == NOT_AUTHORIZED
        assert dev_a.publish("sensorledger/v1/dev-b/status", b"forged") == NOT_AUTHORIZED
        assert dev_a.publish("sensorledger/v1/dev-a/other", b"stray") == NOT_AUTHORIZED
        # 16 = accepted, no matching subscribers (nobody subscribes to status here)
        assert dev_a.publish("sensorledger/v1/dev-a/status", b"online") == NO_SUBSCRIBERS
        # Only the device's own reading reached the collector.
        assert dev_a.publish("sensorledger/v1/dev-a/reading", b"marker") == 0
        assert collector.messages.get(timeout=10) == ("sensorledger/v1/dev-a/reading", b"marker")
        assert collector.messages.empty()
    finally:
        dev_a.close()
        collector.close()


def test_a_relay_publishes_for_its_own_sensor_only(tls_broker: tuple[Broker, Path]) -> None:
    broker, certs = tls_broker
    collector = Client(broker, certs, "collector").connect()
    relay = Client(broker, certs, "relay-9").connect()
    try:
        collector.subscribe("sensorledger/v1/+/reading")
        assert relay.publish("sensorledger/v1/smart-sensor-9/reading", b"relayed") == 0
        assert collector.messages.get(timeout=10) == ("sensorledger/v1/smart-sensor-9/reading",
                                                      b"relayed")
        assert relay.publish("sensorledger/v1/relay-9/reading", b"own") == 0
        assert relay.publish("sensorledger/v1/dev-a/reading", b"forged") == NOT_AUTHORIZED
        # dev-a has no relay grant: it may not publish for the sensor.
    finally:
        relay.close()
        collector.close()
    dev_a = Client(broker, certs, "dev-a").connect()
    try:
        assert dev_a.publish("sensorledger/v1/smart-sensor-9/reading", b"x") == NOT_AUTHORIZED
    finally:
        dev_a.close()


def test_a_device_cannot_read_other_devices(tls_broker: tuple[Broker, Path]) -> None:
    broker, certs = tls_broker
    collector = Client(broker, certs, "collector").connect()
    dev_a = Client(broker, certs, "dev-a").connect()
    dev_b = Client(broker, certs, "dev-b").connect()
    try:
        # Mosquitto grants the subscription and filters each delivery through the read ACL.
        for c in (collector, dev_b):
            c.subscribe("sensorledger/v1/+/reading")
        assert dev_a.publish("sensorledger/v1/dev-a/reading", b"private") == 0
        assert collector.messages.get(timeout=10)[1] == b"private"
        with pytest.raises(queue.Empty):
            dev_b.messages.get(timeout=1)
    finally:
        for c in (dev_a, dev_b, collector):
            c.close()


def test_receipts_go_from_the_collector_to_their_own_device_only(
    tls_broker: tuple[Broker, Path],
) -> None:
    broker, certs = tls_broker
    collector = Client(broker, certs, "collector").connect()
    dev_a = Client(broker, certs, "dev-a").connect()
    dev_b = Client(broker, certs, "dev-b").connect()
    try:
        assert dev_a.subscribe("sensorledger/v1/dev-a/receipt") == 1
        dev_b.subscribe("sensorledger/v1/+/receipt")  # tries to read them all
        assert collector.publish("sensorledger/v1/dev-a/receipt", b"sealed") == 0
        assert dev_a.messages.get(timeout=10) == ("sensorledger/v1/dev-a/receipt", b"sealed")
        with pytest.raises(queue.Empty):
            dev_b.messages.get(timeout=1)  # another device's receipt is not delivered
        # Nobody but the collector writes receipts: a device cannot forge one for itself.
        assert dev_a.publish("sensorledger/v1/dev-a/receipt", b"forged") == NOT_AUTHORIZED
        assert dev_b.publish("sensorledger/v1/dev-a/receipt", b"forged") == NOT_AUTHORIZED
        with pytest.raises(queue.Empty):
            dev_a.messages.get(timeout=1)
    finally:
        for c in (dev_a, dev_b, collector):
            c.close()


def test_a_client_without_a_certificate_is_refused(tls_broker: tuple[Broker, Path]) -> None:
    broker, certs = tls_broker
    anon = Client(broker, certs, None)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        anon.client.connect("localhost", broker.port)
        # TLS 1.3 reports a missing client certificate on the first read, not in the handshake.
        anon.client.loop_start()
        assert not anon.connected.wait(3)
        anon.client.loop_stop()
        raise ConnectionError("refused: no client certificate")


def test_private_topic_reaches_the_collector_only(tls_broker: tuple[Broker, Path]) -> None:
    """Private messages: a device writes its own private topic, the collector reads it,
    another device neither writes it nor reads it."""
    broker, certs = tls_broker
    collector = Client(broker, certs, "collector").connect()
    dev_a = Client(broker, certs, "dev-a").connect()
    dev_b = Client(broker, certs, "dev-b").connect()
    try:
        for c in (collector, dev_b):
            c.subscribe("sensorledger/v1/+/private")
        assert dev_a.publish("sensorledger/v1/dev-a/private", b"sealed") == 0
        assert collector.messages.get(timeout=10) == ("sensorledger/v1/dev-a/private", b"sealed")
        assert dev_a.publish("sensorledger/v1/dev-b/private", b"forged") == NOT_AUTHORIZED
        with pytest.raises(queue.Empty):
            dev_b.messages.get(timeout=1)
    finally:
        for c in (dev_a, dev_b, collector):
            c.close()
