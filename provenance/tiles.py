"""C2SP tlog-tiles: resource paths, which tiles a tree size has, and entry bundles.

A log published as tiles (c2sp.org/tlog-tiles) is a set of static resources under a prefix:
``checkpoint``; ``tile/<L>/<N>[.p/<W>]``, 256 hashes of 32 bytes per full tile (level 0: leaf
hashes; level L: the hashes of the full level L-1 tiles); ``tile/entries/<N>[.p/<W>]``, the
entries of leaves ``256N ..`` each as a big-endian uint16 length and its bytes. ``<N>`` is
written in 3-digit groups, all but the last prefixed with ``x`` (1234067 -> ``x001/x234/067``);
``<W>`` (1..255) marks a partial tile. Our entries are the envelopes exactly as the leaves hash
them (leaf = H(0x00 || envelope)).

Pure: paths, arithmetic and bytes; fetching and storing are the caller's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import MalformedError
from .merkle import HASH_SIZE

__all__ = ["MAX_ENTRY", "TILE_WIDTH", "Tile", "TilePathError", "bundle", "entry_bundles_of",
           "format_index", "new_tiles", "parse_path", "split_hashes", "tiles_of", "unbundle"]

TILE_WIDTH = 256
MAX_ENTRY = 0xFFFF
MAX_LEVEL = 63
ENTRIES = -1  # the level of an entry bundle in a :class:`Tile`


class TilePathError(MalformedError):
    """A path that is not a tlog-tiles resource."""

    code = "bad_tile_path"


@dataclass(frozen=True, slots=True, order=True)
class Tile:
    """A tile (``level`` >= 0) or an entry bundle (``level`` = -1) of ``width`` entries."""

    level: int
    index: int
    width: int = TILE_WIDTH

    @property
    def partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def is_entries(self) -> bool:
        return self.level == ENTRIES

    def path(self) -> str:
        level = "entries" if self.is_entries else str(self.level)
        suffix = f".p/{self.width}" if self.partial else ""
        return f"tile/{level}/{format_index(self.index)}{suffix}"

    @property
    def start(self) -> int:
        """The first hash (level 0 and entries: leaf) index the tile holds at its level."""
        return self.index * TILE_WIDTH


def format_index(n: int) -> str:
    """``N`` as zero-padded 3-digit path elements, all but the last starting with ``x``."""
    if n < 0:
        raise TilePathError(f"tile index {n} is negative")
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


_PATH = re.compile(r"tile/(entries|0|[1-9][0-9]?)/((?:x[0-9]{3}/)*[0-9]{3})(?:\.p/([1-9][0-9]*))?")


def parse_path(path: str) -> Tile | None:
    """The tile a resource path names; None for ``checkpoint``; TilePathError for anything else
    (``..``, leading slashes, non-canonical numbers: nothing but the exact form passes)."""
    if path == "checkpoint":
        return None
    m = _PATH.fullmatch(path)
    if m is None:
        raise TilePathError(f"{path!r} is not a tlog-tiles path")
    level = ENTRIES if m.group(1) == "entries" else int(m.group(1))
    if level > MAX_LEVEL:
        raise TilePathError(f"tile level {level} is above {MAX_LEVEL}")
    index = int(m.group(2).replace("x", "").replace("/", ""))
    width = TILE_WIDTH
    if m.group(3) is not None:
        width = int(m.group(3))
        if width >= TILE_WIDTH:
            raise TilePathError(f"partial tile width {width} must be 1..255")
    tile = Tile(level, index, width)
    if tile.path() != path:
        raise TilePathError(f"{path!r} is not in canonical form ({tile.path()!r})")
    return tile


def tiles_of(size: int) -> list[Tile]:
    """Every hash tile of a tree of ``size`` leaves: the full ones and, per level, the partial
    right-edge one (if any), level by level."""
    out: list[Tile] = []
    level, width_below = 0, size
    while width_below >= 1:
        full, rest = divmod(width_below, TILE_WIDTH)
        out += [Tile(level, i) for i in range(full)]
        if rest:
            out.append(Tile(level, full, rest))
        level += 1
        width_below = full
        if full == 0:
            break
    return out


def entry_bundles_of(size: int) -> list[Tile]:
    full, rest = divmod(size, TILE_WIDTH)
    return [Tile(ENTRIES, i) for i in range(full)] + ([Tile(ENTRIES, full, rest)] if rest else [])


def new_tiles(old_size: int, new_size: int) -> list[Tile]:
    """The tiles and entry bundles a tree of ``new_size`` has and one of ``old_size`` has not
    (tiles are immutable: a resource once published never changes)."""
    old = set(tiles_of(old_size)) | set(entry_bundles_of(old_size))
    return [t for t in [*entry_bundles_of(new_size), *tiles_of(new_size)] if t not in old]


def bundle(entries: list[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length and its bytes."""
    parts: list[bytes] = []
    for entry in entries:
        if len(entry) > MAX_ENTRY:
            raise MalformedError(f"an entry of {len(entry)} bytes does not fit a tlog-tiles "
                                 f"bundle (at most {MAX_ENTRY})")
        parts += [len(entry).to_bytes(2, "big"), entry]
    return b"".join(parts)


def unbundle(data: bytes, count: int) -> list[bytes]:
    """The ``count`` entries of a bundle; MalformedError if it holds more, fewer or a torn one."""
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise MalformedError("entry bundle ends inside a length prefix")
        length = int.from_bytes(data[pos:pos + 2], "big")
        end = pos + 2 + length
        if end > len(data):
            raise MalformedError("entry bundle ends inside an entry")
        entries.append(data[pos + 2:end])
        pos = end
    if len(entries) != count:
        raise MalformedError(f"entry bundle holds {len(entries)} entries, expected {count}")
    return entries


def split_hashes(data: bytes, width: int) -> list[bytes]:
    """The ``width`` hashes of a tile's bytes."""
    if len(data) != width * HASH_SIZE:
        raise MalformedError(f"tile of width {width} must be {width * HASH_SIZE} bytes, got "
                             f"{len(data)}")
    return [data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]
