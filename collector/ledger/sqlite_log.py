"""The SQLite store's log tables: the one tree's perfect nodes, its size, the checkpoints and the
log's identity (origin line and verifier keys).

The tree is stored in tiles (:mod:`provenance.compact`): proofs read O(log n) tile rows by
node position, never the leaves; a block writes a handful of rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import aiosqlite

from collector import faults
from collector.errors import StoreError
from collector.ledger.records import BlockRecord, CheckpointRecord
from collector.ledger.sqlite_base import SQLiteConnection
from collector.ledger.table_reads import CHECKPOINT_COLUMNS, CheckpointReads
from collector.ledger.tree_reads import TreeReads, tile_leaves
from provenance.compact import (
    Node,
    tile_entries,
)
from provenance.merkle import HASH_SIZE

__all__ = ["LogTables"]


class LogTables(TreeReads, CheckpointReads, SQLiteConnection):
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

    async def leaf_hashes(self, begin: int, end: int) -> dict[int, bytes]:
        """The leaf hashes recorded at sealing for leaf indexes ``[begin, end)``."""
        out: dict[int, bytes] = {}
        if end <= begin:
            return out
        for tile_index in range(begin >> 8, ((end - 1) >> 8) + 1):
            out.update(tile_leaves(tile_index, await self._tile(0, tile_index), begin, end))
        return out

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
        await db.execute(f"INSERT INTO checkpoints({CHECKPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
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
