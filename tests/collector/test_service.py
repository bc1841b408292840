"""The collector as a service (issue 13, item 14): systemd Type=notify with a watchdog, and each
device's link (online/offline, last seen) from the agents' status topic in `devices list`.
A real collector process, a real Mosquitto, a real notify socket."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.broker import Broker
from tests.support.collector import (
    REPO,
    CollectorProcess,
    Ledger,
    Publisher,
    make_devices,
    run_cli,
)
from tests.support.notify import lines, notify_socket_at, pings_after_ready, receive_until
from tests.support.polling import wait_until

UNIT = REPO / "deploy" / "ledger-collector.service"
PINGS = 10  # watchdog pings checked after READY (0.3 s apart: ~3 s)
ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    with notify_socket_at(tmp_path / "notify.sock") as bound:
        yield bound


def test_collector_notifies_ready_watchdog_status_and_stopping(
    collector: Callable[..., CollectorProcess], notify_socket: tuple[socket.socket, Path],
) -> None:
    sock, path = notify_socket
    col = collector(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "600000"}).start()
    connected = "STATUS=broker connected; 0 readings acknowledged"
    # READY, the connected status and ten watchdog pings, however long a loaded machine takes
    # to start the process; the pings' times are the kernel's arrival stamps.
    messages = receive_until(
        sock, lambda got: len(pings_after_ready(got)) >= PINGS
        and any(connected in text for _, text in got), what="READY, status and pings")
    texts = [text for _, text in messages]
    pings = pings_after_ready(messages)
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert (pings[-1] - pings[0]) / (len(pings) - 1) < 0.4, gaps  # every 0.3 s (half of 0.6)
    assert max(gaps) < 0.6, (gaps, texts)  # never as long as the watchdog timeout
    assert col.proc is not None
    col.proc.send_signal(15)
    receive_until(sock, lambda got: any("STOPPING=1" in text for text in lines(got)),
                  what="STOPPING=1 after SIGTERM")
    assert col.wait_exit() == 0  # the one SIGTERM: drained, sealed, exit 0


def _unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_is_type_notify_with_a_watchdog(tmp_path: Path) -> None:
    s = _unit_settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["WatchdogSec"] and s["Restart"] == ["on-failure"]
    assert s["RestartPreventExitStatus"] == ["2"]
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # the settings above are still checked
    script = Path(sys.executable).parent / "ledger-collector"
    unit = tmp_path / "ledger-collector.service"
    unit.write_text(UNIT.read_text().replace("/opt/sensorledger/bin/ledger-collector",
                                             str(script)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if "ledger-collector.service" in line]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr


def _agent_link(broker: Broker, device_id: str) -> mqtt.Client:
    """What an agent does on its status topic: a retained will, then a retained "online"."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"agent-{device_id}")
    topic = f"sensorledger/v1/{device_id}/status"
    client.will_set(topic, b"offline", qos=1, retain=True)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, b"online", qos=1, retain=True).wait_for_publish(10)
    return client


def test_devices_list_shows_each_device_online_or_offline_and_last_seen(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess],
) -> None:
    up, gone, silent = make_devices(3, prefix="link")
    ledger.enrol([up, gone, silent])
    col = collector().start()
    up_link = _agent_link(broker, up.device_id)
    gone_link = _agent_link(broker, gone.device_id)
    try:
        up_link.publish(f"sensorledger/v1/{up.device_id}/status",
                        json.dumps({"seq": 4, "spooled": 0}).encode()).wait_for_publish(10)
        # An agent that vanishes: the broker publishes its will.
        gone_link.loop_stop()
        assert gone_link.socket() is not None
        gone_link.socket().close()  # type: ignore[union-attr]
        with Publisher(broker) as pub:
            pub.publish([(silent.topic, silent.next())])

        def links() -> dict[str, dict[str, str | None]]:
            listing = run_cli("devices", "list", "--db", ledger.db, "--json")
            return {k["device_id"]: k for k in json.loads(listing.output)}

        wait_until(lambda: links()[up.device_id]["link"] == "online"
                   and links()[gone.device_id]["link"] == "offline", 30, 0.3,
                   message="links in devices list")
        by_device = links()
        assert re.fullmatch(ISO_UTC, by_device[up.device_id]["last_seen"] or "")
        # `silent` publishes no status: no link, but its reading counts as seen.
        assert by_device[silent.device_id]["link"] is None
        assert re.fullmatch(ISO_UTC, by_device[silent.device_id]["last_seen"] or "")
        text = run_cli("devices", "list", "--db", ledger.db).output
        assert "link" in text.splitlines()[0] and "last seen (UTC)" in text.splitlines()[0]
        assert re.search(rf"^{up.device_id} .* online +{ISO_UTC} +active$", text, re.M), text
        assert re.search(rf"^{gone.device_id} .* offline ", text, re.M), text
        # Status messages are not readings: nothing was quarantined or stored for them.
        assert ledger.count("quarantine") == 0 and ledger.count("readings") == 1
    finally:
        up_link.loop_stop()
        up_link.disconnect()
    assert col.stop() == 0
