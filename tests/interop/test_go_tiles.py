"""Go's golang.org/x/mod/sumdb/tlog reads the log `tiles export` writes: tlog.TileHashReader
(height 8) checks every hash tile against the checkpoint's tree hash, and every entry of the
entry bundles has a record proof tlog.CheckRecord accepts. A changed tile or entry fails."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from provenance.note import parse_verifier_key
from tests.interop.test_go_interop import interop_binary
from tests.support.broker import Broker
from tests.support.collector import CollectorProcess, Ledger, Publisher, make_devices, run_cli
from tests.support.polling import wait_until

__all__ = ["interop_binary"]  # the fixture, shared with test_go_interop


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("go-tiles")
    broker = Broker(workdir=base / "broker").start()
    try:
        ledger = Ledger(base / "ledger").init()
        devices = make_devices(2, "gotile")
        ledger.enrol(devices)
        col = CollectorProcess(ledger, broker, "--block-size", "128", "--block-age", "0.2")
        col.start()
        try:
            with Publisher(broker) as pub:
                pub.publish((d.topic, d.next()) for _ in range(150) for d in devices)
            wait_until(lambda: ledger.sealed() == 300, 60, 0.05)
            assert col.stop() == 0
        finally:
            col.kill()
    finally:
        broker.stop()
    out = base / "tiles"
    assert run_cli("tiles", "export", "--db", ledger.db, str(out)).exit_code == 0
    ed25519 = next(v for v in Path(ledger.vkey).read_text().split()
                   if parse_verifier_key(v).sig_type == 1)
    return out, ed25519


def _run(binary: Path, directory: Path, vkey: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), "tiles", str(directory), vkey], capture_output=True,
                          text=True, timeout=60)


def test_go_reads_our_tiles(interop_binary: Path, exported: tuple[Path, str]) -> None:
    directory, vkey = exported
    result = _run(interop_binary, directory, vkey)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok tlog.TileHashReader tree hash of 302 leaves = checkpoint root" in result.stdout
    assert "ok tlog.CheckRecord every entry of the entry bundles (302)" in result.stdout


@pytest.mark.parametrize("path,offset", [("tile/0/000", 100), ("tile/1/000.p/1", 5),
                                         ("tile/entries/001.p/46", 60)])
def test_go_rejects_a_changed_tile_or_entry(interop_binary: Path, exported: tuple[Path, str],
                                            tmp_path: Path, path: str, offset: int) -> None:
    directory, vkey = exported
    copy = tmp_path / "tiles"
    shutil.copytree(directory, copy)
    data = bytearray((copy / path).read_bytes())
    data[offset] ^= 0x01
    (copy / path).write_bytes(bytes(data))
    result = _run(interop_binary, copy, vkey)
    assert result.returncode == 1 and "FAIL" in result.stdout, result.stdout
