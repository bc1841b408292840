"""The log as C2SP tlog-tiles, read from the store: one resource by path (the HTTP handler's
core), and ``tiles export DIR`` (static files any web server can serve).

Every resource is cut at the latest checkpoint's tree size, read in one snapshot: a tile or
bundle is served only when that checkpoint implies it, so a client never sees leaves that no
signed checkpoint covers. Hash tiles come straight from the store's ``tree_tiles`` rows (the
same layout); entry bundles are the envelopes of the readings (and collector statements) in
leaf order.

The export is incremental and crash-safe: it writes only the tiles the new size adds (tiles are
immutable), each to a temporary file renamed into place after an fsync, and the
``checkpoint`` file last; a crash leaves the previous checkpoint, whose tiles are all present.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from collector.errors import NotFoundError, UsageError
from collector.ledger.store import LedgerStore
from provenance.checkpoint import parse_checkpoint
from provenance.errors import ProvenanceError
from provenance.merkle import HASH_SIZE
from provenance.note import parse_note
from provenance.tiles import Tile, bundle, new_tiles, parse_path

__all__ = ["CHECKPOINT_TYPE", "TILE_TYPE", "ExportResult", "export_tiles", "read_resource",
           "read_tile"]

CHECKPOINT_TYPE = "text/plain; charset=utf-8"
TILE_TYPE = "application/octet-stream"


async def read_tile(store: LedgerStore, tile: Tile, size: int) -> bytes | None:
    """The bytes of ``tile`` in the tree of ``size`` leaves; None when that tree has no such
    tile (beyond its size, or a partial tile of another width)."""
    hashes_below = size >> (8 * tile.level) if not tile.is_entries else size
    available = hashes_below - tile.start
    if available <= 0 or (tile.partial and available != tile.width) or (
            not tile.partial and available < tile.width):
        return None
    if tile.is_entries:
        envelopes: list[bytes] = []
        async for chunk in store.iter_readings(tile.start + 1, tile.start + tile.width + 1):
            envelopes += [r.envelope for r in chunk]
        if len(envelopes) != tile.width:
            raise NotFoundError(f"the ledger lacks readings of entry bundle {tile.path()}")
        return bundle(envelopes)
    stored = await store.tree_tile(tile.level, tile.index)
    if len(stored) < tile.width * HASH_SIZE:
        raise NotFoundError(f"the stored tree lacks hashes of tile {tile.path()}")
    return stored[:tile.width * HASH_SIZE]


async def read_resource(store: LedgerStore, path: str) -> tuple[bytes, str] | None:
    """The resource at ``path`` (relative to the log's prefix) and its content type; None when
    there is none. Raises :class:`provenance.tiles.TilePathError` for a path that is not a
    tlog-tiles path (no file system is ever touched, so no path can escape)."""
    tile = parse_path(path)
    async with store.snapshot():
        cp = await store.checkpoint()
        if cp is None:
            return None
        if tile is None:
            return cp.note, CHECKPOINT_TYPE
        data = await read_tile(store, tile, cp.size)
    return None if data is None else (data, TILE_TYPE)


@dataclass(frozen=True, slots=True)
class ExportResult:
    old_size: int
    size: int
    written: int  # files written (tiles, bundles and the checkpoint)


def _exported_size(directory: Path, origin: str) -> int:
    """The tree size of the checkpoint already in ``directory`` (0 when there is none)."""
    path = directory / "checkpoint"
    if not path.exists():
        return 0
    try:
        cp = parse_checkpoint(parse_note(path.read_bytes()).text)
    except (OSError, ProvenanceError) as exc:
        raise UsageError(f"{path} is not a checkpoint ({exc}); export into an empty "
                         "directory") from None
    if cp.origin != origin:
        raise UsageError(f"{directory} holds log {cp.origin!r}, this ledger is log {origin!r}")
    return cp.size


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


async def export_tiles(store: LedgerStore, directory: Path) -> ExportResult:
    """Bring ``directory`` up to the latest checkpoint: new tiles and bundles, then it."""
    async with store.snapshot():
        cp = await store.checkpoint()
        origin = await store.log_origin()
        if cp is None or origin is None:
            raise NotFoundError("the ledger has no checkpoint yet (none sealed, or run "
                                "`ledger-collector migrate`)")
        old = _exported_size(directory, origin)
        if old > cp.size:
            raise UsageError(f"{directory} holds a checkpoint of tree size {old}, larger than "
                             f"this ledger's {cp.size}: another log, or a ledger cut short")
        written = 0
        for tile in new_tiles(old, cp.size):
            data = await read_tile(store, tile, cp.size)
            assert data is not None
            _write_atomically(directory / tile.path(), data)
            written += 1
    if old != cp.size or not (directory / "checkpoint").exists():
        _write_atomically(directory / "checkpoint", cp.note)
        written += 1
    _fsync_dir(directory)
    return ExportResult(old, cp.size, written)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
