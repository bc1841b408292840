"""Every use of aiomqtt's private parts, in one place.

Version pin: ``aiomqtt>=2.3,<3`` (pyproject.toml), on ``paho-mqtt>=2.1,<3``. What is used here
is not aiomqtt's public API, so any aiomqtt release may change it; 3.0 is allowed to break it
by semver and is kept out until this module is checked against it. The test
``tests/agent/test_mqtt_adapter.py`` runs each function against the installed aiomqtt and a
real Mosquitto, so an upgrade that breaks one fails there, loudly, not in the field.

What we use, and why:

* ``Client._client``: the paho client aiomqtt wraps. aiomqtt resolves ``publish(qos=1)`` on
  any PUBACK and drops its MQTT 5 reason code; a broker whose ACL forbids the topic still
  acknowledges, with "Not authorized". :func:`watch_puback_reasons` wraps paho's
  ``on_publish`` (aiomqtt's own handler, kept and called) so that a refused reading is never
  taken for a delivered one and deleted.
* ``Client._disconnected``: the future aiomqtt completes when the connection ends. When the
  broker drops us while we are already leaving, nobody awaits it and asyncio would log
  "Future exception was never retrieved"; :func:`settle` marks it seen.
* ``Client.pending_calls_threshold`` (public, but only as an attribute): aiomqtt warns once
  more calls are pending; the publisher pipelines on purpose (:func:`allow_pending_calls`).
* ``aiomqtt.exceptions.MqttConnectError`` and its ``rc`` (not exported by aiomqtt): how a
  refused CONNECT tells its reason ("Not authorized"), for :func:`connect_refusal`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttConnectError

__all__ = [
    "AIOMQTT_PIN",
    "AdapterBroken",
    "allow_pending_calls",
    "connect_refusal",
    "settle",
    "watch_puback_reasons",
]

#: The aiomqtt versions this module is written for (pyproject.toml says the same).
AIOMQTT_PIN = ">=2.3,<3"


class AdapterBroken(RuntimeError):
    """The installed aiomqtt no longer has what this module relies on."""

    def __init__(self, what: str) -> None:
        super().__init__(f"aiomqtt {aiomqtt.__version__}: {what}; agent/outbox/mqtt_adapter.py "
                         f"is written for aiomqtt{AIOMQTT_PIN}")


def _paho(client: aiomqtt.Client) -> paho.Client:
    inner = getattr(client, "_client", None)
    if not isinstance(inner, paho.Client):
        raise AdapterBroken("Client._client is not a paho Client")
    return inner


def watch_puback_reasons(client: aiomqtt.Client, on_refused: Callable[[str], None]) -> None:
    """Call ``on_refused(reason)`` for every PUBACK whose MQTT 5 reason code is a failure.

    Call it once the client is connected. ``on_refused`` runs before aiomqtt's own handler
    resolves the publish, so whoever awaits the publish sees the refusal first.
    """
    inner: Any = _paho(client).on_publish  # the handler that resolves aiomqtt's publish()
    if inner is None:
        raise AdapterBroken("no on_publish handler on the paho client")

    def on_publish(c: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            on_refused(str(reason))  # first: the pump must see it before the ack lands
        inner(c, userdata, mid, reason, props)

    _paho(client).on_publish = on_publish


def settle(client: aiomqtt.Client) -> None:
    """Mark aiomqtt's disconnect error as seen once we are done with the client."""
    future = getattr(client, "_disconnected", None)
    if not isinstance(future, asyncio.Future):
        raise AdapterBroken("Client._disconnected is not a future")
    if future.done() and not future.cancelled():
        future.exception()


def allow_pending_calls(client: aiomqtt.Client, count: int) -> None:
    """Let ``count`` calls be pending before aiomqtt warns (we pipeline on purpose)."""
    if not hasattr(client, "pending_calls_threshold"):
        raise AdapterBroken("Client.pending_calls_threshold is gone")
    client.pending_calls_threshold = count


def connect_refusal(exc: BaseException) -> str | None:
    """The broker's reason when ``exc`` is a refused CONNECT (CONNACK failure), else None."""
    if not isinstance(exc, MqttConnectError):
        return None
    return str(getattr(exc, "rc", "")) or str(exc)
