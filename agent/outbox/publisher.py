"""Publishing the outbox to the broker: QoS 1, in order, pipelined, deleted only after PUBACK.

One connection at a time (aiomqtt on paho-mqtt, MQTT 5). For QoS 1, ``aiomqtt.Client.publish``
returns when paho reports the message published, which paho does on PUBACK
(``_handle_pubackcomp`` -> ``on_publish``). Waiting for each PUBACK before the next publish
would cap the rate at one round trip per reading, so up to ``in_flight`` publishes are
outstanding at once. Order on the wire still follows the spool: each publish task runs up to
paho's ``publish()`` call in the order it was created (the event loop starts ready tasks
FIFO), and paho sends, and queues beyond its in-flight limit, in call order. Acks are taken
head-of-line, so the spool only ever loses a prefix of what was sent.

After any disconnect the in-flight publishes are abandoned and the next connection re-sends
from the oldest row still in the spool: a reading whose PUBACK was lost arrives twice, with
identical bytes, which the collector drops as a duplicate.

MQTT 5 because its PUBACK carries a reason code: a broker that refuses a reading (ACL: "Not
authorized") still acknowledges it, and with MQTT 3.1.1 the agent could not tell and would
delete a reading that was never stored. aiomqtt does not expose the reason code, so we wrap
paho's ``on_publish``; that and every other use of aiomqtt's private parts is in
:mod:`.mqtt_adapter`.

The publisher sees the spool only through the :class:`~.interface.Outbox` interface, and
reports the link in a :class:`~.link.LinkState` it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import aiomqtt

from provenance.errors import ProvenanceError
from provenance.keys import PublicKey
from provenance.private_message import is_private_message
from provenance.receipt import SignedReceipt
from provenance.wire import (
    device_filter,
    private_topic,
    reading_topic,
    receipt_topic,
    status_topic,
)

from ..config import BrokerConfig
from ..errors import AgentError, BrokerError, SpoolError
from .interface import Outbox, Row
from .link import LinkState
from .mqtt_adapter import allow_pending_calls, connect_refusal, settle, watch_puback_reasons

__all__ = [
    "Publisher",
    "backoff_delay",
    "explain",
    "reading_topic",
    "status_topic",
]

log = logging.getLogger(__name__)

#: A connection that stayed up this long resets the backoff to its minimum.
STABLE_S = 10.0
#: Retained payloads on the status topic.
ONLINE, OFFLINE = b"online", b"offline"


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, capped at ``high``.

    The fixed half keeps a fleet from hammering a broker that just came back; the random half
    keeps it from reconnecting in lockstep.
    """
    ceiling = min(high, low * 2.0 ** min(attempt, 32))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class _PahoErrors(logging.Handler):
    """Keeps paho's last error line: the real cause of a connect that merely "timed out"
    (e.g. the TLS alert sent by a broker that requires a client certificate)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage()


class Publisher:
    """Moves readings from the outbox to the broker until told to stop.

    ``heartbeat`` gives the snapshot each heartbeat publishes; ``link`` is where the
    connection's state is reported (given, so that others can read it).
    """

    def __init__(
        self, device_id: str, broker: BrokerConfig, outbox: Outbox, *,
        tls: ssl.SSLContext | None, password: str | None, heartbeat_s: float,
        heartbeat: Callable[[], dict[str, Any]] = dict, link: LinkState | None = None,
        rng: random.Random | None = None, receipts: bool = False,
        receipt_timeout_s: float = 30.0, receipt_key: PublicKey | None = None,
    ) -> None:
        self.device_id = device_id
        self.broker = broker
        self.outbox = outbox
        self.link = link if link is not None else LinkState()
        self._tls = tls
        self._password = password
        self._heartbeat = heartbeat
        self._heartbeat_s = heartbeat_s
        self._rng = rng or random.Random()
        # Receipts mode: hear the collector's receipts, publish again what none covers in time.
        self._receipts = receipts
        self._receipt_timeout_ms = int(receipt_timeout_s * 1000)
        self._due_every_s = max(0.1, min(receipt_timeout_s / 4, 5.0))
        self._receipt_key = receipt_key
        self._silence_explained = False
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._deadline = float("inf")
        self._refused: str | None = None
        #: Readings handed to the broker by this process, re-sends after a reconnect included.
        self.sent = 0
        self._paho_errors = _PahoErrors()
        self._mqtt_log = logging.getLogger("agent.mqtt")
        self._mqtt_log.setLevel(logging.WARNING)  # paho logs every packet at DEBUG
        # paho's errors repeat at every reconnect attempt; they reach the log through
        # explain(), once per distinct reason.
        self._mqtt_log.propagate = False

    def stop(self, deadline: float) -> None:
        """Deliver what can be delivered until ``deadline`` (monotonic), then disconnect."""
        self._deadline = deadline
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        self._mqtt_log.addHandler(self._paho_errors)
        new_rows = asyncio.create_task(self._wake_on_new_rows(), name="outbox watch")
        try:
            await self._reconnecting()
        finally:
            new_rows.cancel()
            await asyncio.gather(new_rows, return_exceptions=True)
            self._mqtt_log.removeHandler(self._paho_errors)

    async def _wake_on_new_rows(self) -> None:
        while True:
            await self.outbox.wait_for_new()
            self._wake.set()

    async def _reconnecting(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                await self._connection()
            except (aiomqtt.MqttError, AgentError, OSError) as exc:
                # AgentError includes SpoolError: a spool that cannot be read or written
                # right now is retried like a broker that cannot be reached.
                self._record_failure(explain(exc, self.broker, self._paho_errors.last), attempt)
            finally:
                self.link.connected = False
                self.link.connected_since_ms = None
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= STABLE_S:
                attempt = 0
            delay = backoff_delay(attempt, self.broker.reconnect_min_s,
                                  self.broker.reconnect_max_s, self._rng)
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    def _record_failure(self, reason: str, attempt: int) -> None:
        self.link.failures += 1
        # Say it the first time, when the reason changes, and then now and again.
        if reason != self.link.last_error or attempt % 20 == 0:
            log.warning("broker %s: %s (attempt %d; retrying with backoff)",
                        self.broker.url, reason, attempt + 1)
        self.link.last_error = reason

    def _healthy(self) -> None:
        """The broker took a publish: the link works (not merely connected)."""
        if self.link.last_error is not None:
            log.info("broker %s: connected again, delivering", self.broker.url)
            self.link.last_error = None

    def _client(self) -> aiomqtt.Client:
        b = self.broker
        self._paho_errors.last = None
        return aiomqtt.Client(
            b.host, b.port, identifier=b.client_id, username=b.username,
            password=self._password, protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=True, keepalive=b.keepalive_s, timeout=b.connect_timeout_s,
            tls_context=self._tls, logger=self._mqtt_log,
            max_inflight_messages=b.in_flight,
            will=aiomqtt.Will(status_topic(self.device_id), OFFLINE, qos=1, retain=True),
        )

    async def _connection(self) -> None:
        self._refused = None
        client = self._client()
        try:
            await self._session(client)
        finally:
            settle(client)

    async def _session(self, client: aiomqtt.Client) -> None:
        async with client:
            watch_puback_reasons(client, self._on_refused)
            allow_pending_calls(client, self.broker.in_flight + 16)
            self.link.connected = True
            self.link.connects += 1
            self.link.connected_since_ms = time.time_ns() // 1_000_000
            if self.link.connects == 1:
                log.info("broker %s: connected", self.broker.url)
            await client.publish(status_topic(self.device_id), ONLINE, qos=1, retain=True)
            if self._receipts:
                await client.subscribe(receipt_topic(self.device_id), qos=1)
            self._check_refused()
            self._healthy()
            heartbeat = asyncio.create_task(self._heartbeats(client))
            try:
                await self._pump(client)
            finally:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)
            # A clean stop: the Will is not sent on a normal disconnect, so say it ourselves.
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(status_topic(self.device_id), OFFLINE, qos=1, retain=True,
                                     timeout=1.0)

    def _check_refused(self) -> None:
        if self._refused is not None:
            raise BrokerError(
                f"the broker refused a publish ({self._refused}); check that its ACL lets "
                f"this client publish to {device_filter(self.device_id)} (and to the "
                "topics of any self-signing sensor it relays)"
            )

    def _on_refused(self, reason: str) -> None:
        self._refused = reason
        self._wake.set()

    async def _heartbeats(self, client: aiomqtt.Client) -> None:
        while True:
            payload = json.dumps(self._heartbeat(), separators=(",", ":"))
            await client.publish(status_topic(self.device_id), payload.encode(), qos=0)
            await asyncio.sleep(self._heartbeat_s)

    async def _pump(self, client: aiomqtt.Client) -> None:
        """Keep up to ``in_flight`` readings outstanding; ack and delete them in order."""
        window = self.broker.in_flight
        ack_timeout = max(30.0, 2.0 * self.broker.keepalive_s)
        inflight: deque[tuple[Row, asyncio.Task[None]]] = deque()
        after = 0  # re-send everything still spooled: we cannot know what the broker kept
        await self.outbox.flush_acks()  # ...except what it acknowledged before
        watcher = asyncio.create_task(self._listen(client))
        watcher.add_done_callback(lambda _: self._wake.set())
        exhausted = False
        due_check = 0.0
        try:
            while True:
                # Clear first, then look at everything: whatever happens after this line
                # sets the event again, so no wake-up is lost while we await below.
                self._wake.clear()
                if watcher.done():
                    watcher.result()
                self._check_refused()
                acked: list[int] = []
                while inflight and inflight[0][1].done():
                    row, task = inflight.popleft()
                    if task.cancelled():
                        raise BrokerError("publish cancelled")
                    error = task.exception()
                    if error is not None:
                        raise error
                    acked.append(row.pos)
                if acked:
                    self.outbox.ack(acked, time.time_ns() // 1_000_000)
                if len(inflight) < window and not self._past_deadline():
                    rows = await self.outbox.fetch(after, window - len(inflight))
                    exhausted = len(rows) < window - len(inflight)
                    for row in rows:
                        self._send(client, row, inflight, ack_timeout)
                        after = row.pos
                    self.sent += len(rows)
                    if rows:
                        continue
                    if self._receipts and time.monotonic() >= due_check:
                        due_check = time.monotonic() + self._due_every_s
                        if await self._resend_due(client, inflight, window, ack_timeout):
                            continue
                if self._stopping.is_set() and (
                    (not inflight and exhausted) or self._past_deadline()
                ):
                    return
                if self._receipts:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._due_every_s)
                else:
                    await self._wake.wait()
        finally:
            watcher.cancel()
            for _, task in inflight:
                task.cancel()
            await asyncio.gather(watcher, *(t for _, t in inflight), return_exceptions=True)

    def _send(self, client: aiomqtt.Client, row: Row,
              inflight: deque[tuple[Row, asyncio.Task[None]]], ack_timeout: float) -> None:
        topic = (private_topic(row.device_id) if is_private_message(row.envelope)
                 else reading_topic(row.device_id))
        task = asyncio.create_task(client.publish(
            topic, row.envelope, qos=1, timeout=ack_timeout))
        task.add_done_callback(self._on_done)
        inflight.append((row, task))

    async def _resend_due(self, client: aiomqtt.Client,
                          inflight: deque[tuple[Row, asyncio.Task[None]]], window: int,
                          ack_timeout: float) -> bool:
        """Publish again what the broker took long ago and no receipt has covered since (a
        collector that lost it, mosquitto#2662, or a key not enrolled yet). True if any."""
        now_ms = time.time_ns() // 1_000_000
        flying = {row.pos for row, _ in inflight}
        rows = [r for r in await self.outbox.due(now_ms - self._receipt_timeout_ms,
                                                 window - len(inflight) + len(flying))
                if r.pos not in flying][:window - len(inflight)]
        for row in rows:
            self._send(client, row, inflight, ack_timeout)
        self.sent += len(rows)
        if rows:
            self.link.receipts.republished += len(rows)
            log.info("published %d reading(s) again: no receipt within %.0f s (seq %d..%d)",
                     len(rows), self._receipt_timeout_ms / 1000, rows[0].seq, rows[-1].seq)
            if self.link.receipts.received == 0 and not self._silence_explained:
                self._silence_explained = True
                log.warning(
                    "no receipt has come from the collector yet; readings stay in the spool "
                    "until one does. Check that the collector sends receipts (not run with "
                    "--no-receipts) and that the broker ACL lets this device read %s; with a "
                    "collector that sends none, set delivery = \"puback\"",
                    receipt_topic(self.device_id))
        return bool(rows)

    async def _listen(self, client: aiomqtt.Client) -> None:
        """Take the collector's receipts until the connection drops, then raise MqttError.

        aiomqtt ends its message iterator with MqttError on disconnect, which is the public
        way to notice a dead connection while publishes are waiting for acks that will never
        come (in puback mode nothing is subscribed and nothing arrives).
        """
        async for message in client.messages:
            if isinstance(message.payload, bytes | bytearray):
                await self._on_receipt(bytes(message.payload))
        raise aiomqtt.MqttError("disconnected")

    async def _on_receipt(self, raw: bytes) -> None:
        state = self.link.receipts
        try:
            signed = SignedReceipt.decode(raw)
            if self._receipt_key is not None:
                signed.verify(self._receipt_key)
            if signed.receipt.device_id != self.device_id:
                raise BrokerError(f"receipt for {signed.receipt.device_id!r} on our topic")
            settled = await self.outbox.settle(signed, time.time_ns() // 1_000_000)
        except (ProvenanceError, BrokerError) as exc:
            state.bad += 1
            state.last_bad = str(exc)
            log.warning("ignored a receipt: %s", exc)
            return
        except SpoolError as exc:
            log.error("%s; the receipt is ignored (the next one covers it)", exc)
            return
        r = signed.receipt
        state.received += 1
        state.last_ms = r.time_ms
        state.tree_size = max(state.tree_size or 0, r.tree_size)  # they may come out of order
        if r.sealed_through is not None:
            state.sealed_through = max(state.sealed_through or -1, r.sealed_through)
        for refusal in r.refused:
            state.refused[refusal.reason] += refusal.last - refusal.first + 1
            state.last_refusal = (f"seq {refusal.first}"
                                  + (f"..{refusal.last}" if refusal.last > refusal.first else "")
                                  + f": {refusal.reason}")
        if r.refused:
            log.warning("collector refused %s (%s)", state.last_refusal, settled)
        self._wake.set()

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self._wake.set()

    def _past_deadline(self) -> bool:
        return self._stopping.is_set() and time.monotonic() >= self._deadline


def explain(exc: BaseException, broker: BrokerConfig, paho_error: str | None = None) -> str:
    """Why a connection failed, in words that point at the fix."""
    where = f"{broker.host}:{broker.port}"
    if isinstance(exc, AgentError):
        return exc.diagnostics()
    reason = connect_refusal(exc)
    if reason is not None:
        hint = ""
        if "authori" in reason.lower() or "user name" in reason.lower():
            hint = " (check broker.username / password and the broker's ACL)"
        return f"broker refused the connection: {reason}{hint}"
    text = str(exc)
    detail = paho_error or ""
    combined = f"{text} {detail}"
    upper = combined.upper()
    if "CERTIFICATE_REQUIRED" in upper or "PEER DID NOT RETURN A CERTIFICATE" in upper:
        if broker.tls is None or broker.tls.cert_file is None:
            return (f"TLS handshake with {where} failed: the broker requires a client "
                    "certificate and none is configured (set broker.tls.cert_file and "
                    "broker.tls.key_file)")
        return (f"TLS handshake with {where} failed: the broker asked for a client "
                "certificate and did not accept ours")
    for alert, meaning in (("UNKNOWN_CA", "was not issued by a CA the broker trusts"),
                           # Same issuer name, different CA key: the signature fails.
                           ("DECRYPT_ERROR", "was not issued by a CA the broker trusts "
                                             "(its signature does not verify)"),
                           ("BAD_CERTIFICATE", "was rejected as a bad certificate"),
                           ("CERTIFICATE_EXPIRED", "has expired"),
                           ("CERTIFICATE_REVOKED", "has been revoked")):
        if alert in upper:
            return f"TLS handshake with {where} failed: our client certificate {meaning}"
    if "CERTIFICATE_VERIFY_FAILED" in upper or "CERTIFICATE VERIFY FAILED" in upper:
        return (f"TLS handshake with {where} failed: the broker's certificate is not trusted "
                f"({_tail(combined)}); check broker.tls.ca_file and the host name in the url")
    if "WRONG_VERSION_NUMBER" in upper or "RECORD_LAYER_FAILURE" in upper:
        return f"TLS handshake with {where} failed: is {where} a TLS listener? ({_tail(text)})"
    if "disconnected" in text.lower():
        cause = exc.__cause__ or exc.__context__
        because = f": {cause}" if cause is not None and str(cause) else ""
        return f"connection to {where} lost{because}"
    if "refused" in text.lower():
        return f"cannot reach broker at {where}: connection refused (is the broker running?)"
    if "timed out" in text.lower():
        if detail:
            return f"connection to {where} failed: {detail}"
        return f"no answer from broker at {where} within {broker.connect_timeout_s:g} s"
    return f"connection to {where} failed: {text or type(exc).__name__}" + (
        f" ({detail})" if detail else "")


def _tail(text: str) -> str:
    return text.strip().split("] ", 1)[-1].strip()
