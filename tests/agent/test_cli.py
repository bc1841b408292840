"""The sensor-agent command line: keygen, pubkey, status (offline), exit codes."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from agent.cli import cli
from agent.spool import read_report
from collector.admission.registry import parse_enrolment_text
from provenance.keyfile import load_private_key
from tests.support.agent_harness import AgentProcess, run_cli, write_config
from tests.support.polling import wait_until

StartAgent = Callable[..., AgentProcess]


def config_without_key(tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text('device_id = "dev-cli"\nkey_file = "keys/device.key"\n'
                    '[broker]\nurl = "mqtt://127.0.0.1:1"\n'
                    '[[sensors]]\ndriver = "test-counter"\n')
    return path


def test_keygen_writes_an_owner_only_key_and_never_overwrites(tmp_path: Path) -> None:
    config = config_without_key(tmp_path)
    runner = CliRunner()
    first = runner.invoke(cli, ["keygen", "--config", str(config)])
    assert first.exit_code == 0, first.output
    key_path = tmp_path / "keys" / "device.key"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = load_private_key(key_path)
    assert f"key id: {key.public.kid_hex}" in first.output
    before = key_path.read_bytes()
    again = runner.invoke(cli, ["keygen", "--config", str(config)])
    assert again.exit_code == 2
    assert "already exists; refusing to overwrite" in again.output
    assert key_path.read_bytes() == before
    other = runner.invoke(cli, ["keygen", "--key", str(tmp_path / "other.key")])
    assert other.exit_code == 0 and (tmp_path / "other.key").exists()


def test_pubkey_prints_what_the_collector_enrols(tmp_path: Path) -> None:
    config = config_without_key(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["keygen", "--config", str(config)]).exit_code == 0
    key = load_private_key(tmp_path / "keys" / "device.key")
    out = runner.invoke(cli, ["pubkey", "--config", str(config)])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("-----BEGIN PUBLIC KEY-----")
    assert out.output.rstrip().endswith(f"key id: {key.public.kid_hex}")
    # `sensor-agent pubkey | ledger-collector devices add DEVICE_ID -` reads exactly this.
    assert parse_enrolment_text(out.output).key.kid == key.public.kid
    as_json = json.loads(runner.invoke(cli, ["pubkey", "--config", str(config), "--json"]).output)
    assert as_json["device_id"] == "dev-cli" and as_json["kid"] == key.public.kid_hex
    enrolled = parse_enrolment_text(json.dumps(as_json))
    assert enrolled.key.kid == key.public.kid and enrolled.device_id == "dev-cli"
    by_path = runner.invoke(cli, ["pubkey", "--key", str(tmp_path / "keys" / "device.key")])
    assert by_path.output == out.output


def test_pubkey_without_a_key_says_how_to_make_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["pubkey", "--config", str(config_without_key(tmp_path))])
    assert result.exit_code == 2
    assert "does not exist" in result.output and "sensor-agent keygen" in result.output


def test_status_reads_spool_and_runtime_snapshot_offline(
    agents: StartAgent, tmp_path: Path
) -> None:
    workdir = tmp_path / "agent"
    sensors = ('[[sensors]]\nname = "count"\ndriver = "test-counter"\ninterval_s = 0.05\n'
               "fail_every = 4\n"
               '[[sensors]]\nname = "dead"\ndriver = "test-broken"\ninterval_s = 0.1\n')
    config = write_config(workdir, "mqtt://127.0.0.1:9", sensors=sensors)  # nothing listens
    agent = agents(config)
    agent.wait_for_log("cannot reach broker")

    def counted() -> bool:
        """The runtime snapshot shows what the assertions below need (~1 s unloaded)."""
        try:
            runtime = json.loads((workdir / "state" / "status.json").read_text())
        except FileNotFoundError:
            return False
        sensors = runtime["sensors"]
        return (sensors["dead"]["errors"] >= 5 and sensors["count"]["errors"] >= 2
                and read_report(workdir / "state" / "spool.sqlite").counters.signed > 10)

    wait_until(counted, 60, 0.1, "five dead polls, two driver faults, eleven readings")
    assert agent.terminate() == 0

    result = run_cli("status", "--config", str(config))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "device        dev-test" in text
    assert "readings waiting (seq 0.." in text
    assert "last PUBACK   never" in text
    assert "not connected: cannot reach broker at 127.0.0.1:9" in text
    assert "sensor dead" in text and "sensor count" in text

    data = json.loads(run_cli("status", "--config", str(config), "--json").stdout)
    spool, runtime = data["spool"], data["runtime"]
    assert spool["depth"] == spool["totals"]["signed"] > 10
    assert spool["totals"]["published"] == 0
    dead = runtime["sensors"]["dead"]
    count = runtime["sensors"]["count"]
    # The dead sensor is counted and reported, and never stopped the live one.
    assert dead["samples"] == 0 and dead["errors"] >= 5
    assert "Input/output error" in dead["last_error"]
    assert count["samples"] == spool["totals"]["signed"]
    assert count["errors"] >= 2 and "simulated driver fault" in count["last_error"]
    assert runtime["state"] == "offline"


def test_status_before_any_run_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, "mqtt://127.0.0.1:9")
    result = CliRunner().invoke(cli, ["status", "--config", str(config)])
    assert result.exit_code == 1
    assert "does not exist (has the agent run yet?)" in result.output


def test_usage_errors_exit_2() -> None:
    assert CliRunner().invoke(cli, ["run", "--no-such-flag"]).exit_code == 2
    assert CliRunner().invoke(cli, ["frobnicate"]).exit_code == 2
    help_text = CliRunner().invoke(cli, ["--help"]).output
    for command in ("keygen", "pubkey", "run", "status", "check"):
        assert command in help_text


def test_every_command_and_config_key_is_documented() -> None:
    repo = Path(__file__).parents[2]
    doc = (repo / "docs" / "agent.md").read_text()
    for command in cli.commands:
        assert f"`{command}" in doc, command
    example = (repo / "deploy" / "agent.toml.example").read_text()
    keys = set(re.findall(r"^#?\s*([a-z_]+) = ", example, flags=re.MULTILINE))
    assert {"device_id", "in_flight", "max_readings", "interval_s", "cert_file"} <= keys
    for key in keys - {"profile", "port", "unit", "counters_interval_s"}:  # driver settings
        assert f"{key}`" in doc, key


def test_keygen_into_an_impossible_place_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(cli, ["keygen", "--key", str(blocker / "device.key")])
    assert result.exit_code == 1
    assert result.output.startswith("sensor-agent: cannot access")
    assert "Traceback" not in result.output


def test_a_second_agent_on_the_same_spool_is_refused(agents: StartAgent, tmp_path: Path) -> None:
    config = write_config(tmp_path / "agent", "mqtt://127.0.0.1:9")
    first = agents(config)
    first.wait_for_log("running")
    second = run_cli("run", "--config", str(config))
    assert second.returncode == 1
    assert "is in use by another sensor-agent process" in second.stderr
    status = run_cli("status", "--config", str(config))  # reading while it runs is fine
    assert status.returncode == 0 and "readings waiting" in status.stdout
    assert first.terminate() == 0
