"""Cluster settings: a postgresql:// database is a URL (not a path relative to the config
file), share_group subscribes $share/GROUP/... with MQTT 5, and bad group names are refused."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from collector.config import TlsConfig, parse_config
from collector.ingest.mqtt import Inbox, MqttIngest

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "collector-cluster.toml.example"


def test_the_cluster_example_config_reads_as_a_shared_subscriber_on_a_url() -> None:
    config, problems = parse_config(EXAMPLE.read_text(), EXAMPLE)
    assert problems == [] and config is not None
    assert config.database.startswith("postgresql://sensorledger@db1.example.org,")
    assert (config.mqtt.share_group, config.mqtt.protocol) == ("collectors", "5")
    plain = replace(config.mqtt, url="mqtt://127.0.0.1:1883", tls=TlsConfig())  # no cert files here
    ingest = MqttIngest(plain, Inbox(asyncio.new_event_loop()))
    assert ingest.subscription == "$share/collectors/sensorledger/v1/+/reading"


def test_share_group_defaults_to_mqtt_5_and_refuses_a_topic_in_its_name(tmp_path: Path) -> None:
    config, problems = parse_config(
        'database = "postgres://x@h/db"\n[mqtt]\nshare_group = "g1"\n', tmp_path / "c.toml")
    assert problems == [] and config is not None
    assert config.database == "postgres://x@h/db" and config.mqtt.protocol == "5"
    plain, _ = parse_config('database = "ledger.db"\n', tmp_path / "c.toml")
    assert plain is not None and plain.database == str(tmp_path / "ledger.db")
    assert plain.mqtt.share_group is None and plain.mqtt.protocol == "3.1.1"
    _, bad = parse_config('database = "l.db"\n[mqtt]\nshare_group = "a/b"\n', None)
    assert [p.key for p in bad] == ["mqtt.share_group"]


def test_commands_take_a_postgresql_url(pg_url: str, tmp_path: Path) -> None:
    from tests.support.collector import make_devices, run_cli

    key = str(tmp_path / "collector-key.pem")
    for _ in range(2):  # init is safe to run again on a URL too
        made = run_cli("init", "--db", pg_url, "--key", key)
        assert made.exit_code == 0, made.output
    device = make_devices(1, "url")[0]
    added = run_cli("devices", "add", "--db", pg_url, device.device_id, "-", input=device.pem())
    assert added.exit_code == 0, added.output
    listed = run_cli("devices", "list", "--db", pg_url)
    assert listed.exit_code == 0 and device.device_id in listed.output
    config = tmp_path / "c.toml"
    config.write_text(f'database = "{pg_url}"\nkey_file = "collector-key.pem"\n'
                      '[mqtt]\nclient_id = "c1"\nshare_group = "g"\n')
    checked = run_cli("check", "-c", str(config))
    assert checked.exit_code == 0 and f"ledger   {pg_url}" in checked.output, checked.output
    assert run_cli("audit", "--db", pg_url).exit_code == 0
