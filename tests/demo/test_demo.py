"""The README's first command, in a short run: broker, collector, five agents, audit, proof."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# Each device the demo's ledger holds readings of, with its kind and some measurement names.
EXPECTED_KINDS = {
    "water-plant-1": ("water-quality", {"ph", "temperature"}),
    "ess-rack-1": ("battery", {"pack_voltage", "pack_current"}),
    "ward3-bed12": ("pulse-oximeter", set()),  # private: the ledger holds no values
    "panel-7": ("arc-detector", {"arc_alarm_bitmap", "bus_arc"}),
    "smart-sensor-9": ("water-quality", {"ph", "temperature"}),
}


def test_short_demo_passes_its_audit_and_proof_check(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--seconds", "8", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "demo PASSED" in out
    assert re.search(r"audit OK: \d+ blocks, \d+ readings and \d+ collector statement\(s\) "
                     r"verified", out)
    assert "proof VERIFIED" in out
    # Six checks each (format, checkpoint with the witness quorum, key binding, signature,
    # inclusion, the device key's enrolment statement): an arc's proof and a private one.
    assert out.count("[PASS]") == 12 and "[FAIL]" not in out
    assert "[PASS] device key enrolment" in out
    # The oximeter's values: revealed with the reader key, absent from the private proof.
    private = out[out.index("==> a private reading"):out.index("==> where to look")]
    assert "values match the signed commitment" in private and "spo2 = " in private
    assert "values not disclosed" in private
    # The checkpoint's two signatures, printed twice: as saved, and as the witnesses cosigned it.
    assert out.count("— sensorledger.example/demo ") == 4
    assert out.count("— witness.agency.example/demo ") == 2
    assert out.count("— witness.owner.example/demo ") == 2
    assert "cosigned by 2 of 2 policy witnesses (agency, owner); quorum both met" in out
    assert "extends the saved checkpoint of tree size" in out
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    _assert_view_and_mirror(out, run_dir)
    assert re.search(r"mirror copy \S+/mirror/mirror\.db", out)

    report = out[out.index("==> report"):out.index("==> auditing")]
    assert re.search(r"; 0 quarantined", report)
    accepted = {}
    for line in report.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1].isdigit() and fields[2].isdigit():
            accepted[fields[0]] = int(fields[2])
    # The five devices the demo runs: four agents' own ids and the one a relay speaks for.
    assert set(accepted) == set(EXPECTED_KINDS)
    assert all(n >= 3 for n in accepted.values()), accepted

    # Every device kind went driver -> agent -> Mosquitto -> collector (which verified each
    # signature); read the decoded measurements back out of the ledger.
    for device, (kind, names) in EXPECTED_KINDS.items():
        rows = subprocess.run(
            [str(Path(sys.executable).parent / "ledger-collector"), "readings", "--db",
             str(run_dir / "collector" / "ledger.db"), "--device", device, "--format", "jsonl"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.splitlines()
        readings = [json.loads(r) for r in rows]
        assert readings, device
        assert {r["kind"] for r in readings} == {kind}, device
        seen = {m["n"] for r in readings for m in r["measurements"]}
        assert names <= seen, (device, seen)
        if device == "ward3-bed12":
            assert not seen and all(len(r["commitment"]) == 64 for r in readings)
        assert all(r["block"] is not None for r in readings), device
    assert (run_dir / "arc-event.proof").stat().st_size > 0
    assert (run_dir / "collector" / "ledger.db").exists()
    assert (run_dir / "mirror" / "mirror.db").exists()
    # The offline check works from the files alone, as an auditor would run it.
    check = subprocess.run(
        [str(Path(sys.executable).parent / "ledger-collector"), "verify-proof",
         str(run_dir / "arc-event.proof"), "--collector-key",
         str(run_dir / "collector" / "collector-key.pub.pem")],
        capture_output=True, text=True, timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_cluster_demo_serves_the_view_on_postgresql(tmp_path: Path) -> None:
    """``make demo-cluster`` in a short run: two collectors on a private PostgreSQL, and the
    same view, mirror, audit and proof checks as the SQLite demo."""
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--cluster", "--seconds", "8", "--workdir",
         str(tmp_path)], capture_output=True, text=True, timeout=300,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "demo PASSED" in out
    assert "two collectors, shared subscription" in out
    assert re.search(r"ledger\s+postgresql://postgres@127\.0\.0\.1:\d+/sensorledger", out)
    assert re.search(r"audit OK: \d+ blocks, \d+ readings and \d+ collector statement\(s\) "
                     r"verified \(0 not yet sealed\)", out)
    assert out.count("proof VERIFIED") == 2
    assert out.count("[PASS]") == 12 and "[FAIL]" not in out
    assert "cosigned by 2 of 2 policy witnesses (agency, owner); quorum both met" in out
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    _assert_view_and_mirror(out, run_dir)
    assert not (run_dir / "collector" / "ledger.db").exists()  # the ledger was PostgreSQL


def _assert_view_and_mirror(out: str, run_dir: Path) -> None:
    """The read-only view was up, showed the ledger as it is (pages and JSON API), and another
    party's mirror caught up from its tiles to the log's own checkpoint."""
    assert re.search(r"view: http://127\.0\.0\.1:\d+/", out)  # the read-only view was up
    view = out[out.index("==> the read-only view shows"):out.index("==> a mirror")]
    assert "the view shows the ledger as it is" in view and "MISMATCH" not in view, view
    assert re.search(r"/api/v1/overview: \d+ readings, \d+ blocks, tree size \d+, 5 devices, "
                     r"0 unsealed", view), view
    assert re.search(r"/api/v1/devices/panel-7/readings: [1-5] readings", view), view

    # Another party's mirror caught up from the view's tiles, to the log's own checkpoint.
    mirror = out[out.index("==> a mirror"):out.index("==> writing and checking")]
    assert re.search(r"ledger-mirror from the view's tiles at http://127\.0\.0\.1:\d+/log",
                     mirror)
    caught = re.search(r"tree size 0 -> (\d+): (\d+) readings and (\d+) collector statements "
                       r"verified and kept", mirror)
    assert caught, mirror
    head = re.search(r"mirror reached the same checkpoint: sensorledger\.example/demo, tree "
                     r"size (\d+), root (\S+)", mirror)
    assert head, mirror
    saved = (run_dir / "head.checkpoint").read_text()
    assert saved.splitlines()[1:3] == [head.group(1), head.group(2)]
    assert caught.group(1) == head.group(1)
    # Its copy passes the audit on its own, against the same saved checkpoint.
    mirror_audit = mirror[mirror.index("==> auditing the mirror's copy"):]
    assert re.search(rf"audit OK: \d+ blocks, {caught.group(2)} readings and "
                     rf"{caught.group(3)} collector statement\(s\) verified", mirror_audit)
    assert (f"extends the saved checkpoint of tree size {head.group(1)} "
            in mirror_audit), mirror_audit


def test_demo_leaves_no_process_behind(tmp_path: Path) -> None:
    """Interrupted half-way, the demo stops every child it started; also when started as a
    shell's background job, which inherits SIGINT ignored."""
    import os
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "demo", "--seconds", "60", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "running for" in line:
            break
    time.sleep(2)
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode == 130
    time.sleep(0.5)
    leftovers = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(run_dir).encode() in cmdline:
            leftovers.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    assert leftovers == []
