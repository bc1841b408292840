"""The agent config: every problem reported at its line, exit code 2, nothing started."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.config import load_config, read_config
from agent.errors import ConfigError
from provenance.toml_lines import TomlLines
from tests.support.agent_harness import new_key

GOOD = """\
device_id = "pump-7"
key_file = "device.key"
state_dir = "state"

[broker]
url = "mqtt://127.0.0.1:1883"

[spool]
max_readings = 50

[[sensors]]
name = "bms"
driver = "jbd-bms"
interval_s = 0.5
port = "/dev/null"
"""


def write(tmp_path: Path, text: str, *, key: bool = True) -> Path:
    if key and not (tmp_path / "device.key").exists():
        new_key(tmp_path / "device.key")
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def check(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["check", "--config", str(path)])
    return result.exit_code, result.output


def test_a_good_config_loads_with_defaults_and_passes_check(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    config = load_config(path)
    assert config.device_id == "pump-7"
    assert config.key_file == tmp_path / "device.key"  # relative to the config's folder
    assert config.broker.host == "127.0.0.1" and config.broker.port == 1883
    assert config.broker.tls is None
    assert config.broker.client_id == "sensor-agent-pump-7"
    assert config.spool.path == tmp_path / "state" / "spool.sqlite"
    assert config.spool.max_readings == 50
    (sensor,) = config.sensors
    assert (sensor.name, sensor.driver, sensor.interval_s) == ("bms", "jbd-bms", 0.5)
    assert dict(sensor.settings) == {"port": "/dev/null"}  # the agent's keys are not passed on
    code, out = check(path)
    assert code == 0, out
    assert "OK" in out and "bms (jbd-bms, every 0.5 s)" in out


def test_check_reports_every_problem_with_its_line(tmp_path: Path) -> None:
    text = """\
key_file = "missing.key"
heartbeat_s = -1

[broker]
url = "mqtt://broker.example:99999"
keepalive = 30

[[sensors]]
driver = "no-such-driver"

