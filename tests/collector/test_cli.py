"""The `ledger-collector` command line: help, exit codes, config, registry, exports."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest

from collector.cli import cli
from collector.config import load_config, parse_broker_url
from collector.errors import ConfigError
from tests.support.broker import Broker
from tests.support.collector import (
    BASE_TIME_MS,
    REPO,
    CollectorProcess,
    Device,
    Ledger,
    Publisher,
    make_devices,
    run_cli,
)
from tests.support.polling import wait_until


def all_commands() -> list[list[str]]:
    out: list[list[str]] = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            out.append(path)

    walk(cli, [])
    return out


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_every_command_has_help_with_an_example(path: list[str]) -> None:
    result = run_cli(*path, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output, f"{' '.join(path)} --help shows no example"


def test_the_documented_commands_exist() -> None:
    assert sorted(" ".join(p) for p in all_commands()) == sorted([
        "audit", "blocks", "check", "checkpoint", "consistency", "devices add", "devices list",
        "copy", "devices revoke", "erase", "erasures", "history", "init", "key rotate",
        "migrate", "mirror", "proof",
        "readers list", "readers revoke", "reveal", "verify-history", "quarantine", "readings",
        "run", "serve", "stats", "tiles export", "verify-misbehaviour", "verify-proof"])
    docs = (Path(__file__).resolve().parents[2] / "docs" / "collector.md").read_text()
    for path in all_commands():
        assert f"ledger-collector {' '.join(path)}" in docs, f"{path} is not in the docs"


def test_init_is_idempotent_and_refuses_a_foreign_key(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path).init()
    first = Path(ledger.key).read_bytes()
    assert oct(os.stat(ledger.key).st_mode & 0o777) == "0o600"
    ledger.init()  # again: same key, nothing changes
    assert Path(ledger.key).read_bytes() == first
    result = run_cli("init", "--db", ledger.db, "--key", str(tmp_path / "other.pem"))
    assert result.exit_code == 2 and "was created with collector key" in result.output


def test_exit_code_2_for_usage_and_missing_things(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.db")
    for args in (["stats", "--db", missing], ["blocks", "--db", missing],
                 ["devices", "list", "--db", missing], ["run", "--db", missing],
                 ["stats", "--db", missing, "--config", str(tmp_path / "nope.toml")],
                 ["devices", "add", "--db", missing, "bad id!", "-"],
                 ["bogus-command"]):
        assert run_cli(*args, input="").exit_code == 2, args


def test_devices_add_list_and_revoke(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path).init()
    dev = Device("water-01")
    agent_output = f"{dev.pem()}key id: {dev.key.kid.hex()}\n"
    added = run_cli("devices", "add", "--db", ledger.db, "water-01", "-", input=agent_output)
    assert added.exit_code == 0 and dev.key.kid.hex() in added.output
    again = run_cli("devices", "add", "--db", ledger.db, "water-02", "-", input=dev.pem())
    assert again.exit_code == 2 and "already enrolled for device 'water-01'" in again.output
    pem_file = tmp_path / "bms.pub.pem"
    bms = Device("bms-01")
    pem_file.write_text(json.dumps({"device_id": "bms-01", "kid": bms.key.kid.hex(),
                                    "pem": bms.pem()}))
    assert run_cli("devices", "add", "--db", ledger.db, "bms-01", str(pem_file)).exit_code == 0
    wrong = run_cli("devices", "add", "--db", ledger.db, "bms-02", str(pem_file))
    assert wrong.exit_code == 2 and "printed for device 'bms-01'" in wrong.output

    revoked = run_cli("devices", "revoke", "--db", ledger.db, "water-01", "--at",
                      "2026-03-01T00:00:00Z", "--reason", "probe replaced")
    assert revoked.exit_code == 0, revoked.output
    listing = json.loads(run_cli("devices", "list", "--db", ledger.db, "--json").output)
    by_device = {k["device_id"]: k for k in listing}
    assert by_device["water-01"]["revoked_ms"] == 1_772_323_200_000
    assert by_device["water-01"]["revoke_reason"] == "probe replaced"
    assert by_device["bms-01"]["revoked_ms"] is None
    text = run_cli("devices", "list", "--db", ledger.db).output
    assert "revoked from 2026-03-01T00:00:00+00:00 (probe replaced)" in text
    assert run_cli("devices", "revoke", "--db", ledger.db, "nobody").exit_code == 2
    assert run_cli("devices", "revoke", "--db", ledger.db, "bms-01", "--at",
                   "yesterday-ish").exit_code == 2


def test_config_file_flags_and_validation(tmp_path: Path) -> None:
    conf = tmp_path / "collector.toml"
    conf.write_text('database = "data/ledger.db"\n[blocks]\nsize = 500\nage = 2\n'
                    '[mqtt]\nurl = "mqtts://u:p%40ss@broker.example"\n')
    cfg = load_config(conf, {"blocks.age": 0.5})
    assert cfg.database == str(tmp_path / "data" / "ledger.db")  # relative to the file
    assert cfg.witnessing.poll == 1.0
    assert (cfg.blocks.size, cfg.blocks.age) == (500, 0.5)
    addr = parse_broker_url(cfg.mqtt.url)
    assert (addr.host, addr.port, addr.tls, addr.username, addr.password) == (
        "broker.example", 8883, True, "u", "p@ss")
    for bad, message in (('[blocks]\nsize = 0\n', "blocks.size"),
                         ('[blocks]\nsise = 5\n', "unknown config key 'blocks.sise'"),
                         ('[mqtt]\nurl = "http://x"\n', "mqtt://"),
                         ('[ingest]\nmax_clock_skew = "soon"\n', "must be a number"),
                         ('[witnessing]\npoll = 0\n', "witnessing.poll"),
                         ('[mqtt]\nprotocol = "4"\n', "mqtt.protocol"),
                         ('blocks = 3\n', "must be a table"),
                         ('not toml at all', "not valid TOML")):
        conf.write_text(bad)
        with pytest.raises(ConfigError, match=message):
            load_config(conf)
        result = run_cli("stats", "--config", str(conf))
        assert result.exit_code == 2, bad


def test_the_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "collector.toml.example"
    cfg = load_config(example)
    assert cfg.mqtt.url.startswith("mqtts://")


def test_blocks_readings_quarantine_and_stats_outputs(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess], tmp_path: Path
) -> None:
    devices = make_devices(2, "out")
    ledger.enrol(devices)
    col = collector("--block-size", "10", "--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish((d.topic, d.next(time_ms=BASE_TIME_MS + i * 1000))
                    for i in range(12) for d in devices)
        pub.publish([(devices[0].topic, b"\x00junk")])
        wait_until(lambda: ledger.sealed() == 24 and ledger.count("quarantine") == 1, 30, 0.1,
                   f"sealed {ledger.sealed()} quarantine {ledger.quarantine()} {col.lines[-3:]}")
    assert col.stop() == 0

    blocks = run_cli("blocks", "--db", ledger.db)
    # (Blocks of up to 10 leaves, or fewer when sealed by age; the devices' enrolment
    # statements are leaves too.)
    heights = ledger.count("blocks")
    assert heights >= 3
    assert blocks.exit_code == 0 and len(blocks.output.strip().splitlines()) == 1 + heights
    one = json.loads(run_cli("blocks", "--db", ledger.db, "1", "--json").output)
    assert (one["height"], one["leaf_count"], one["first_reading_id"]) == ledger.sql(
        "SELECT height, leaf_count, first_reading_id FROM blocks WHERE height = 1")[0]
    assert 1 <= one["leaf_count"] <= 10
    assert run_cli("blocks", "--db", ledger.db, "99").exit_code == 2

    out = tmp_path / "out.csv"
    exported = run_cli("readings", "--db", ledger.db, "--device", "out-001", "-o", str(out))
    assert exported.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [int(r["seq"]) for r in rows] == list(range(12))
    assert {r["device_id"] for r in rows} == {"out-001"}
    assert json.loads(rows[0]["measurements"])[0] == {"n": "ph", "u": "pH", "v": 7.0}
    assert all(r["block"] != "" and r["leaf_index"] != "" for r in rows)

    jl = run_cli("readings", "--db", ledger.db, "--format", "jsonl", "--with-envelope")
    lines = [json.loads(line) for line in jl.output.splitlines() if line.startswith("{")]
    # Reading ids 1 and 2 are the devices' enrolment statements, which are no device's readings.
    assert len(lines) == 24 and lines[0]["reading_id"] == 3 and "envelope" in lines[0]
    at = next(x for x in lines if x["reading_id"] >= one["first_reading_id"])
    assert at["block"] == 1 and at["leaf_index"] == at["reading_id"] - one["first_reading_id"]
    # The leaf of the one log, as the proof names it (the leaf index above is the block's).
    proof = run_cli("proof", "--db", ledger.db, at["device_id"], str(at["seq"]), "-o",
                    str(tmp_path / "at.proof"))
    assert proof.exit_code == 0, proof.output
    assert at["log_index"] == at["reading_id"] - 1 != at["leaf_index"]
    assert f"seq {at['seq']}, leaf {at['log_index']}," in proof.output, proof.output
    assert all(r["log_index"] == str(int(r["reading_id"]) - 1) for r in rows)
    window = run_cli("readings", "--db", ledger.db, "--format", "jsonl", "--device", "out-000",
                     "--since", str(BASE_TIME_MS + 5000), "--until", "2026-01-01T00:00:09Z")
    assert [json.loads(x)["seq"] for x in window.output.splitlines()
            if x.startswith("{")] == [5, 6, 7, 8]

    q = run_cli("quarantine", "--db", ledger.db, "--json", "--raw")
    entry = json.loads(q.output.splitlines()[0])
    assert (entry["reason"], entry["raw"], entry["topic_device"]) == ("not_cbor", "006a756e6b",
                                                                      "out-000")
    text = run_cli("stats", "--db", ledger.db).output
    assert "ledger: 24 readings in 3 blocks (0 not yet sealed)" in text
    assert "quarantine: not_cbor=1" in text


def test_verify_misbehaviour_is_the_witness_check_under_the_collector_name(
        tmp_path: Path) -> None:
    """`ledger-collector verify-misbehaviour` runs the same check as `ledger-witness
    verify-misbehaviour`: the same report and exit code for a proof and for a tampered one."""
    from click.testing import CliRunner

    from provenance.checkpoint import Checkpoint, sign_checkpoint
    from provenance.misbehaviour import Misbehaviour, sign_misbehaviour
    from provenance.note import Ed25519NoteSigner
    from witness.cli import cli as witness_cli

    log = Ed25519NoteSigner.generate("log.example/split")
    reporter = Ed25519NoteSigner.generate("mirror.example/split")
    first, second = (sign_checkpoint(Checkpoint("log.example/split", 7, bytes([b]) * 32), [log])
                     for b in (1, 2))
    proof = sign_misbehaviour(Misbehaviour("split-view", "log.example/split",
                                           (log.verifier.vkey,), first, second, time=1), reporter)
    good = tmp_path / "misbehaviour.txt"
    good.write_bytes(proof)
    bad = tmp_path / "tampered.txt"
    bad.write_bytes(proof.replace(b"time 1\n", b"time 2\n"))
    other = Ed25519NoteSigner.generate("log.example/split").verifier.vkey
    for path, vkey, code in ((good, log.verifier.vkey, 0), (bad, log.verifier.vkey, 1),
                             (good, other, 1)):
        ours = run_cli("verify-misbehaviour", str(path), "--vkey", vkey)
        theirs = CliRunner().invoke(witness_cli, ["verify-misbehaviour", str(path), "--vkey",
                                                  vkey])
        assert (ours.exit_code, ours.output) == (theirs.exit_code, theirs.output)
        assert ours.exit_code == code, ours.output
    proven = run_cli("verify-misbehaviour", str(good), "--vkey", log.verifier.vkey).output
    assert "[PASS] contradiction: size 7, roots differ" in proven
    assert "misbehaviour PROVEN" in proven


def test_the_collector_imports_neither_the_agent_nor_the_witness() -> None:
    """The shared pieces (systemd notify, the verify-misbehaviour command) live in `common/`:
    the collector's command line and service load no module of the other programs."""
    code = ("import sys, collector.cli, collector.service; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('agent', 'witness')))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_admin_commands_are_safe_to_run_again(tmp_path: Path) -> None:
    """Issue 13, item 11."""
    ledger = Ledger(tmp_path).init()
    dev = Device("water-01")
    kid = dev.key.kid.hex()
    assert run_cli("devices", "add", "--db", ledger.db, "water-01", "-",
                   input=dev.pem()).exit_code == 0
    again = run_cli("devices", "add", "--db", ledger.db, "water-01", "-", input=dev.pem())
    assert again.exit_code == 0, again.output
    assert "already enrolled; nothing to do" in again.output
    assert ledger.count("device_keys") == 1

    # --kid takes the unique prefix the docs and listings show, with or without the ellipsis.
    other = Device("water-02")
    assert run_cli("devices", "add", "--db", ledger.db, "water-02", "-", "--kid",
                   other.key.kid.hex()[:4] + "…", input=other.pem()).exit_code == 0
    third = Device("water-03")
    not_its = "ffff" if third.key.kid.hex().startswith("0000") else "0000"
    wrong = run_cli("devices", "add", "--db", ledger.db, "water-03", "-", "--kid", not_its,
                    input=third.pem())
    assert wrong.exit_code == 2 and "does not start with --kid" in wrong.output
    revoked = run_cli("devices", "revoke", "--db", ledger.db, "water-01", "--kid", kid[:6])
    assert revoked.exit_code == 0 and f"revoked water-01 key {kid}" in revoked.output
    short = run_cli("devices", "revoke", "--db", ledger.db, "water-01", "--kid", "ab")
    assert short.exit_code == 2 and "first 4 or more hex digits" in short.output
    # A revoked key is not silently enrolled again.
    back = run_cli("devices", "add", "--db", ledger.db, "water-01", "-", input=dev.pem())
    assert back.exit_code == 2 and "was revoked" in back.output

    nobody = run_cli("devices", "revoke", "--db", ledger.db, "nobody")
    assert nobody.exit_code == 2
    assert "device 'nobody' has no enrolled key" in nobody.output and "any" not in nobody.output

    # init refuses a foreign key before writing anything: no stray key file.
    foreign = tmp_path / "other.pem"
    refused = run_cli("init", "--db", ledger.db, "--key", str(foreign))
    assert refused.exit_code == 2 and "was created with collector key" in refused.output
    assert not foreign.exists() and not (tmp_path / "other.pub.pem").exists()


def test_listings_show_utc_times_full_headers_and_csv(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess], tmp_path: Path
) -> None:
    """Issue 13, item 13."""
    iso_utc = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"
    devices = make_devices(2, "lst")
    ledger.enrol(devices)
    col = collector("--block-size", "4", "--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish((d.topic, d.next(time_ms=BASE_TIME_MS + i * 1000))
                    for i in range(4) for d in devices)
        pub.publish([(devices[0].topic, b"\x00junk")])
        wait_until(lambda: ledger.sealed() == 8 and ledger.count("quarantine") == 1, 30)
    assert col.stop() == 0

    # stats: full headers, a "last seen" column in UTC, and --csv / --json.
    text = run_cli("stats", "--db", ledger.db).output
    header = next(line for line in text.splitlines() if line.startswith("device"))
    for name in ("last seq", "duplicates", "unexplained", "chain breaks", "equivocations",
                 "boot resets", "quarantined", "last seen (UTC)"):
        assert name in header, header
    assert re.search(rf"lst-000 .* {iso_utc}$", text, re.M), text
    rows = list(csv.DictReader(io.StringIO(run_cli("stats", "--db", ledger.db, "--csv").output)))
    assert [r["device_id"] for r in rows] == ["lst-000", "lst-001"]
    assert rows[0]["last_seq"] == "3" and rows[0]["quarantined"] == "1"
    assert re.fullmatch(iso_utc, rows[1]["last_seen"])
    as_json = json.loads(run_cli("stats", "--db", ledger.db, "--json").output)
    assert re.fullmatch(iso_utc, as_json["devices"]["lst-000"]["last_seen"])
    assert run_cli("stats", "--db", ledger.db, "--json", "--csv").exit_code == 2

    # readings: one row per measurement, each with its own UTC time.
    out = tmp_path / "values.csv"
    per = run_cli("readings", "--db", ledger.db, "--device", "lst-001", "--per-measurement",
                  "-o", str(out))
    assert per.exit_code == 0, per.output
    mrows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert mrows and {r["name"] for r in mrows} >= {"ph"}
    first = next(r for r in mrows if r["seq"] == "1" and r["name"] == "ph")
    assert (first["value"], first["unit"], first["time_utc"]) == (
        "7.1", "pH", "2026-01-01T00:00:01.000+00:00")
    assert all(r["block"] != "" for r in mrows)

    # blocks, quarantine and devices: times in UTC, not epoch milliseconds.
    one = run_cli("blocks", "--db", ledger.db, "0").output
    assert re.search(rf"^sealed_at\s+{iso_utc}$", one, re.M) and "_ms" not in one
    block = json.loads(run_cli("blocks", "--db", ledger.db, "0", "--json").output)
    assert block["first_time"] == "2026-01-01T00:00:00+00:00"
    q = json.loads(run_cli("quarantine", "--db", ledger.db, "--json").output.splitlines()[0])
    assert re.fullmatch(iso_utc, q["first_seen"]) and re.fullmatch(iso_utc, q["last_seen"])
    assert "first seen (UTC)" in run_cli("quarantine", "--db", ledger.db).output
    keys = json.loads(run_cli("devices", "list", "--db", ledger.db, "--json").output)
    assert re.fullmatch(iso_utc, keys[0]["enrolled"]) and keys[0]["revoked"] is None

    # audit: the head in the form --anchor takes, and that form is accepted back.
    audited = run_cli("audit", "--db", ledger.db, "--workers", "1", "--no-progress")
    assert audited.exit_code == 0, audited.output
    head = re.search(r"^chain head (\d+:[0-9a-f]{64})$", audited.output, re.M)
    # 2 enrolment statements and 8 readings in blocks of up to 4 (fewer when sealed by age)
    last = ledger.count("blocks") - 1
    assert head and head.group(1).startswith(f"{last}:"), audited.output
    anchored = run_cli("audit", "--db", ledger.db, "--workers", "1", "--no-progress",
                       "--anchor", head.group(1))
    assert anchored.exit_code == 0, anchored.output
