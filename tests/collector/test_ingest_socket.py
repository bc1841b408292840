"""The collector's MQTT client reads the socket in large chunks and joins its acknowledgements
into one write (collector.ingest.paho_adapter.BufferedClient). Every packet still arrives whole
and in order, every acknowledgement reaches the broker, and a new connection never sees bytes
read on the old one; and the installed paho still has the private parts the adapter overrides.
A real Mosquitto throughout."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import random
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from collector.config import MqttConfig
from collector.ingest.mqtt import Inbox, Message, MqttIngest
from collector.ingest.paho_adapter import (
    OUT_PACKET_KEYS,
    PRIVATE_METHODS,
    BufferedClient,
    PahoIncompatible,
    check_paho_internals,
)
from tests.support.broker import Broker
from tests.support.collector import Publisher, create_session

TOPIC = "sensorledger/v1/dev-1/reading"


def _payload(index: int, size: int) -> bytes:
    """``size`` bytes (at least 12) that say which message they are and prove they are whole."""
    body = random.Random(index).randbytes(max(0, size - 12))
    return index.to_bytes(4, "big") + hashlib.sha256(body).digest()[:8] + body


def _whole(payload: bytes) -> int:
    index, digest, body = int.from_bytes(payload[:4], "big"), payload[4:12], payload[12:]
    assert hashlib.sha256(body).digest()[:8] == digest, f"message {index} arrived damaged"
    return index


async def _drain(ingest: MqttIngest, inbox: Inbox, want: int, *, quiet_s: float = 10.0,
                 ack: bool = True) -> list[Message]:
    """Read until ``want`` messages arrived (or none for ``quiet_s``), acking each batch."""
    got: list[Message] = []
    while len(got) < want:
        batch = await inbox.get(1000, timeout=quiet_s)
        if not batch:
            break
        got += batch
        if ack:
            for generation in {m.generation for m in batch}:
                ingest.ack(generation, [m.mid for m in batch if m.generation == generation])
    return got


async def _until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Wait for a state of the MQTT thread, however slowly a loaded machine runs it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.02)


def _ingest(broker: Broker, client_id: str, inbox: Inbox, **config: int) -> MqttIngest:
    ingest = MqttIngest(MqttConfig(url=broker.url, client_id=client_id, **config), inbox)
    ingest.start()
    return ingest


def test_packets_of_every_size_arrive_whole_in_order_and_every_ack_lands(
    broker: Broker,
) -> None:
    create_session(broker, "col")
    # Sizes that put packet boundaries everywhere within and across the 64 KiB reads.
    sizes = [random.Random(7).choice([12, 13, 127, 128, 300, 16_383, 16_384, 65_000, 70_000])
             for _ in range(400)]
    small = 2000
    sent = [_payload(i, size) for i, size in enumerate(sizes)]
    sent += [_payload(len(sent) + i, 300) for i in range(small)]
    with Publisher(broker) as pub:
        pub.publish((TOPIC, p) for p in sent)

    async def run() -> tuple[list[Message], int, int, list[Message]]:
        inbox = Inbox(asyncio.get_running_loop())
        ingest = _ingest(broker, "col", inbox)
        got = await _drain(ingest, inbox, len(sent))
        client = ingest._client
        # Every ack taken by the MQTT thread (close() then writes what is still queued).
        await _until(lambda: ingest.acked == len(got), "every ack sent")
        ingest.close()
        # Every ack reached the broker: the session holds nothing for a new connection.
        again_inbox = Inbox(asyncio.get_running_loop())
        again = _ingest(broker, "col", again_inbox)
        leftovers = await _drain(again, again_inbox, 1, quiet_s=2.0)
        again.close()
        return got, client.socket_reads, client.socket_writes, leftovers

    got, reads, writes, leftovers = asyncio.run(run())
    assert [_whole(m.payload) for m in got] == list(range(len(sent)))
    assert [m.payload for m in got] == sent
    assert leftovers == []
    # paho alone makes at least three reads and one write per message.
    assert reads < len(sent)
    assert writes < len(sent) / 2


def test_a_new_connection_starts_with_an_empty_read_buffer(broker: Broker) -> None:
    """The broker goes away while read bytes wait in the buffer (the in-flight window is full,
    so nothing is taken from it); after the reconnect every message arrives whole, once
    acknowledged, and none is lost."""
    create_session(broker, "col")
    count = 3000
    sent = [_payload(i, 200) for i in range(count)]
    with Publisher(broker) as pub:
        pub.publish((TOPIC, p) for p in sent)

    async def run() -> tuple[list[Message], list[Message], int, int]:
        inbox = Inbox(asyncio.get_running_loop())
        ingest = _ingest(broker, "col", inbox, receive_maximum=100)
        first = await _drain(ingest, inbox, 100, ack=False)
        # The broker goes on sending past the full window: bytes wait in the read buffer.
        await _until(lambda: ingest._client.buffered > 0, "bytes waiting in the read buffer")
        held = ingest._client.buffered
        await asyncio.to_thread(broker.restart)
        # The pipeline acks them later, as it acks everything; for the old connection, so
        # the acks are dropped (the broker re-sends those messages anyway).
        generation = first[0].generation
        ingest.ack(generation, [m.mid for m in first])
        rest = await _drain(ingest, inbox, count)
        rest += await _drain(ingest, inbox, count, quiet_s=1.0)  # and nothing more
        await asyncio.sleep(0.5)
        ingest.close()
        return first, rest, held, ingest.connects

    first, rest, held, connects = asyncio.run(run())
    assert held > 0, "the test needs bytes waiting in the read buffer at the restart"
    assert connects == 2
    old_connection = [m for m in first + rest if m.generation == first[0].generation]
    new_connection = [m for m in first + rest if m.generation == first[0].generation + 1]
    assert len(old_connection) + len(new_connection) == len(first + rest)
    # Nothing was acknowledged on the old connection, so the broker re-sends everything; each
    # connection sees whole messages in publishing order.
    read_before = [_whole(m.payload) for m in old_connection]
    assert read_before == list(range(len(read_before))) and len(read_before) >= 100
    assert [_whole(m.payload) for m in new_connection] == list(range(count))


def test_a_full_window_with_bytes_buffered_waits_instead_of_spinning(broker: Broker) -> None:
    """Nothing acknowledged and the in-flight window full, while read bytes wait in the buffer:
    the MQTT thread must block in select() (a few hundred rounds a second at most), not poll
    the buffer it may not read from."""
    create_session(broker, "col")
    with Publisher(broker) as pub:
        pub.publish((TOPIC, _payload(i, 200)) for i in range(1000))

    async def run() -> tuple[int, int, int]:
        inbox = Inbox(asyncio.get_running_loop())
        ingest = _ingest(broker, "col", inbox, receive_maximum=100)
        got = await _drain(ingest, inbox, 100, ack=False)
        await asyncio.sleep(0.2)
        before = ingest.rounds
        await asyncio.sleep(1.0)
        rounds = ingest.rounds - before
        held = ingest._client.buffered
        ingest.close()
        return len(got), held, rounds

    got, held, rounds = asyncio.run(run())
    assert got >= 100 and held > 0
    assert rounds < 1000, f"{rounds} rounds in one idle second"


# The private parts of paho the adapter relies on, checked on the installed library. --------------

def test_the_installed_paho_has_the_private_methods_the_adapter_overrides() -> None:
    check_paho_internals(mqtt.Client)  # raises PahoIncompatible, naming the pin, when not
    for name in PRIVATE_METHODS:
        assert name in vars(mqtt.Client), f"paho moved {name}: see collector/ingest/paho_adapter.py"
        assert name in vars(BufferedClient)


def test_a_paho_without_them_is_refused_loudly() -> None:
    class Renamed(mqtt.Client):
        def _sock_recv(self, size: int) -> bytes:  # type: ignore[override]
            return b""

    with pytest.raises(PahoIncompatible, match=r"paho-mqtt>=2\.1,<3.*_sock_recv"):
        check_paho_internals(Renamed)


def test_queued_packets_and_the_socket_are_where_the_adapter_reads_them(broker: Broker) -> None:
    client = BufferedClient(CallbackAPIVersion.VERSION2, client_id="adapter-check")
    try:
        assert client.connect(broker.host, broker.port) == MQTTErrorCode.MQTT_ERR_SUCCESS
        sock: Any = client._sock
        assert sock is not None and sock is client.socket()
        client.publish("sensorledger/v1/adapter/reading", b"x", qos=1)
        out = client._out_packet
        assert isinstance(out, collections.deque) and out
        assert set(out[-1]) >= OUT_PACKET_KEYS, sorted(out[-1])
        assert out[-1]["pos"] == 0 and out[-1]["to_process"] == len(out[-1]["packet"])
        # A round of writes goes through the overridden _packet_write and _sock_send.
        assert client.loop_write() == MQTTErrorCode.MQTT_ERR_SUCCESS
        assert client.socket_writes >= 1
    finally:
        client.disconnect()
