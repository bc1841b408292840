"""The agent's side of private readings: configuration, data keys, sealing, the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.config import parse_config
from agent.data_keys import DataKeyError, DataKeys, ValueSealer, load_readers
from provenance import cose_encrypt
from provenance.keyfile import load_private_key
from provenance.keys import PrivateKey
from provenance.private_message import PrivateMessage, is_private_message
from provenance.sealed_values import Opening, seal
from provenance.senml import Measurement


def _config(tmp_path: Path, sensors: str, extra: str = "") -> str:
    return (f'device_id = "ward-1"\nkey_file = "k.pem"\nstate_dir = "{tmp_path}"\n{extra}\n'
            f'[broker]\nurl = "mqtt://127.0.0.1:1883"\n\n{sensors}')


def test_the_oximeter_is_private_by_default_and_any_sensor_can_be(tmp_path: Path) -> None:
    sensors = ('[[sensors]]\nname = "oxi"\ndriver = "contec-oximeter"\nport = "/dev/x"\n'
               'subject = "patient-17"\n'
               '[[sensors]]\nname = "oxi2"\ndriver = "contec-oximeter"\nport = "/dev/y"\n'
               "private = false\n"
               '[[sensors]]\nname = "water"\ndriver = "modbus-water"\nport = "/dev/z"\n'
               "private = true\n")
    extra = '[private]\nreaders = ["clinic.pem.pub"]\n'
    draft = parse_config(_config(tmp_path, sensors, extra), tmp_path / "agent.toml")
    assert not draft.problems, draft.problems
    config = draft.config
    assert config is not None
    by_name = {s.name: s for s in config.sensors}
    assert by_name["oxi"].private and by_name["oxi"].subject == "patient-17"
    assert not by_name["oxi2"].private and by_name["water"].private
    assert config.privacy.readers == (tmp_path / "clinic.pem.pub",)
    assert config.data_keys_file == tmp_path / "data-keys.json"


def test_a_subject_needs_a_private_sensor_and_a_valid_name(tmp_path: Path) -> None:
    sensors = ('[[sensors]]\nname = "w"\ndriver = "modbus-water"\nport = "/dev/z"\n'
               'subject = "p/1"\n')
    draft = parse_config(_config(tmp_path, sensors), tmp_path / "agent.toml")
    problems = " ".join(p.message for p in draft.problems)
    assert "must be 1-128 characters" in problems and "private sensors only" in problems


def test_data_keys_are_owner_only_rotate_and_are_picked_up(tmp_path: Path) -> None:
    keys = DataKeys(tmp_path / "data-keys.json")
    kid, key = keys.current("patient-1")
    assert oct(os.stat(keys.path).st_mode & 0o777) == "0o600"
    assert keys.current("patient-1") == (kid, key)
    # Another process (the CLI) rotates; this instance sees the new key at its next use.
    new_kid = DataKeys(keys.path).rotate("patient-1")
    assert new_kid != kid and keys.current("patient-1")[0] == new_kid
    os.chmod(keys.path, 0o644)
    with pytest.raises(DataKeyError, match="chmod 600"):
        DataKeys(keys.path).current("patient-1")


def test_sealer_grants_each_reader_once_per_key(tmp_path: Path) -> None:
    readers = [PrivateKey.generate() for _ in range(2)]
    sealer = ValueSealer(DataKeys(tmp_path / "k.json"), [r.public for r in readers])
    opening = seal((Measurement(name="spo2", value=97, unit="%"),), None)
    first = PrivateMessage.decode(sealer.message(b"\xd2env", "p", opening))
    second = PrivateMessage.decode(sealer.message(b"\xd2env", "p", opening))
    assert first.grants == second.grants and len(first.grants) == 2
    assert first.sealed != second.sealed  # fresh IV every time
    for reader in readers:
        _, key = cose_encrypt.open_grant(first.grants[readers.index(reader)], reader)
        assert Opening.decode(cose_encrypt.decrypt0(key, first.sealed)) == opening
    assert is_private_message(sealer.message(b"\xd2env", "p", opening))
    assert not is_private_message(b"\xd2\x84")


def test_reader_keygen_and_rotate_from_the_command_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["reader-keygen", str(tmp_path / "clinic.pem")])
    assert result.exit_code == 0, result.output
    private = load_private_key(tmp_path / "clinic.pem")
    assert load_readers((tmp_path / "clinic.pem.pub",))[0].kid == private.public.kid
    config = tmp_path / "agent.toml"
    config.write_text(_config(tmp_path, '[[sensors]]\ndriver = "contec-oximeter"\n'
                                        'port = "/dev/x"\n'))
    result = runner.invoke(cli, ["data-key", "rotate", "--config", str(config),
                                 "--subject", "ward-1"])
    assert result.exit_code == 0, result.output
    assert DataKeys(tmp_path / "data-keys.json").subjects()["ward-1"].hex() in result.output


def test_check_names_a_missing_reader_key_and_an_open_key_file(tmp_path: Path) -> None:
    from agent.preflight import check_privacy

    (tmp_path / "data-keys.json").write_text('{"subjects": {}}')
    os.chmod(tmp_path / "data-keys.json", 0o644)
    draft = parse_config(_config(tmp_path, '[[sensors]]\ndriver = "contec-oximeter"\n'
                                           'port = "/dev/x"\n',
                                 '[private]\nreaders = ["missing.pem.pub"]\n'),
                         tmp_path / "agent.toml")
    assert draft.config is not None
    problems = {p.key: p.message for p in check_privacy(draft.config)}
    assert "missing.pem.pub" in problems["private.readers"]
    assert "chmod 600" in problems["private.keys_file"]
