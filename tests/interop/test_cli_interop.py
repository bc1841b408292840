"""The Go program of tests/interop checks what our command line hands out: a checkpoint from
``ledger-collector checkpoint``, an inclusion proof from ``proof --format tlog-proof`` and a
consistency proof from ``consistency``, all taken from a ledger the collector filled."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from provenance.envelope import Envelope
from tests.support.broker import Broker
from tests.support.collector import CollectorProcess, Ledger, Publisher, make_devices, run_cli
from tests.support.polling import wait_until


def test_go_verifies_what_our_cli_prints(
    interop_binary: Path,
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess], tmp_path: Path,
) -> None:
    devices = make_devices(3, "go")
    ledger.enrol(devices)
    col = collector("--block-size", "16", "--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish((d.topic, d.next()) for _ in range(25) for d in devices)  # 75 readings
    wait_until(lambda: ledger.sealed() == 75, 30, message="everything sealed")
    assert col.stop() == 0

    case = tmp_path / "case"
    case.mkdir()
    ed25519, ecdsa = Path(ledger.vkey).read_text().split()
    (case / "log.vkey").write_text(ed25519 + "\n")
    (case / "collector.vkey").write_text(ecdsa + "\n")
    sizes = [r[0] for r in ledger.sql("SELECT size FROM checkpoints ORDER BY size")]
    old_size = sizes[len(sizes) // 2]
    old = run_cli("checkpoint", "--db", ledger.db, "--size", str(old_size))
    new = run_cli("checkpoint", "--db", ledger.db)
    assert old.exit_code == new.exit_code == 0
    (case / "old.checkpoint").write_text(old.output)
    (case / "new.checkpoint").write_text(new.output)
    made = run_cli("proof", "--db", ledger.db, "go-002", "17", "--format", "tlog-proof",
                   "-o", str(case / "entry.tlog-proof"))
    assert made.exit_code == 0, made.output
    envelope = ledger.sql("SELECT envelope FROM readings WHERE device_id = 'go-002' AND seq = 17")
    (case / "entry.bin").write_bytes(envelope[0][0])
    assert Envelope.decode(envelope[0][0]).reading().seq == 17
    consistency = run_cli("consistency", "--db", ledger.db, str(old_size))
    assert consistency.exit_code == 0
    head, _, note = consistency.output.partition("\n\n")
    assert note == new.output  # it proves up to the latest checkpoint, printed after it
    (case / "consistency.txt").write_text(head + "\n")

    result = subprocess.run([str(interop_binary), str(case)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    origin = ed25519.split("+")[0]
    index = int(ledger.sql("SELECT id FROM readings WHERE device_id = 'go-002' AND seq = 17")
                [0][0]) - 1
    size = 75 + 3  # the readings and the three devices' enrolment statements
    assert result.stdout.splitlines() == [
        f"ok note.Open Ed25519 {origin} size {size} (1 other signature(s) ignored)",
        "ok crypto/ecdsa type 0x02 signature",
        f"ok tlog.CheckRecord leaf {index} of {size}",
        f"ok tlog.CheckTree {old_size} -> {size}",
    ]
