"""Loading a backlog over MQTT: open a persistent session, publish QoS 1, wait for PUBACKs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .backlog import TOPIC_FILTER, Backlog

__all__ = ["create_session", "publish", "publish_backlog", "wait_connected"]

# Outgoing QoS 1 window while loading: large enough that the loader is never waiting on acks.
_LOAD_INFLIGHT = 2000
_SESSION_EXPIRY_S = 24 * 3600


def wait_connected(
    client: mqtt.Client, host: str, port: int, timeout: float = 10.0, **connect: Any
) -> None:
    """Connect, start the network thread and wait for CONNACK; raise unless it accepted us."""
    connected = threading.Event()
    failure: list[str] = []

    def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            failure.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    client.connect(host, port, keepalive=60, **connect)
    client.loop_start()
    if not connected.wait(timeout) or failure:
        client.loop_stop()
        raise RuntimeError(f"MQTT connect to {host}:{port} failed: {failure or 'timeout'}")


def create_session(
    host: str, port: int, client_id: str, *, mqtt5: bool = False, topic: str = TOPIC_FILTER
) -> None:
    """Make the broker hold a persistent session for ``client_id`` subscribed to ``topic`` at QoS 1.

    Messages published afterwards queue for that client until it connects and drains them,
    exactly as readings queue while a collector is down.
    """
    if mqtt5:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=MQTTProtocolVersion.MQTTv5)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = _SESSION_EXPIRY_S
        connect: dict[str, Any] = {"clean_start": False, "properties": props}
    else:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=False)
        connect = {}
    subscribed = threading.Event()
    client.on_subscribe = lambda *_a: subscribed.set()
    wait_connected(client, host, port, **connect)
    try:
        client.subscribe(topic, qos=1)
        if not subscribed.wait(10):
            raise RuntimeError(f"no SUBACK for {topic}")
    finally:
        client.disconnect()
        client.loop_stop()


def publish(host: str, port: int, messages: Iterable[tuple[str, bytes]], *,
            timeout: float = 600.0) -> int:
    """Publish (topic, payload) pairs at QoS 1 and return once the broker acknowledged each."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    client.max_inflight_messages_set(_LOAD_INFLIGHT)
    # paho keys unacknowledged messages by their 16-bit id: more than 65,535 queued at once
    # would overwrite each other, so the loader never runs further ahead than the window.
    window = threading.BoundedSemaphore(_LOAD_INFLIGHT)
    client.on_publish = lambda *_a: window.release()
    wait_connected(client, host, port)
    sent = 0
    try:
        for topic, payload in messages:
            if not window.acquire(timeout=timeout):
                raise RuntimeError(f"no PUBACK within {timeout} s after {sent} publishes")
            client.publish(topic, payload, qos=1)
            sent += 1
        for _ in range(_LOAD_INFLIGHT):  # wait for the last acks
            if not window.acquire(timeout=timeout):
                raise RuntimeError(f"not every one of {sent} publishes was acknowledged")
    finally:
        client.disconnect()
        client.loop_stop()
    return sent


def publish_backlog(host: str, port: int, backlog: Backlog) -> float:
    """Publish the whole backlog; returns the seconds it took."""
    start = time.perf_counter()
    publish(host, port, backlog.messages())
    return time.perf_counter() - start
