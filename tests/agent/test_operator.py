"""What an operator meets first, through the real command line: `test`, logs, `status`,
`--version`, and `check` on the TLS identity."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware_stubs.water_quality import WaterProbeEmulator
from hardware.water_profiles import BUILTIN_PROFILES
from tests.support.agent_harness import (
    AgentProcess,
    Subscriber,
    make_pki,
    run_cli,
    write_config,
)
from tests.support.broker import Broker

StartAgent = Callable[..., AgentProcess]
REPO = Path(__file__).resolve().parents[2]
PROFILE = "evoqua-chlorine"


@pytest.fixture
def dead_port() -> Iterator[str]:
    """A serial port where nothing answers (a pseudo-terminal nobody reads)."""
    master, slave = os.openpty()
    try:
        yield os.ttyname(slave)
    finally:
        os.close(slave)
        os.close(master)


def probe_sensor(name: str, port: str, timeout_s: float = 0.3) -> str:
    """A water probe's sensor section. The short default timeout makes a dead probe's fault
    show soon; a live probe is given more, as a loaded machine may answer late."""
    return (f'[[sensors]]\nname = "{name}"\ndriver = "modbus-water"\nport = "{port}"\n'
            f'profile = "{PROFILE}"\nbaudrate = 115200\ntimeout_s = {timeout_s}\n'
            'interval_s = 0.5\n')


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"sensor-agent \d+\.\d+\S*\n", result.stdout), result.stdout


def test_test_once_prints_values_and_draft_and_publishes_nothing(
    tmp_path: Path, broker: Broker, subscriber: Subscriber, dead_port: str
) -> None:
    with WaterProbeEmulator(BUILTIN_PROFILES[PROFILE], seed=1) as probe:
        config = write_config(tmp_path, broker.url, sensors=probe_sensor("probe", probe.agent_path))
        result = run_cli("test", "--once", "--config", str(config))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "probe (modbus-water): water-quality"
    assert any(re.fullmatch(r"  ph = \d+\.\d+ pH", line) for line in lines), lines
    draft = json.loads(next(line for line in lines if line.startswith("  draft "))[8:])
    assert draft["device_id"] == "dev-test" and draft["kind"] == "water-quality"
    assert draft["seq"] is None  # not signed: no sequence number spent
    assert {m["name"] for m in draft["measurements"]} >= {"ph"}
    # Nothing signed, spooled or published.
    assert not (tmp_path / "state").exists()
    time.sleep(0.5)
    assert subscriber.payloads() == []

    config = write_config(tmp_path, broker.url, sensors=probe_sensor("dead", dead_port))
    result = run_cli("test", "--once", "--config", str(config))
    assert result.returncode == 1
    assert re.search(r"^dead \(modbus-water\): no sample \(\d+ timeout\(s\); unit 1 FC03 ",
                     result.stdout, re.M), result.stdout
    assert "no reply within 0.3 s" in result.stdout
    assert "pymodbus" not in result.stderr


def test_test_without_once_polls_at_the_interval_until_ctrl_c(tmp_path: Path) -> None:
    with WaterProbeEmulator(BUILTIN_PROFILES[PROFILE], seed=2) as probe:
        config = write_config(tmp_path, "mqtt://127.0.0.1:1",
                              sensors=probe_sensor("probe", probe.agent_path, 5.0))
        # Started as a shell's background job would be, with SIGINT ignored: Ctrl-C (or kill
        # -INT) still ends the trial.
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.support.agent_harness", "test", "--config",
             str(config)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        try:
            assert child.stdout is not None
            drafts = 0
            while drafts < 3:  # interval_s = 0.5: three polls, then Ctrl-C
                line = child.stdout.readline()
                assert line, child.stderr.read() if child.stderr else ""
                drafts += line.startswith("  draft ")
            child.send_signal(signal.SIGINT)
            assert child.wait(timeout=20) == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


def test_a_dead_probe_is_logged_in_the_agents_words_and_status_says_why(
    tmp_path: Path, agents: StartAgent, dead_port: str
) -> None:
    config = write_config(tmp_path, "mqtt://127.0.0.1:1", sensors=probe_sensor("dead", dead_port))
    agent = agents(config)
    log = agent.wait_for_log("sensor dead (modbus-water): ", timeout=20)
    time.sleep(2.0)  # a few more timeouts: still one line (once a minute)
    assert agent.terminate() == 0
    log = agent.log()
    faults = [line for line in log.splitlines() if "sensor dead (modbus-water)" in line]
    assert len(faults) == 1, faults
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING agent\.sensors: ", faults[0])
    assert "timeout" in faults[0] and "no reply within 0.3 s" in faults[0]
    assert "pymodbus" not in log

    status = run_cli("status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    line = next(x for x in status.stdout.splitlines() if x.startswith("sensor dead"))
    assert "(last: unit 1 FC03" in line and "no reply within 0.3 s" in line, line


def test_json_logs_carry_timestamps_and_debug_shows_no_library_noise(
    tmp_path: Path, agents: StartAgent
) -> None:
    config = write_config(tmp_path, "mqtt://127.0.0.1:1")
    agent = agents(config, options=("--log-format", "json", "--log-level", "debug"))
    agent.wait_for_log("running: 1 sensor(s)", timeout=20)
    time.sleep(0.5)  # readings signed and spooled (aiosqlite logs each statement at DEBUG)
    assert agent.terminate() == 0
    records = [json.loads(line) for line in agent.log().splitlines() if line]
    assert records and all({"ts", "level", "logger", "event"} <= r.keys() for r in records)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["ts"])
               for r in records)
    assert any(r["event"].startswith("device dev-test, key ") for r in records)
    loggers = {r["logger"].split(".")[0] for r in records}
    assert loggers <= {"agent", "hardware", "provenance"}, loggers  # no aiosqlite, asyncio


def test_check_refuses_a_certificate_for_another_device_and_an_open_tls_key(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path / "pki", client_cn="pump-station-9")
    (pki / "client.key").chmod(0o644)
    tls = (f'[broker.tls]\nca_file = "{pki / "ca.crt"}"\n'
           f'cert_file = "{pki / "client.crt"}"\nkey_file = "{pki / "client.key"}"\n')
    config = write_config(tmp_path / "agent", "mqtts://127.0.0.1:8883", broker_extra=tls)
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 2, result.stdout
    lines = config.read_text().splitlines()
    cert_line = 1 + next(i for i, x in enumerate(lines) if x.startswith("cert_file"))
    key_line = 1 + next(i for i, x in enumerate(lines) if "client.key" in x)
    assert (f"{config}:{cert_line}: broker.tls.cert_file: client certificate "
            f"{pki / 'client.crt'} has CN 'pump-station-9', not the device_id 'dev-test'"
            in result.stderr), result.stderr
    assert (f"{config}:{key_line}: broker.tls.key_file: TLS client key {pki / 'client.key'} "
            "has mode 0644; it must be readable by its owner only" in result.stderr)

    (pki / "client.key").chmod(0o600)
    right = make_pki(tmp_path / "right", client_cn="dev-test")
    config.write_text(config.read_text().replace(str(pki / "client."), str(right / "client.")))
    result = run_cli("check", "--config", str(config))
    assert result.returncode == 0, result.stderr


def test_test_refuses_driver_settings_a_person_must_fix(tmp_path: Path) -> None:
    sensors = probe_sensor("probe", "/dev/null").replace("baudrate = 115200", "baudrate = 12")
    config = write_config(tmp_path, "mqtt://127.0.0.1:1", sensors=sensors)
    result = run_cli("test", "--once", "--config", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    line = 1 + next(i for i, x in enumerate(config.read_text().splitlines())
                    if x.startswith("baudrate"))
    assert f"{config}:{line}: sensors[0].baudrate: " in result.stderr, result.stderr
