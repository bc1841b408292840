"""Must-show 5 and 6: proof files check offline and fail on any altered byte; readings
published while the collector is down (or the broker restarts) arrive, none lost."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provenance.keys import PrivateKey, PublicKey
from provenance.logproof import verify_any_proof
from provenance.trust import TrustPolicy, parse_policy
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


def test_proof_verifies_offline_and_any_altered_byte_fails(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess], tmp_path: Path
) -> None:
    devices = make_devices(3, "proof")
    ledger.enrol(devices)
    col = collector("--block-size", "100", "--block-age", "30").start()
    with Publisher(broker) as pub:
        pub.publish((d.topic, d.next()) for _ in range(70) for d in devices)  # 210 readings
    # The log: 3 enrolment statements, then the readings; blocks of 100 leaves.
    wait_until(lambda: ledger.sealed() >= 197 and ledger.count("readings") == 210, 30)

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
    shutil.copy(ledger.vkey, away / "log.vkey")
    os.rename(ledger.db, ledger.db + ".moved")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSORLEDGER")}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "collector", "verify-proof", "reading.proof",
           "--policy", "log.vkey"]
    ok = subprocess.run(cmd, cwd=away, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # Format 2: against the signed checkpoint of the one log tree.
    for check in ("proof file format", "checkpoint signature", "device key binding",
                  "device signature", "inclusion in log"):
        assert f"[PASS] {check}:" in ok.stdout
    assert ok.stdout.rstrip().endswith("proof VERIFIED")
    assert f"device {device_id} seq {seq}" in ok.stdout
    pem_only = subprocess.run([*cmd[:5], "--collector-key", "collector.pub.pem"], cwd=away,
                              env=env, capture_output=True, text=True, timeout=60)
    assert pem_only.returncode == 0, pem_only.stdout

    # Every single-byte change is caught, and the report says which check failed.
    data = (away / "reading.proof").read_bytes()
    policy = parse_policy((away / "log.vkey").read_text()).merge(
        TrustPolicy(collector_keys=(PublicKey.from_pem((away / "collector.pub.pem")
                                                       .read_bytes()),)))
    assert verify_any_proof(data, policy).ok
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            altered = bytearray(data)
            altered[i] ^= bit
            report = verify_any_proof(bytes(altered), policy)
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


def _self_signed_certificate(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "collector")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_verify_proof_shows_what_was_proven_and_skips_what_it_could_not_check(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess], tmp_path: Path,
) -> None:
    """Issue 13, item 12."""
    dev = Device("arc-07")
    ledger.enrol([dev])
    col = collector("--block-size", "3", "--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish([(dev.topic, dev.next(time_ms=BASE_TIME_MS)),
                     (dev.topic, dev.next(time_ms=BASE_TIME_MS + 1500, clock_synced=False,
                                          event={"type": "arc", "channel": 3})),
                     (dev.topic, dev.next(time_ms=BASE_TIME_MS + 3000))])
    wait_until(lambda: ledger.sealed() == 3, 30, message="three readings sealed")
    assert col.stop() == 0
    proof_file = tmp_path / "arc.proof"
    assert run_cli("proof", "--db", ledger.db, "arc-07", "1", "-o",
                   str(proof_file)).exit_code == 0

    ok = run_cli("verify-proof", str(proof_file), "--collector-key", ledger.public_key)
    assert ok.exit_code == 0, ok.output
    assert ("proven: device arc-07 seq 1 (boot 1), water, at 2026-01-01T00:00:01.500+00:00; "
            "device clock NOT synced") in ok.output
    assert "  ph = 7.1 pH" in ok.output and "  temp = 21.5 Cel" in ok.output
    assert '  event: {"channel": 3, "type": "arc"}' in ok.output
    # The log: the key's enrolment statement, then the 3 readings.
    assert re.search(r"^  in log sensorledger.invalid/ledger at tree size 4 \(root [0-9a-f]{64}\)$",
                     ok.output, re.M)
    report = json.loads(run_cli("verify-proof", str(proof_file), "--collector-key",
                                ledger.public_key, "--json").output)
    assert report["ok"] and [c["status"] for c in report["checks"]] == ["PASS"] * 6
    shown = report["proven"]
    assert (shown["device_id"], shown["seq"], shown["clock_synced"]) == ("arc-07", 1, False)
    assert shown["time_utc"] == "2026-01-01T00:00:01.500+00:00"
    assert shown["event"] == {"type": "arc", "channel": 3} and shown["checkpoint"]["size"] == 4

    # A wrong collector key: which key the proof names, and SKIP for what could not be checked.
    other = PrivateKey.generate()
    wrong_key = tmp_path / "other.pub.pem"
    wrong_key.write_text(other.public.to_pem())
    wrong = run_cli("verify-proof", str(proof_file), "--collector-key", str(wrong_key))
    assert wrong.exit_code == 1
    assert "[FAIL] checkpoint signature: " in wrong.output
    assert "[SKIP] inclusion in log: not checked" in wrong.output
    assert "proven:" not in wrong.output and wrong.output.rstrip().endswith("proof FAILED")

    # A private key or a certificate where the public key belongs: a plain message, exit 2.
    private = run_cli("verify-proof", str(proof_file), "--collector-key", ledger.key)
    assert private.exit_code == 2 and "is a private key" in private.output
    assert "Traceback" not in private.output
    cert = tmp_path / "collector.crt"
    _self_signed_certificate(cert)
    certificate = run_cli("verify-proof", str(proof_file), "--collector-key", str(cert))
    assert certificate.exit_code == 2 and "is a certificate" in certificate.output

    # The same check with only the core: the collector's other dependencies cannot be imported.
    blocker = (
        "import sys, runpy\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'click', 'paho', 'aiomqtt', 'aiosqlite', 'pymodbus',\n"
        "                                  'serial', 'ecdsa', 'sqlite3'}:\n"
        "            raise ImportError(f'{name} is not installed here')\n"
        "sys.meta_path.insert(0, Block())\n"
        "runpy.run_module('collector.tools.proof_check', run_name='__main__')\n"
    )
    core = subprocess.run([sys.executable, "-c", blocker, str(proof_file), "--collector-key",
                           ledger.public_key], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert core.returncode == 0, core.stderr
    assert "proof VERIFIED" in core.stdout and "proven: device arc-07 seq 1" in core.stdout
