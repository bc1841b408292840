"""`ledger-collector check` and the collector's config through the real command line: every
problem at once at its file:line, "did you mean", TLS errors that name the file, and a default
config path instead of a silent ./ledger.db."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.collector import Ledger, run_cli

BAD = """\
database = "ledger.db"
key_file = "collector-key.pem"
[blocks]
sise = 5
age = 0
[mqtt]
url = "http://broker.example"
protocol = "4"
keepalive = 2
[ingest]
max_clock_skew = "soon"
[log]
levle = "debug"
"""


def good_config(tmp_path: Path, extra: str = "") -> Path:
    ledger = Ledger(tmp_path).init()
    path = tmp_path / "collector.toml"
    path.write_text(f'database = "{Path(ledger.db).name}"\n'
                    f'key_file = "{Path(ledger.key).name}"\n'
                    '[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n' + extra)
    return path


@pytest.fixture(autouse=True)
def no_config_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SENSORLEDGER_COLLECTOR_CONFIG", raising=False)
    monkeypatch.delenv("SENSORLEDGER_DB", raising=False)
    monkeypatch.setenv("SENSORLEDGER_CONFIG_DIR", str(tmp_path / "etc"))


def test_check_reports_every_problem_with_its_line_and_did_you_mean(tmp_path: Path) -> None:
    path = tmp_path / "collector.toml"
    path.write_text(BAD)
    result = run_cli("check", "-c", str(path))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    db, key = tmp_path / "ledger.db", tmp_path / "collector-key.pem"
    assert lines == [
        f"{path}:1: database: {db} does not exist; create it with `ledger-collector init -c FILE`",
        f"{path}:2: key_file: key file {key} does not exist; create it with "
        "`ledger-collector init -c FILE`",
        f"{path}:4: blocks.sise: unknown config key 'blocks.sise'; did you mean 'size'?",
        f"{path}:5: blocks.age: must be a positive number of seconds",
        f"{path}:7: mqtt.url: 'http://broker.example' must start with mqtt:// or mqtts://",
        f'{path}:8: mqtt.protocol: must be "5" or "3.1.1", got \'4\'',
        f"{path}:9: mqtt.keepalive: must be between 5 and 65535, got 2",
        f"{path}:11: ingest.max_clock_skew: must be a number, got 'soon'",
        f"{path}:13: log.levle: unknown config key 'log.levle'; did you mean 'level'?",
        f"9 problems in {path}",
    ]
    # every other command refuses the same file with the same list
    stats = run_cli("stats", "-c", str(path))
    assert stats.exit_code == 2 and "7 problems in" in stats.output  # files are check's part
    assert f"{path}:13: log.levle" in stats.output


def test_malformed_toml_is_one_problem_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "collector.toml"
    path.write_text('database = "x.db"\n[blocks]\nsize = = 3\n')
    result = run_cli("check", "-c", str(path))
    assert result.exit_code == 2
    assert result.output.startswith(f"{path}:3: malformed TOML:"), result.output
    assert result.output.strip().endswith(f"1 problem in {path}")


def test_a_good_config_passes_and_says_what_it_found(tmp_path: Path) -> None:
    path = good_config(tmp_path)
    result = run_cli("check", "-c", str(path))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"{path}: OK"
    assert f"ledger   {tmp_path / 'ledger.db'}" in result.output
    assert "broker   mqtt://127.0.0.1:1883, client id sensorledger-collector" in result.output


def test_tls_problems_name_the_file_at_its_line(tmp_path: Path) -> None:
    path = good_config(tmp_path, '[mqtt.tls]\nca_file = "pki/ca.crt"\n'
                                 'cert_file = "pki/collector.crt"\nkey_file = "pki/c.key"\n')
    result = run_cli("check", "-c", str(path))
    assert result.exit_code == 2
    pki = tmp_path / "pki"
    assert f"{path}:6: mqtt.tls.ca_file: {pki / 'ca.crt'} does not exist" in result.output
    assert f"{path}:7: mqtt.tls.cert_file: {pki / 'collector.crt'} does not exist" in result.output
    assert f"{path}:8: mqtt.tls.key_file: {pki / 'c.key'} does not exist" in result.output
    # a CA file that is there but holds no certificate
    pki.mkdir()
    (pki / "ca.crt").write_text("not a certificate\n")
    path.write_text(path.read_text().replace('cert_file = "pki/collector.crt"\n'
                                             'key_file = "pki/c.key"\n', ""))
    result = run_cli("check", "-c", str(path))
    assert result.exit_code == 2
    assert f"{path}:6: mqtt.tls.ca_file: cannot load CA certificates from {pki / 'ca.crt'}" \
        in result.output, result.output


def test_run_names_the_tls_file_it_could_not_read(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path).init()
    missing = tmp_path / "nowhere" / "ca.crt"
    result = run_cli("run", "--db", ledger.db, "--key", ledger.key, "--broker",
                     "mqtts://127.0.0.1:1", "--tls-ca", str(missing), "--workers", "1")
    assert result.exit_code == 2, result.output
    assert f"mqtt.tls.ca_file: {missing} does not exist" in result.output


def test_the_key_and_ledger_the_config_names_are_checked(tmp_path: Path) -> None:
    path = good_config(tmp_path)
    os.chmod(tmp_path / "collector-key.pem", 0o644)
    (tmp_path / "ledger.db").unlink()
    result = run_cli("check", "-c", str(path))
    assert result.exit_code == 2
    assert f"{path}:2: key_file:" in result.output and "chmod 600" in result.output
    assert (f"{path}:1: database: {tmp_path / 'ledger.db'} does not exist; create it with "
            "`ledger-collector init -c FILE`") in result.output
    assert result.output.strip().endswith(f"2 problems in {path}")


def test_a_flag_with_a_bad_value_is_named_as_a_flag(tmp_path: Path) -> None:
    path = good_config(tmp_path)
    result = run_cli("run", "-c", str(path), "--block-size", "0")
    assert result.exit_code == 2
    assert "blocks.size: must be at least 1, got 0 (given on the command line)" in result.output


def test_the_default_config_path_is_read_when_no_config_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    etc = tmp_path / "etc"
    monkeypatch.chdir(tmp_path)
    # No default file and no --db: refused, and no ./ledger.db is looked for or created.
    bare = run_cli("stats")
    assert bare.exit_code == 2
    assert "database: is required" in bare.output
    assert f"{etc / 'collector.toml'} does not exist" in bare.output
    assert not (tmp_path / "ledger.db").exists()
    check = run_cli("check")
    assert check.exit_code == 2
    assert f"{etc / 'collector.toml'}: config file does not exist; pass -c FILE" in check.output
    # With the default file in place, bare commands use it.
    etc.mkdir()
    good_config(etc)
    check = run_cli("check")
    assert check.exit_code == 0, check.output
    assert check.output.startswith(f"{etc / 'collector.toml'}: OK")
    stats = run_cli("stats")
    assert stats.exit_code == 0, stats.output
    assert "ledger: 0 readings in 0 blocks" in stats.output
    assert not (tmp_path / "ledger.db").exists()
