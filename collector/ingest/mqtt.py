"""MQTT ingest: one thread owns the paho client; acknowledgements are sent only when asked.

Why a thread of our own rather than ``loop_start()``: every paho call (connect, read, ack,
reconnect) happens on this one thread, so an acknowledgement can never race a reconnect. Each
connection gets a *generation* number and every message is stamped with it; an ack request for
an older generation is dropped, because after a reconnect the broker re-sends unacknowledged
messages and may reuse their packet ids for other messages — acking an old id on the new
connection could acknowledge a message we have not stored. Dropping it is always safe: the
broker re-delivers, and the ledger counts the copy as a duplicate and acks it then.

The client subscribes with QoS 1 on a persistent session (fixed client id; MQTT 5
``clean_start=False`` with a session expiry, or MQTT 3.1.1 ``clean_session=False``) and with
``manual_ack=True``. Under MQTT 5 the collector states a Receive Maximum, which Mosquitto uses
instead of its ``max_inflight_messages`` for this client, so the broker can keep thousands of
messages in flight while the collector batches commits.

The client itself, with its batched socket reads and joined acknowledgements, is
:class:`collector.ingest.paho_adapter.BufferedClient`: the one module that touches paho's
private parts, with its version pin.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import select
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from collector import faults
from collector.config import MqttConfig, broker_tls_context, parse_broker_url
from collector.errors import ConfigError
from collector.ingest.paho_adapter import BufferedClient
from collector.ingest.presence import PresenceBoard, status_topic_of
from collector.logs import event
from provenance.wire import private_filter

__all__ = ["Inbox", "Message", "MqttIngest"]

log = logging.getLogger("collector.ingest.mqtt")

#: Receipts waiting for the MQTT thread, and paho's own queue of QoS 1 publishes.
OUTGOING_MAX = 10_000


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_ms: int


class Inbox:
    """Hands messages from the MQTT thread to the asyncio pipeline, in arrival order.

    ``put`` never blocks (the broker's in-flight window bounds how much can pile up); the
    consumer is woken once per burst, not once per message.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: collections.deque[Message] = collections.deque()
        self._lock = threading.Lock()
        self._event = asyncio.Event()
        self._waiting = False

    def put(self, item: Message) -> None:
        with self._lock:
            self._items.append(item)
            if not self._waiting:
                return
            self._waiting = False
        self._loop.call_soon_threadsafe(self._event.set)

    async def get(self, max_items: int, timeout: float | None = None) -> list[Message]:
        """Up to ``max_items`` messages; waits for at least one (empty list on timeout)."""
        while True:
            with self._lock:
                if self._items:
                    n = min(len(self._items), max_items)
                    popleft = self._items.popleft
                    return [popleft() for _ in range(n)]
                self._waiting = True
                self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except TimeoutError:
                with self._lock:
                    self._waiting = False
                return []

    def __len__(self) -> int:
        return len(self._items)

    def oldest_ms(self) -> int | None:
        """Arrival time of the oldest message waiting here (None when empty)."""
        with self._lock:
            return self._items[0].received_ms if self._items else None


class MqttIngest:
    """The MQTT side of the collector, running on its own thread."""

    def __init__(self, config: MqttConfig, inbox: Inbox, *, expect_session: bool = False,
                 presence: PresenceBoard | None = None) -> None:
        self._config = config
        # The agents' status topic, beside the readings, when someone keeps the board.
        self._presence = presence
        self._status_topic = status_topic_of(config.topic) if presence is not None else None
        # A ledger that already holds data must find its session on the broker.
        self._expect_session = expect_session
        self._inbox = inbox
        self._address = parse_broker_url(config.url)
        self._window = config.receive_maximum
        self._acks: collections.deque[tuple[int, list[int]]] = collections.deque()
        # Receipts to publish (topic, payload), bounded: a receipt is advice, and an agent
        # that misses one publishes again and hears again.
        self._outgoing: collections.deque[tuple[str, bytes]] = collections.deque(
            maxlen=OUTGOING_MAX)
        self.published = 0
        self.publish_dropped = 0
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._receiving = True
        self._socket_open = False
        self._ever_connected = False
        self._session_present = False
        self.generation = 0
        self.connected = threading.Event()
        self.receiving_stopped = threading.Event()
        self.received = 0
        self._packets = 0
        self.rounds = 0  # of select/read/write; the thread must sleep, not spin, when idle
        self.acked = 0
        self.stale_acks = 0
        self.connects = 0
        self._client = self._make_client()

    @property
    def subscription(self) -> str:
        """The reading filter as subscribed: shared (``$share/GROUP/...``) in a cluster."""
        return self._shared(self._config.topic)

    def _shared(self, topic: str) -> str:
        group = self._config.share_group
        return f"$share/{group}/{topic}" if group else topic

    def _make_client(self) -> BufferedClient:
        cfg, addr = self._config, self._address
        v5 = cfg.protocol == "5"
        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            clean_session=None if v5 else False,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            manual_ack=True,
            reconnect_on_failure=False,  # this thread reconnects, with backoff and generations
        )
        # Receipts are the only messages the collector publishes; bound paho's queue of them.
        client.max_queued_messages_set(OUTGOING_MAX)
        client.max_inflight_messages = 100
        client.enable_logger(logging.getLogger("collector.paho"))
        logging.getLogger("collector.paho").setLevel(logging.WARNING)
        username = addr.username or cfg.username
        password = addr.password
        if cfg.password_file:
            try:
                password = Path(cfg.password_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read mqtt.password_file: {exc}") from None
        if username:
            client.username_pw_set(username, password)
        if addr.tls or cfg.tls.configured:
            client.tls_set_context(broker_tls_context(cfg.tls))  # names the file at fault
            if cfg.tls.insecure:
                client.tls_insecure_set(True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    # called from the pipeline (any thread) ---------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-ingest", daemon=True)
        self._thread.start()

    def ack(self, generation: int, mids: list[int]) -> None:
        """Acknowledge ``mids`` (received in ``generation``): their batch is committed."""
        if mids:
            self._acks.append((generation, mids))

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish ``payload`` on ``topic`` (QoS 1, retained) from the MQTT thread; dropped
        when the connection is down or the queue is full."""
        if len(self._outgoing) == OUTGOING_MAX:
            self.publish_dropped += 1
        self._outgoing.append((topic, payload))

    def stop_receiving(self) -> None:
        """Stop reading new messages; acknowledgements keep flowing (for a clean drain)."""
        self._receiving = False

    def close(self, timeout: float = 5.0) -> None:
        """Send the acks still queued, disconnect (the session stays on the broker), join."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        """The MQTT thread is alive (started and not yet finished)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def unacked(self) -> int:
        return self.received - self.acked - self.stale_acks

    # the MQTT thread ------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.5
        client = self._client
        while not self._closing.is_set():
            if not self._receiving:
                # Nothing is read after this point: the pipeline may drain the inbox for good.
                self.receiving_stopped.set()
            if not self._socket_open and not self._connect():
                # Exponential backoff with jitter, so a fleet of collectors (or a restarted
                # broker) does not see every client reconnect in the same instant.
                self._closing.wait(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 30.0)
                continue
            rc = self._step(client)
            self.rounds += 1
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._lost(rc)
                continue
            if self.connected.is_set():
                backoff = 0.5
            self._flush_acks()
            self._flush_outgoing()
        self._flush_acks()
        self._flush_outgoing()
        if self._socket_open:
            try:
                client.disconnect()
                client.loop_write()
            except (OSError, ValueError):
                pass
        self._socket_open = False
        self.connected.clear()

    def _step(self, client: BufferedClient) -> MQTTErrorCode:
        """One round of paho's external-loop API: select, read, write, housekeeping.

        Unlike ``loop()``, this reads every packet the socket already holds rather than one per
        select(), and needs no wake-up socket pair (a syscall per queued ack).
        """
        sock = client.socket()
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        # Backpressure: hold at most `receive_maximum` messages between arrival and ack; the
        # rest waits in TCP buffers and on the broker (which keeps it for our session).
        receiving = self._receiving and max(self.unacked, len(self._inbox)) < self._window
        # TLS and our read buffer may hold bytes that select() cannot see; they matter only
        # while we read (else a full window would spin here until the acks come).
        pending = getattr(sock, "pending", None)
        buffered = receiving and (
            bool(client.buffered) or (bool(pending()) if callable(pending) else False))
        # Short timeout while acks may be due: they are sent between reads.
        timeout = 0.0 if buffered else 0.002 if self.unacked else 0.05
        try:
            readable, _, _ = select.select([sock] if receiving else [],
                                           [sock] if client.want_write() else [], [], timeout)
        except (OSError, ValueError):
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if receiving and (readable or buffered):
            for _ in range(256):
                before = self._packets
                rc = client.loop_read()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._packets == before:
                    break
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        if client.want_write():
            rc = client.loop_write()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        return client.loop_misc()

    def _connect(self) -> bool:
        cfg, addr = self._config, self._address
        self.generation += 1
        while self._acks:  # all of them belong to an older connection
            _, mids = self._acks.popleft()
            self.stale_acks += len(mids)
        try:
            if not self._ever_connected:
                kwargs: dict[str, Any] = {}
                if cfg.protocol == "5":
                    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                    props.SessionExpiryInterval = cfg.session_expiry
                    props.ReceiveMaximum = cfg.receive_maximum
                    kwargs = {"clean_start": False, "properties": props}
                self._client.connect(addr.host, addr.port, cfg.keepalive, **kwargs)
                self._ever_connected = True
            else:
                self._client.reconnect()
        except (OSError, ssl.SSLError, ValueError) as exc:
            event(log, "broker_unreachable", logging.WARNING, url=cfg.url, error=str(exc))
            return False
        self._socket_open = True
        return True

    def _lost(self, rc: MQTTErrorCode) -> None:
        if self._socket_open:
            event(log, "broker_connection_lost", logging.WARNING, reason=mqtt.error_string(rc),
                  unacked=self.unacked)
        self._socket_open = False
        self.connected.clear()

    def _flush_acks(self) -> None:
        client = self._client
        while self._acks:
            generation, mids = self._acks.popleft()
            if generation != self.generation or not self.connected.is_set():
                self.stale_acks += len(mids)
                continue
            half = len(mids) // 2
            for i, mid in enumerate(mids):
                if i == half:
                    faults.point("acks.partial")
                client.ack(mid, 1)
            self.acked += len(mids)

    def _flush_outgoing(self) -> None:
        client = self._client
        while self._outgoing:
            topic, payload = self._outgoing.popleft()
            if not self.connected.is_set():
                self.publish_dropped += 1
                continue
            info = client.publish(topic, payload, qos=1, retain=True)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.published += 1
            else:
                self.publish_dropped += 1

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            event(log, "broker_refused", logging.ERROR, reason=str(reason_code))
            return
        self.connects += 1
        if not flags.session_present and (self.connects > 1 or self._expect_session):
            event(log, "session_lost", logging.ERROR,
                  detail="the broker kept no session for this client id: messages published "
                         "while the collector was away may be lost; check session expiry")
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        # Status at QoS 0 (nothing to acknowledge), retained states sent on every subscribe.
        status = self._status_topic
        # Private readings come on a topic of their own (after the status one, whose place in
        # the reason codes _on_subscribe reads).
        private = private_filter(self._config.topic)
        if self._config.protocol == "5":
            status_options = SubscribeOptions(qos=0)
            client.subscribe([(self.subscription, options)]
                             + ([(status, status_options)] if status else [])
                             + [(self._shared(t), options) for t in private])
        else:
            client.subscribe([(self.subscription, 1)] + ([(status, 0)] if status else [])
                             + [(self._shared(t), 1) for t in private])
        # Acks may flow from now on (a resumed session re-delivers right after CONNACK).
        self.connected.set()
        self._session_present = bool(flags.session_present)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[Any], properties: Any) -> None:
        if len(reason_codes) > 1 and reason_codes[1].is_failure:
            event(log, "status_subscription_refused", logging.WARNING, topic=self._status_topic,
                  reason=str(reason_codes[1]),
                  detail="devices list will not show which devices are online")
        if reason_codes[:1] and reason_codes[0].is_failure:
            event(log, "subscription_refused", logging.ERROR, topic=self._config.topic,
                  reason=", ".join(str(c) for c in reason_codes),
                  detail="check the broker ACL for this client")
            return
        # Logged once the broker has the subscription: from here on nothing published is missed.
        event(log, "broker_connected", url=self._config.url, client_id=self._config.client_id,
              session_present=self._session_present, generation=self.generation,
              qos=[int(getattr(c, "value", 0)) for c in reason_codes[:1]])

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<topic is not UTF-8>"
        self._packets += 1
        if self._presence is not None and topic.endswith("/status"):
            self._presence.observe(topic, bytes(msg.payload), bool(msg.retain),
                                   time.time_ns() // 1_000_000)
            return
        if msg.qos:
            self.received += 1
        self._inbox.put(Message(topic, bytes(msg.payload), msg.mid, msg.qos, self.generation,
                                time.time_ns() // 1_000_000))
