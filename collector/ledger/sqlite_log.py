"""The SQLite store's log tables: the one tree's perfect nodes, its size, the checkpoints and the
log's identity (origin line and verifier keys).

Proofs read O(log n) node rows by position (:mod:`provenance.compact`), never the leaves.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

import aiosqlite

from collector import faults
from collector.errors import StoreError
from collector.ledger.records import BlockRecord, CheckpointRecord
from collector.ledger.sqlite_base import SQLiteConnection
from provenance.compact import CompactRange, Node, fold, frontier_nodes, range_nodes

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

    async def tree_nodes(self, positions: Iterable[tuple[int, int]]) -> dict[tuple[int, int],
                                                                             bytes]:
        """Stored hashes of the perfect nodes at ``positions``; a missing one is a StoreError."""
        out: dict[tuple[int, int], bytes] = {}
        for level, index in positions:
            if (level, index) in out:
                continue
            row = await self._one("SELECT hash FROM tree_nodes WHERE level = ? AND idx = ?",
                                  (level, index))
            if row is None:
                raise StoreError(f"the log tree has no node at level {level} index {index}; "
                                 "run `ledger-collector audit`")
            out[(level, index)] = row[0]
        return out

    async def leaf_hashes(self, begin: int, end: int) -> dict[int, bytes]:
        """The leaf hashes recorded at sealing for leaf indexes ``[begin, end)``."""
        rows = await self._all("SELECT idx, hash FROM tree_nodes WHERE level = 0 AND idx >= ? "
                               "AND idx < ?", (begin, end))
        return {int(i): h for i, h in rows}

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
        await db.executemany("INSERT INTO tree_nodes(level, idx, hash) VALUES (?, ?, ?)", nodes)
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
