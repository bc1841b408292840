"""The log as C2SP tlog-tiles: `tiles export` writes what a static web server serves, and the
tiles, bundles and checkpoint agree with each other and with the ledger."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from collector.ledger.sqlite_store import SQLiteStore
from collector.publish.tiles import read_resource
from provenance.checkpoint import open_checkpoint
from provenance.merkle import RFC9162_SHA256, root
from provenance.note import parse_verifier_key
from provenance.tiles import TilePathError, format_index, parse_path, tiles_of, unbundle
from tests.support.broker import Broker
from tests.support.collector import CollectorProcess, Ledger, Publisher, make_devices, run_cli
from tests.support.polling import wait_until


def _fill(ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess],
          devices: list, rounds: int) -> None:  # type: ignore[type-arg]
    col = collector("--block-size", "200", "--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish((d.topic, d.next()) for _ in range(rounds) for d in devices)
    total = sum(d.seq for d in devices)
    wait_until(lambda: ledger.sealed() == total, 60, message="everything sealed")
    assert col.stop() == 0


def _checkpoint(ledger: Ledger, directory: Path) -> tuple[int, bytes]:
    verifiers = [parse_verifier_key(v) for v in Path(ledger.vkey).read_text().split()]
    cp = open_checkpoint((directory / "checkpoint").read_bytes(), verifiers).checkpoint
    return cp.size, cp.root


def _root_from_export(directory: Path, size: int) -> bytes:
    """The tree root recomputed from the exported entry bundles alone, each bundle checked
    against its level 0 tile, and every level 1 hash against the level 0 tile below it."""
    leaves: list[bytes] = []
    for n in range((size + 255) // 256):
        width = min(256, size - n * 256)
        suffix = "" if width == 256 else f".p/{width}"
        entries = unbundle((directory / f"tile/entries/{format_index(n)}{suffix}").read_bytes(),
                           width)
        hashes = [RFC9162_SHA256.hash_leaf(e) for e in entries]
        tile = (directory / f"tile/0/{format_index(n)}{suffix}").read_bytes()
        assert tile == b"".join(hashes)
        leaves += hashes
    for tile in tiles_of(size):
        if tile.level == 1:
            data = (directory / tile.path()).read_bytes()
            for i in range(tile.width):
                below = leaves[(tile.index * 256 + i) * 256:(tile.index * 256 + i + 1) * 256]
                assert data[32 * i:32 * (i + 1)] == root(below)
    return root(leaves)


def test_export_is_the_log_and_grows_incrementally(
        ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess],
        tmp_path: Path) -> None:
    devices = make_devices(3, "tile")
    ledger.enrol(devices)
    _fill(ledger, broker, collector, devices, 100)  # 3 statements + 300 readings
    out = tmp_path / "www"
    first = run_cli("tiles", "export", "--db", ledger.db, str(out))
    assert first.exit_code == 0, first.output
    size, cp_root = _checkpoint(ledger, out)
    assert size == 303
    assert _root_from_export(out, size) == cp_root
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "checkpoint", "tile/0/000", "tile/0/001.p/47", "tile/1/000.p/1",
        "tile/entries/000", "tile/entries/001.p/47"]
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    _fill(ledger, broker, collector, devices, 80)  # 240 more: the partial tile fills up
    again = run_cli("tiles", "export", "--db", ledger.db, str(out))
    assert again.exit_code == 0, again.output
    assert "exported tree size 543 (was 303)" in again.output
    size, cp_root = _checkpoint(ledger, out)
    assert _root_from_export(out, size) == cp_root
    # Immutable tiles are not written again.
    assert (out / "tile/0/000").stat().st_mtime_ns == before[out / "tile/0/000"]
    assert (out / "tile/0/001").exists() and (out / "tile/0/002.p/31").exists()
    same = run_cli("tiles", "export", "--db", ledger.db, str(out))
    assert "0 file(s) written" in same.output
    assert not list(out.rglob(".*.tmp"))

    # Served from the store: the same bytes for the same paths; nothing outside the tile paths.
    async def served() -> None:
        store = await SQLiteStore.open(ledger.db)
        try:
            for path in ("checkpoint", "tile/0/001", "tile/entries/002.p/31", "tile/1/000.p/2"):
                got = await read_resource(store, path)
                assert got is not None and got[0] == (out / path).read_bytes(), path
            assert await read_resource(store, "tile/0/002.p/30") is None  # no such checkpoint
            assert await read_resource(store, "tile/0/003") is None
            for bad in ("../ledger.db", "tile/0/../../x", "/checkpoint", "tile/00/000",
                        "tile/0/1", "tile/0/000.p/0", "tile/0/000.p/256", "tile/entries/x000"):
                with pytest.raises(TilePathError):
                    await read_resource(store, bad)
        finally:
            await store.close()

    asyncio.run(served())


def test_tile_paths() -> None:
    assert format_index(1234067) == "x001/x234/067"
    assert format_index(5) == "005"
    tile = parse_path("tile/2/x001/x234/067.p/9")
    assert tile is not None and (tile.level, tile.index, tile.width) == (2, 1234067, 9)
    assert [t.path() for t in tiles_of(256)] == ["tile/0/000", "tile/1/000.p/1"]
    shapes = tiles_of(70_000)
    assert len([t for t in shapes if t.level == 0]) == 274
    assert [t.path() for t in shapes if t.level > 0] == [
        "tile/1/000", "tile/1/001.p/17", "tile/2/000.p/1"]
