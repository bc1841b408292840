"""The SQLite store's log tables: the one tree's perfect nodes, its size, the checkpoints and the
log's identity (origin line and verifier keys).

The tree is stored in tiles (:mod:`provenance.compact`): proofs read O(log n) tile rows by
node position, never the leaves; a block writes a handful of rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence

import aiosqlite

from collector import faults
from collector.errors import StoreError
from collector.ledger.records import BlockRecord, CheckpointRecord
from collector.ledger.sqlite_base import SQLiteConnection
from provenance.compact import (
    CompactRange,
    Node,
    fold,
    frontier_nodes,
    node_from_tile,
    range_nodes,
    tile_entries,
    tile_span,
)
from provenance.merkle import HASH_SIZE

__all__ = ["LogTables"]

_CHECKPOINT_COLUMNS = "size, root, note, block_height, signed_ms"


class LogTables(SQLiteConnection):
    """The log tree, its checkpoints and its identity."""

    # identity --------------------------------------------------------------------------------

    async def log_origin(self) -> str | None:
        row = await self._one("SELECT value FROM meta WHERE key = 'log_origin'")
        return str(row[0]) if row else None

    async def log_vkeys(self) -> list[str]:
        """The log's note verifier keys, oldest first."""
        row = await self._one("SELECT value FROM meta WHERE key = 'log_vkeys'")
        return [v for v in str(row[0]).split("\n") if v] if row else []

    async def set_log_identity(self, origin: str, vkeys: Sequence[str]) -> None:
        async with self._write() as db:
            await db.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [("log_origin", origin), ("log_vkeys", "\n".join(vkeys))],
            )

    # the tree --------------------------------------------------------------------------------

    async def tree_size(self) -> int:
        row = await self._one("SELECT value FROM meta WHERE key = 'tree_size'")
        return int(row[0]) if row else 0

    async def _tile(self, level: int, index: int) -> bytes:
        row = await self._one("SELECT hashes FROM tree_tiles WHERE level = ? AND idx = ?",
                              (level, index))
        return bytes(row[0]) if row else b""

    async def tree_tile(self, level: int, index: int) -> bytes:
        """The stored tile (tlog-tiles level ``level``, index ``index``): its hashes so far."""
        return await self._tile(level, index)

    async def tree_nodes(self, positions: Iterable[tuple[int, int]]) -> dict[tuple[int, int],
                                                                             bytes]:
        """Stored hashes of the perfect nodes at ``positions``; a missing one is a StoreError."""
        out: dict[tuple[int, int], bytes] = {}
        tiles: dict[tuple[int, int], bytes] = {}
        for level, index in positions:
            if (level, index) in out:
                continue
            tile_level, tile_index, first, count = tile_span(level, index)
            key = (tile_level, tile_index)
            if key not in tiles:
                tiles[key] = await self._tile(*key)
            node = node_from_tile(tiles[key], first, count)
            if node is None:
                raise StoreError(f"the log tree has no node at level {level} index {index}; "
                                 "run `ledger-collector audit`")
            out[(level, index)] = node
        return out

    async def leaf_hashes(self, begin: int, end: int) -> dict[int, bytes]:
        """The leaf hashes recorded at sealing for leaf indexes ``[begin, end)``."""
        out: dict[int, bytes] = {}
        if end <= begin:
            return out
        for tile_index in range(begin >> 8, ((end - 1) >> 8) + 1):
            tile = await self._tile(0, tile_index)
            for entry in range(len(tile) // HASH_SIZE):
                index = (tile_index << 8) + entry
                if begin <= index < end:
                    out[index] = tile[entry * HASH_SIZE:(entry + 1) * HASH_SIZE]
        return out

    async def subtree_hashes(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The hash of each RFC 9162 subtree ``[begin, end)`` from the stored perfect nodes."""
        wanted = [range_nodes(b, e) for b, e in ranges]
        nodes = await self.tree_nodes(p for positions in wanted for p in positions)
        return [fold([nodes[p] for p in positions]) for positions in wanted]

    async def compact_range(self, size: int | None = None) -> CompactRange:
        """The tree's right edge at ``size`` leaves (default: the whole tree)."""
        if size is None:
            size = await self.tree_size()
        positions = frontier_nodes(size)
        nodes = await self.tree_nodes(positions)
        return CompactRange(size, [nodes[p] for p in positions])

    async def tree_root(self, size: int) -> bytes:
        return (await self.compact_range(size)).root()

    # checkpoints -----------------------------------------------------------------------------

    async def checkpoint(self, size: int | None = None) -> CheckpointRecord | None:
        """The checkpoint at ``size``, or the latest one."""
        if size is None:
            row = await self._one(f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints "
                                  "ORDER BY size DESC LIMIT 1")
        else:
            row = await self._one(f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE size = ?",
                                  (size,))
        return CheckpointRecord(*row) if row else None

    async def checkpoint_at_least(self, size: int) -> CheckpointRecord | None:
        """The smallest checkpoint covering ``size`` leaves."""
        row = await self._one(f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE size >= ? "
                              "ORDER BY size LIMIT 1", (size,))
        return CheckpointRecord(*row) if row else None

    async def iter_checkpoints(self, chunk: int = 1024) -> AsyncIterator[list[CheckpointRecord]]:
        """Every checkpoint, by size, a chunk at a time (a year of 1 s blocks has 31 million)."""
        after = -1
        while True:
            rows = await self._all(f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE size > ? "
                                   "ORDER BY size LIMIT ?", (after, chunk))
            if not rows:
                return
            yield [CheckpointRecord(*row) for row in rows]
            after = rows[-1][0]

    async def checkpoints(self) -> list[CheckpointRecord]:
        rows = await self._all(f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY size")
        return [CheckpointRecord(*row) for row in rows]

    # writing ---------------------------------------------------------------------------------

    async def _write_log(self, db: aiosqlite.Connection, block: BlockRecord) -> None:
        """Inside the block's transaction: its tree nodes, the new size, its checkpoint."""
        if block.checkpoint is None:
            return
        await self._write_nodes(db, block.nodes, block.checkpoint.size)
        faults.point("seal.nodes_written")
        await self._write_checkpoint(db, block.checkpoint)

    async def _write_nodes(self, db: aiosqlite.Connection, nodes: Sequence[Node],
                           size: int) -> None:
        """Add the stored entries among ``nodes`` to their tiles (growing a partial one)."""
        rows = []
        for (level, index), entries in tile_entries(nodes).items():
            tile = await self._tile(level, index) if entries[0][0] else b""
            if len(tile) != entries[0][0] * HASH_SIZE or any(
                entry != entries[0][0] + k for k, (entry, _) in enumerate(entries)
            ):
                raise StoreError(f"tile {level}/{index} of the log tree holds "
                                 f"{len(tile) // HASH_SIZE} hashes, the next to add is entry "
                                 f"{entries[0][0]}; run `ledger-collector audit`")
            rows.append((level, index, tile + b"".join(h for _, h in entries)))
        await db.executemany("INSERT OR REPLACE INTO tree_tiles(level, idx, hashes) "
                             "VALUES (?, ?, ?)", rows)
        await db.execute("UPDATE meta SET value = ? WHERE key = 'tree_size'", (size,))

    async def _write_checkpoint(self, db: aiosqlite.Connection, cp: CheckpointRecord) -> None:
        # A plain INSERT: a second checkpoint for a size fails the whole transaction.
        await db.execute(f"INSERT INTO checkpoints({_CHECKPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                         (cp.size, cp.root, cp.note, cp.block_height, cp.signed_ms))

    async def commit_tree(self, nodes: Sequence[Node], size: int) -> None:
        """Grow the tree to ``size`` with ``nodes`` (a migration step), atomically."""
        try:
            async with self._write() as db:
                await self._write_nodes(db, nodes, size)
                faults.point("migrate.before_commit")
        except sqlite3.Error as exc:
            raise StoreError(f"writing tree nodes to {self.path} failed: {exc}") from None

    async def commit_checkpoint(self, cp: CheckpointRecord) -> None:
        try:
            async with self._write() as db:
                await self._write_checkpoint(db, cp)
                faults.point("checkpoint.before_commit")
        except sqlite3.Error as exc:
            raise StoreError(f"storing the checkpoint of size {cp.size} failed: {exc}") from None