[[sensors]]
name = "bms"
driver = "jbd-bms"
port = "/dev/null"
retrys = 3
interval_s = "fast"
"""
    path = write(tmp_path, text, key=False)
    code, out = check(path)
    assert code == 2
    lines = out.strip().splitlines()
    expected = [
        (f"{path}:1: key_file", "does not exist"),
        (f"{path}:2: heartbeat_s", "between"),
        (f"{path}:5: broker.url", "99999"),
        (f"{path}:6: broker.keepalive", "did you mean 'keepalive_s'?"),
        (f"{path}:9: sensors[0].driver", "unknown driver 'no-such-driver'"),
        (f"{path}:15: sensors[1].retrys", "unknown setting"),
        (f"{path}:16: sensors[1].interval_s", "must be a number"),
    ]
    for where, what in expected:
        assert any(line.startswith(where) and what in line for line in lines), (where, out)
    assert any("device_id: is required" in line for line in lines), out
    assert lines[-1] == f"8 problems in {path}"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        # missing key
        (GOOD.replace('device_id = "pump-7"\n', ""), None, "device_id: is required"),
        # bad port
        (GOOD.replace("1883", "70000"), 6, "Port out of range"),
        (GOOD.replace("mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:0"), 6, "port 0"),
        (GOOD.replace("mqtt://", "http://"), 6, "must start with mqtt:// or mqtts://"),
        # unknown driver
        (GOOD.replace('"jbd-bms"', '"jbd-bmz"'), 13, "unknown driver 'jbd-bmz'"),
        # malformed TOML
        (GOOD.replace('max_readings = 50', 'max_readings = = 50'), 9, "malformed TOML"),
    ],
    ids=["missing-key", "port-out-of-range", "port-zero", "scheme", "unknown-driver",
         "malformed"],
)
def test_each_config_error_is_one_clear_message_and_exit_2(
    tmp_path: Path, text: str, line: int | None, message: str
) -> None:
    path = write(tmp_path, text)
    for command in ("check", "run"):
        result = CliRunner().invoke(cli, [command, "--config", str(path)])
        assert result.exit_code == 2, result.output
        problems = [ln for ln in result.output.splitlines() if "problem" not in ln]
        assert len(problems) == 1, result.output
        assert message.lower() in problems[0].lower(), result.output
        if line is not None:
            assert f"{path}:{line}:" in problems[0], result.output
        assert "Traceback" not in result.output


def test_tls_files_are_checked_and_located(tmp_path: Path) -> None:
    text = GOOD.replace('url = "mqtt://127.0.0.1:1883"', '''url = "mqtts://127.0.0.1"

[broker.tls]
ca_file = "nope/ca.crt"
cert_file = "nope/client.crt"''')
    path = write(tmp_path, text)
    code, out = check(path)
    assert code == 2
    # the missing key_file is placed on its table's header line
    assert f"{path}:8: broker.tls.key_file: cert_file and key_file go together" in out
    # once paired, the missing files are reported at their own lines
    path.write_text(text.replace('cert_file = "nope/client.crt"',
                                 'cert_file = "nope/client.crt"\nkey_file = "nope/client.key"'))
    code, out = check(path)
    assert code == 2
    assert f"{path}:9: broker.tls.ca_file:" in out and "does not exist" in out
    assert f"{path}:10: broker.tls.cert_file: {tmp_path}/nope/client.crt does not exist" in out
    assert f"{path}:11: broker.tls.key_file: {tmp_path}/nope/client.key does not exist" in out
    config = read_config(path)
    assert config.tls is not None and config.tls.ca_file == tmp_path / "nope" / "ca.crt"
    assert load_config(path).broker.port == 8883  # mqtts default port


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    os.chmod(tmp_path / "device.key", 0o644)
    for command in ("check", "run", "pubkey"):
        result = CliRunner().invoke(cli, [command, "--config", str(path)])
        assert result.exit_code == 2, result.output
        assert "chmod 600" in result.output, result.output


def test_key_file_can_be_redirected_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, GOOD)
    monkeypatch.setenv("SENSOR_AGENT_KEY_FILE", "/run/credentials/sensor-agent.service/device.key")
    assert load_config(path).key_file == Path("/run/credentials/sensor-agent.service/device.key")


def test_config_file_missing_is_exit_2(tmp_path: Path) -> None:
    code, out = check(tmp_path / "absent.toml")
    assert code == 2 and "config file does not exist" in out


def test_toml_lines_follow_tables_arrays_and_multiline_values() -> None:
    lines = TomlLines('''# comment
a = 1
s = """x
y = 2
"""
arr = [
  "[not a header]",
]
[t]
b.c = 3
[[list]]
k = 1
[[list]]
k = 2
[list.sub]
q = 4
''')
    assert lines.line_of(("a",)) == 2
    assert lines.line_of(("y",)) is None  # inside a multi-line string
    assert lines.line_of(("arr",)) == 6
    assert lines.line_of(("t", "b", "c")) == 10
    assert lines.line_of(("list", 0, "k")) == 12
    assert lines.line_of(("list", 1, "k")) == 14
    assert lines.line_of(("list", 1, "sub", "q")) == 16
    assert lines.line_of(("list", 1, "missing")) == 13  # falls back to its table
    assert lines.line_of(("nowhere",)) is None


def test_config_errors_surface_as_config_error_with_all_problems(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("interval_s = 0.5", "interval_s = -1\nenabled = 3"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    keys = [p.key for p in info.value.problems]
    assert keys == ["sensors[0].interval_s", "sensors[0].enabled"]
    assert info.value.exit_code == 2


def test_check_reports_a_serial_port_that_does_not_exist(tmp_path: Path) -> None:
    text = GOOD + ('\n[[sensors]]\nname = "ph"\ndriver = "modbus-water"\n'
                   'profile = "supmea-ph8001"\nport = "/dev/ttyNOPE7"\n'
                   '\n[[sensors]]\nname = "spare"\ndriver = "modbus-water"\nenabled = false\n'
                   'profile = "supmea-ph8001"\nport = "/dev/ttyNOPE8"\n')
    code, out = check(write(tmp_path, text))
    assert code == 2
    problems = out.strip().splitlines()[:-1]
    assert len(problems) == 1, out  # the disabled sensor's absent adapter is not a problem
    assert ":21: sensors[1].port: serial port /dev/ttyNOPE7 does not exist" in problems[0]


def test_the_shipped_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENSOR_AGENT_KEY_FILE", raising=False)
    monkeypatch.delenv("SENSOR_AGENT_TLS_KEY_FILE", raising=False)
    draft = read_config(Path(__file__).parents[2] / "deploy" / "agent.toml.example")
    assert draft.problems == ()
    assert draft.config is not None and draft.config.broker.tls is not None


def test_check_places_each_wrong_driver_setting_on_its_own_line(tmp_path: Path) -> None:
    text = GOOD.replace('port = "/dev/null"', 'port = "/dev/null"\nbaudrate = "fast"\n'
                                              'parity = "X"\nretrys = 3')
    code, out = check(write(tmp_path, text))
    assert code == 2
    path = tmp_path / "agent.toml"
    lines = out.strip().splitlines()
    assert lines[:3] == [
        f"{path}:16: sensors[0].baudrate: jbd-bms: setting 'baudrate' must be an integer, "
        "got 'fast'",
        f"{path}:17: sensors[0].parity: jbd-bms: setting 'parity' must be one of N, E, O; "
        "got 'X'",
        f"{path}:18: sensors[0].retrys: jbd-bms: unknown setting(s) 'retrys'; this driver reads "
        "baudrate, counters_interval_s, parity, port, retries, stopbits, timeout_s; "
        "did you mean 'retries'?",
    ]
    assert lines[-1] == f"3 problems in {path}"
