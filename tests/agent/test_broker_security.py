"""TLS with required client certificates, and a broker that refuses readings (ACL)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.spool import read_report
from tests.support.agent_harness import (
    AgentProcess,
    device_public_key,
    make_pki,
    run_cli,
    verify_stream,
    write_config,
)
from tests.support.broker import Broker

StartAgent = Callable[..., AgentProcess]


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Broker, Path]]:
    """Mosquitto with a TLS listener that requires a client certificate from our CA."""
    pki = make_pki(tmp_path / "pki", client_cn="dev-test")
    broker = Broker(workdir=tmp_path / "broker")
    broker.listener_conf = "\n".join([
        f"listener {broker.port} {broker.host}",
        f"cafile {pki / 'ca.crt'}",
        f"certfile {pki / 'server.crt'}",
        f"keyfile {pki / 'server.key'}",
        "require_certificate true",
        "use_identity_as_username true",
    ])
    broker.start()
    yield broker, pki
    broker.stop()


def tls_subscriber(broker: Broker, pki: Path) -> tuple[paho.Client, list[bytes]]:
    got: list[bytes] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="tls-sub")
    client.tls_set(ca_certs=str(pki / "ca.crt"), certfile=str(pki / "client.crt"),
                   keyfile=str(pki / "client.key"))
    client.on_message = lambda c, u, m: got.append(bytes(m.payload))
    client.on_connect = lambda c, *a: c.subscribe("sensorledger/v1/+/reading", qos=1)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client, got


def tls_config(workdir: Path, broker: Broker, pki: Path, *, with_cert: bool) -> Path:
    tls = f'[broker.tls]\nca_file = "{pki / "ca.crt"}"\n'
    if with_cert:
        tls += f'cert_file = "{pki / "client.crt"}"\nkey_file = "{pki / "client.key"}"\n'
    return write_config(workdir, f"mqtts://127.0.0.1:{broker.port}", broker_extra=tls)


def test_agent_connects_with_its_client_certificate(
    tls_broker: tuple[Broker, Path], agents: StartAgent, tmp_path: Path
) -> None:
    broker, pki = tls_broker
    client, got = tls_subscriber(broker, pki)
    try:
        workdir = tmp_path / "agent"
        config = tls_config(workdir, broker, pki, with_cert=True)
        check = run_cli("check", "--config", str(config))
        assert check.returncode == 0, check.stderr
        assert "with client certificate" in check.stdout
        agent = agents(config)
        deadline = time.monotonic() + 15
        while len(got) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert agent.terminate() == 0
        stream = verify_stream(list(got), device_public_key(workdir))
        assert len(stream.readings) >= 20
        assert "connected" in agent.log()
    finally:
        client.loop_stop()
        client.disconnect()


def test_without_a_client_certificate_the_refusal_is_explained(
    tls_broker: tuple[Broker, Path], agents: StartAgent, tmp_path: Path
) -> None:
    broker, pki = tls_broker
    workdir = tmp_path / "agent"
    agent = agents(tls_config(workdir, broker, pki, with_cert=False))
    log = agent.wait_for_log("TLS handshake", timeout=20)
    assert ("the broker requires a client certificate and none is configured "
            "(set broker.tls.cert_file and broker.tls.key_file)") in log
    assert "Traceback" not in log
    # It keeps sampling into the spool and keeps trying; nothing was published.
    time.sleep(0.5)
    assert agent.terminate() == 0
    report = read_report(workdir / "state" / "spool.sqlite")
    assert report.depth > 0 and report.counters.published == 0
    status = run_cli("status", "--config", str(workdir / "agent.toml"))
    assert status.returncode == 0
    assert "requires a client certificate" in status.stdout


def test_a_certificate_from_another_ca_is_refused_and_explained(
    tls_broker: tuple[Broker, Path], agents: StartAgent, tmp_path: Path
) -> None:
    broker, pki = tls_broker
    rogue = make_pki(tmp_path / "rogue", client_cn="dev-test")
    workdir = tmp_path / "agent"
    tls = (f'[broker.tls]\nca_file = "{pki / "ca.crt"}"\n'
           f'cert_file = "{rogue / "client.crt"}"\nkey_file = "{rogue / "client.key"}"\n')
    agent = agents(write_config(workdir, f"mqtts://127.0.0.1:{broker.port}", broker_extra=tls))
    log = agent.wait_for_log("TLS handshake", timeout=20)
    assert "our client certificate was not issued by a CA the broker trusts" in log, log
    agent.terminate()


def test_a_reading_the_broker_refuses_stays_in_the_spool(
    tmp_path: Path, agents: StartAgent
) -> None:
    # MQTT 3.1.1 brokers acknowledge a publish the ACL forbids; MQTT 5 says "Not authorized"
    # in the PUBACK, and the agent must not delete a reading it was refused.
    acl = tmp_path / "acl"
    acl.write_text("topic write sensorledger/v1/other-device/#\n")
    broker = Broker(workdir=tmp_path / "broker", extra_conf=f"acl_file {acl}")
    broker.start()
    try:
        workdir = tmp_path / "agent"
        agent = agents(write_config(workdir, broker.url))
        log = agent.wait_for_log("refused a publish", timeout=20)
        assert "Not authorized" in log and "ACL" in log
        assert agent.terminate() == 0
        report = read_report(workdir / "state" / "spool.sqlite")
        assert report.counters.published == 0
        assert report.depth == report.counters.signed > 0
    finally:
        broker.stop()
