"""Go's golang.org/x/mod/sumdb/tlog reads the log `tiles export` writes: tlog.TileHashReader
(height 8) checks every hash tile against the checkpoint's tree hash, and every entry of the
entry bundles has a record proof tlog.CheckRecord accepts. A changed tile or entry fails."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.logs import ed25519_vkey, export_tiles, filled_ledger


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("go-tiles")
    ledger, _ = filled_ledger(base, devices=2, prefix="gotile", rounds=150, block_size=128)
    return export_tiles(ledger, base / "tiles"), ed25519_vkey(ledger)


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
