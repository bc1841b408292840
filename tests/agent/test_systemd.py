"""systemd integration: sd_notify over NOTIFY_SOCKET, the watchdog, and the unit file."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.systemd import Notifier
from tests.support.agent_harness import REPO, AgentProcess, write_config
from tests.support.broker import Broker
from tests.support.notify import lines, notify_socket_at, pings_after_ready, receive_until

UNIT = REPO / "deploy" / "sensor-agent.service"
StartAgent = Callable[..., AgentProcess]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    with notify_socket_at(tmp_path / "notify.sock") as bound:
        yield bound


def test_agent_sends_ready_status_and_periodic_watchdog(
    broker: Broker, agents: StartAgent, tmp_path: Path,
    notify_socket: tuple[socket.socket, Path],
) -> None:
    sock, path = notify_socket
    config = write_config(tmp_path / "agent", broker.url)
    agent = agents(config, env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "600000"})
    # READY, a status and ten watchdog pings, however long a loaded machine takes to start the
    # agent. Their times are the kernel's arrival stamps, free of this test's own scheduling.
    messages = receive_until(
        sock, lambda got: len(pings_after_ready(got)) >= 10
        and any(line.startswith("STATUS=seq ") for text in lines(got) for line in text),
        what="READY, status and pings")
    texts = [text for _, text in messages]
    pings = pings_after_ready(messages)
    # WATCHDOG_USEC = 0.6 s: the agent pings every 0.3 s (half).
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert (pings[-1] - pings[0]) / (len(pings) - 1) < 0.4, gaps
    assert max(gaps) < 0.6, (gaps, texts)  # never as long as the watchdog timeout

    agent.proc.send_signal(15)  # type: ignore[union-attr]
    receive_until(sock, lambda got: any("STOPPING=1" in text for text in lines(got)),
                  what="STOPPING=1 after SIGTERM")
    assert agent.proc.wait(60) == 0  # type: ignore[union-attr]


def test_notifier_speaks_to_abstract_namespace_sockets() -> None:
    name = f"sensor-agent-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": f"@{name}", "WATCHDOG_USEC": "10000000"})
        assert notifier.enabled and notifier.watchdog_interval_s == 5.0
        notifier.ready("up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"
        notifier.status("line one\nline two")  # one datagram, one line
        assert sock.recv(4096) == b"STATUS=line one line two"
        notifier.close()
    finally:
        sock.close()


def test_notifier_is_silent_outside_systemd_and_honours_watchdog_pid() -> None:
    assert not Notifier({}).enabled
    Notifier({}).ready()  # a no-op, no error
    other_pid = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000",
                 "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier(other_pid).watchdog_interval_s is None  # meant for another process
    mine = {**other_pid, "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(mine).watchdog_interval_s == 0.5
    Notifier(mine).watchdog()  # an unreachable socket is logged, never raised


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_declares_notify_watchdog_restart_user_state_and_hardening() -> None:
    s = unit_settings()
    assert s["Type"] == ["notify"]
    assert s["WatchdogSec"] and s["Restart"] == ["on-failure"]
    assert s["RestartPreventExitStatus"] == ["2"]  # config errors do not restart-loop
    assert s.get("DynamicUser") == ["yes"] or s.get("User")
    assert s["StateDirectory"] == ["sensor-agent"]
    assert s["ProtectSystem"] == ["strict"]
    assert s["NoNewPrivileges"] == ["yes"] and s["PrivateTmp"] == ["yes"]
    assert s["DevicePolicy"] == ["closed"]
    assert {v.split()[0] for v in s["DeviceAllow"]} >= {"char-ttyUSB", "char-ttyACM"}
    assert s["ExecStart"][0].split()[1:] == ["run", "--config", "/etc/sensorledger/agent.toml"]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    # ExecStart must name an existing executable for verify to pass: point it at this
    # checkout's installed console script instead of the documented /opt path.
    script = Path(sys.executable).parent / "sensor-agent"
    assert script.exists(), "the sensorledger package is not installed in this environment"
    unit = tmp_path / "sensor-agent.service"
    unit.write_text(UNIT.read_text().replace("/opt/sensorledger/bin/sensor-agent", str(script)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if "sensor-agent.service" in line]
    assert result.returncode == 0, result.stderr
    assert complaints == []  # verify exits 0 on unknown keys; they must not be there either
