"""Must-show 5 and 6: proof files check offline and fail on any altered byte; readings
published while the collector is down (or the broker restarts) arrive, none lost."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from provenance.keys import PublicKey
from provenance.prooffile import verify_proof
from tests.support.broker import Broker
from tests.support.collector import (
    REPO,
    CollectorProcess,
    Ledger,
    Publisher,
    make_devices,
    run_cli,
)
from tests.support.polling import wait_until


def test_proof_verifies_offline_and_any_altered_byte_fails(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess], tmp_path: Path
) -> None:
    devices = make_devices(3, "proof")
    ledger.enrol(devices)
    col = collector("--block-size", "100", "--block-age", "30").start()
    with Publisher(broker) as pub:
        pub.publish((d.topic, d.next()) for _ in range(70) for d in devices)  # 210 readings
    wait_until(lambda: ledger.sealed() >= 200 and ledger.count("readings") == 210, 30)

    # Reading 205 is stored but no block holds it yet.
    pending = ledger.sql("SELECT device_id, seq FROM readings WHERE id = 205")[0]
    result = run_cli("proof", "--db", ledger.db, pending[0], str(pending[1]), "-o",
                     str(tmp_path / "pending.proof"))
    assert result.exit_code == 2 and "not sealed into a block yet" in result.output
    result = run_cli("proof", "--db", ledger.db, "proof-000", "9999", "-o",
                     str(tmp_path / "nope.proof"))
    assert result.exit_code == 2 and "no reading proof-000 seq 9999" in result.output
    assert col.stop() == 0

    device_id, seq = ledger.sql("SELECT device_id, seq FROM readings WHERE id = 150")[0]
    out = tmp_path / "made" / "reading.proof"
    out.parent.mkdir()
    result = run_cli("proof", "--db", ledger.db, device_id, str(seq), "-o", str(out))
    assert result.exit_code == 0, result.output

    # Elsewhere, with only the file and the collector's public key; the ledger is gone.
    away = tmp_path / "auditor"
    away.mkdir()
    shutil.copy(out, away / "reading.proof")
    shutil.copy(ledger.public_key, away / "collector.pub.pem")
    os.rename(ledger.db, ledger.db + ".moved")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORLEDGER")}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "collector", "verify-proof", "reading.proof",
           "--collector-key", "collector.pub.pem"]
    ok = subprocess.run(cmd, cwd=away, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for check in ("collector key", "block signature", "device key binding", "device signature",
                  "inclusion in block", "time within block"):
        assert f"[PASS] {check}:" in ok.stdout
    assert ok.stdout.rstrip().endswith("proof VERIFIED")
    assert f"device {device_id} seq {seq}" in ok.stdout

    # Every single-byte change is caught, and the report says which check failed.
    data = (away / "reading.proof").read_bytes()
    key = PublicKey.from_pem((away / "collector.pub.pem").read_bytes())
    assert verify_proof(data, key).ok
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            altered = bytearray(data)
            altered[i] ^= bit
            report = verify_proof(bytes(altered), key)
            assert not report.ok, f"byte {i} ^ {bit:#x} went unnoticed"
            assert any(not c.ok for c in report.checks)

    # And through the command line: exit 1, the failed check named.
    for i in (len(data) // 3, len(data) - 10):
        altered = bytearray(data)
        altered[i] ^= 0x01
        (away / "altered.proof").write_bytes(bytes(altered))
        bad = subprocess.run([*cmd[:4], "altered.proof", *cmd[5:]], cwd=away, env=env,
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1, bad.stdout
        assert "[FAIL]" in bad.stdout and bad.stdout.rstrip().endswith("proof FAILED")

    missing = subprocess.run([*cmd[:4], "missing.proof", *cmd[5:]], cwd=away, env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_readings_published_while_down_or_across_a_broker_restart_arrive(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess], protocol: str
) -> None:
    devices = make_devices(5, "restart")
    ledger.enrol(devices)

    def burst(n: int) -> list[tuple[str, bytes]]:
        return [(d.topic, d.next()) for _ in range(n) for d in devices]

    args = ("--block-age", "0.2", "--protocol", protocol)
    first = collector(*args).start()
    assert first.wait_event("broker_connected")["session_present"] is False
    with Publisher(broker, "agents") as pub:
        pub.publish(burst(20))  # 100 readings
        wait_until(lambda: ledger.count("readings") == 100, 30)
        assert first.stop() == 0

        pub.publish(burst(60))  # 300 readings while nobody consumes them

        second = collector(*args).start()
        assert second.wait_event("broker_connected")["session_present"] is True
        pub.publish(burst(20))  # and more while it drains
        wait_until(lambda: ledger.sealed() == 500, 60, 0.05, "backlog and new readings sealed")

        broker.restart()  # the broker keeps the session across its own restart
        second.wait_event("broker_connected", 30,
                          where=lambda e: e["generation"] > 1 and e["session_present"])
        wait_until(pub.client.is_connected, 30, 0.05, "publisher reconnected")
        pub.publish(burst(20))
        wait_until(lambda: ledger.sealed() == 600, 60, 0.05, "readings after broker restart")
    assert second.stop() == 0
    stopped = second.wait_event("collector_stopped")
    assert stopped["unacked"] == 0 and stopped["connects"] == 2

    assert ledger.count("readings") == 600
    stats = ledger.stats()
    for d in devices:
        row = stats["devices"][d.device_id]
        assert (row["accepted"], row["last_seq"], row["missing"]) == (120, 119, 0)
    assert run_cli("audit", "--db", ledger.db).exit_code == 0
