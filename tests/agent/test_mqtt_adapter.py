"""The aiomqtt adapter against the installed aiomqtt and a real Mosquitto.

agent/outbox/mqtt_adapter.py uses aiomqtt's private parts. These tests are the alarm for an
aiomqtt upgrade: each runs one function of the adapter on the real library, and fails if what
the adapter relies on is gone or behaves differently.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import tomllib
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from agent.outbox.mqtt_adapter import (
    AIOMQTT_PIN,
    allow_pending_calls,
    connect_refusal,
    settle,
    watch_puback_reasons,
)
from tests.support.broker import Broker

REPO = Path(__file__).resolve().parents[2]


def client_for(broker: Broker, name: str) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, identifier=name,
                          protocol=aiomqtt.ProtocolVersion.V5, timeout=5)


def test_the_installed_aiomqtt_is_the_one_the_adapter_is_written_for() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    pins = [d for d in pyproject["project"]["dependencies"] if d.startswith("aiomqtt")]
    assert pins == [f"aiomqtt{AIOMQTT_PIN}"], "pyproject and the adapter name one pin"
    major = int(re.match(r"\d+", aiomqtt.__version__).group())  # type: ignore[union-attr]
    assert major == 2, (
        f"aiomqtt {aiomqtt.__version__} is installed; agent/outbox/mqtt_adapter.py is "
        f"written for aiomqtt{AIOMQTT_PIN}: check each of its uses, then move the pin")


async def test_a_refused_publish_is_reported_before_the_publish_returns(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic write adapter/allowed/#\n")
    broker = Broker(workdir=tmp_path / "broker", extra_conf=f"acl_file {acl}")
    broker.start()
    try:
        refused: list[str] = []
        async with client_for(broker, "adapter-acl") as client:
            watch_puback_reasons(client, refused.append)
            allow_pending_calls(client, 64)
            assert client.pending_calls_threshold == 64
            # aiomqtt's own handler still runs: each PUBACK resolves its own publish.
            await asyncio.gather(*(client.publish("adapter/allowed/y", b"1", qos=1, timeout=5)
                                   for _ in range(50)))
            assert refused == []
            # (Mosquitto drops the connection after a refused QoS 1 publish.)
            await client.publish("adapter/forbidden/x", b"2", qos=1, timeout=5)
            assert refused == ["Not authorized"]
    finally:
        broker.stop()


async def test_the_error_of_a_dropped_connection_is_settled(broker: Broker) -> None:
    # The broker vanishes while nobody reads the client's messages (as when the publisher is
    # already leaving): without settle(), asyncio reports "Future exception was never
    # retrieved" with a traceback when the client is collected.
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        client = client_for(broker, "adapter-drop")
        with contextlib.suppress(aiomqtt.MqttError):
            async with client:
                broker.stop(kill=True)
                await wait_until_done(client._disconnected)  # what settle() relies on
        settle(client)
        del client
        gc.collect()
        await asyncio.sleep(0.05)
        assert not [c for c in reported if "never retrieved" in str(c.get("message"))], reported
    finally:
        loop.set_exception_handler(None)


async def wait_until_done(future: asyncio.Future[None]) -> None:
    assert isinstance(future, asyncio.Future)
    for _ in range(200):
        if future.done():
            return
        await asyncio.sleep(0.05)
    pytest.fail("aiomqtt's _disconnected future did not complete when the broker went away")


async def test_a_refused_connect_tells_its_reason(tmp_path: Path) -> None:
    broker = Broker(workdir=tmp_path / "broker")
    broker.listener_conf = f"listener {broker.port} {broker.host}\nallow_anonymous false"
    broker.start()
    try:
        with pytest.raises(aiomqtt.MqttError) as caught:
            async with client_for(broker, "adapter-anonymous"):
                pass
        assert connect_refusal(caught.value) == "Not authorized"
        assert connect_refusal(aiomqtt.MqttError("Operation timed out")) is None
    finally:
        broker.stop()
