"""The PostgreSQL store's log: its identity (origin and note verifier keys), the tree tiles,
checkpoints and blocks, the log head and the sealer's horizon (reads, and the writes of a single
writer; a cluster's sealer is :mod:`collector.ledger.pg_cluster`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from collector import faults
from collector.errors import StoreError
from collector.ledger.pg_registry import PgRegistryTables
from collector.ledger.records import BlockRecord, CheckpointRecord
from collector.ledger.table_reads import CHECKPOINT_COLUMNS, CheckpointReads
from collector.ledger.tree_reads import TreeReads, tile_leaves
from provenance.compact import Node, tile_entries
from provenance.merkle import HASH_SIZE

__all__ = ["PgLogTables"]

_BLOCK_SELECT = "SELECT height, hash, header, first_reading_id, leaf_count, sealed_ms FROM blocks"


class PgLogTables(TreeReads, CheckpointReads, PgRegistryTables):
    """The log's identity, tree, checkpoints and blocks."""

    async def log_origin(self) -> str | None:
        return await self._meta("log_origin")

    async def log_vkeys(self) -> list[str]:
        value = await self._meta("log_vkeys")
        return [v for v in value.split("\n") if v] if value else []

    async def set_log_identity(self, origin: str, vkeys: Sequence[str]) -> None:
        async with self._write() as conn:
            await self._set_meta(conn, [("log_origin", origin), ("log_vkeys", "\n".join(vkeys))])

    async def tree_size(self) -> int:
        row = await self._one("SELECT size FROM log_head WHERE id = 1")
        return int(row[0]) if row else 0

    async def _tile(self, level: int, index: int) -> bytes:
        row = await self._one("SELECT hashes FROM tree_tiles WHERE level = %s AND idx = %s",
                              (level, index))
        return bytes(row[0]) if row else b""

    async def leaf_hashes(self, begin: int, end: int) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        if end <= begin:
            return out
        rows = await self._all(
            "SELECT idx, hashes FROM tree_tiles WHERE level = 0 AND idx >= %s AND idx <= %s",
            (begin >> 8, (end - 1) >> 8))
        for tile_index, tile in rows:
            out.update(tile_leaves(tile_index, bytes(tile), begin, end))
        return out

    async def write_nodes(self, conn: psycopg.AsyncConnection[Any], nodes: Sequence[Node],
                          size: int) -> None:
        """Inside a transaction: add ``nodes`` to their tiles and set the tree size."""
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
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO tree_tiles(level, idx, hashes) VALUES (%s, %s, %s) "
                "ON CONFLICT (level, idx) DO UPDATE SET hashes = excluded.hashes", rows)
        await conn.execute("UPDATE log_head SET size = %s WHERE id = 1", (size,))

    async def write_checkpoint(self, conn: psycopg.AsyncConnection[Any],
                               cp: CheckpointRecord) -> None:
        # A plain INSERT: a second checkpoint for a size fails the whole transaction.
        await conn.execute(
            f"INSERT INTO checkpoints({CHECKPOINT_COLUMNS}) VALUES (%s, %s, %s, %s, %s)",
            (cp.size, cp.root, cp.note, cp.block_height, cp.signed_ms))
        await conn.execute("UPDATE log_head SET root = %s WHERE id = 1 AND size = %s",
                           (cp.root, cp.size))

    async def commit_tree(self, nodes: Sequence[Node], size: int) -> None:
        async with self._write("writing tree nodes to") as conn:
            await self.write_nodes(conn, nodes, size)
            faults.point("migrate.before_commit")

    async def commit_checkpoint(self, cp: CheckpointRecord) -> None:
        async with self._write(f"storing the checkpoint of size {cp.size} in") as conn:
            await self.write_checkpoint(conn, cp)
            faults.point("checkpoint.before_commit")

    async def next_reading_id(self) -> int:
        row = await self._one("SELECT MAX(id) FROM leaves")
        return int(row[0] or 0) + 1

    async def unsealed_horizon(self) -> int:
        """The sealer's horizon (a transaction id): rows of older transactions are sealed."""
        row = await self._one("SELECT unsealed_xid::text::bigint FROM log_head WHERE id = 1")
        return int(row[0]) if row else 0

    async def last_block(self) -> BlockRecord | None:
        row = await self._one(f"{_BLOCK_SELECT} ORDER BY height DESC LIMIT 1")
        return BlockRecord(*row) if row else None

    async def commit_block(self, block: BlockRecord) -> None:
        async with self._write(f"sealing block {block.height} in") as conn:
            await self.write_block(conn, block)
            faults.point("seal.before_commit")

    async def write_block(self, conn: psycopg.AsyncConnection[Any], block: BlockRecord) -> None:
        """Inside a transaction: the block, its tree nodes and checkpoint, and the log head."""
        await conn.execute(
            "INSERT INTO blocks(height, hash, header, first_reading_id, leaf_count, sealed_ms) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (block.height, block.hash, block.header, block.first_reading_id, block.leaf_count,
             block.sealed_ms))
        await conn.execute(
            "UPDATE log_head SET height = %s, block_hash = %s, sealed_ms = %s WHERE id = 1",
            (block.height, block.hash, block.sealed_ms))
        if block.checkpoint is not None:
            await self.write_nodes(conn, block.nodes, block.checkpoint.size)
            faults.point("seal.nodes_written")
            await self.write_checkpoint(conn, block.checkpoint)

    async def block(self, height: int) -> BlockRecord | None:
        row = await self._one(f"{_BLOCK_SELECT} WHERE height = %s", (height,))
        return BlockRecord(*row) if row else None

    async def blocks(self, start: int = 0, limit: int | None = None) -> list[BlockRecord]:
        rows = await self._all(f"{_BLOCK_SELECT} WHERE height >= %s ORDER BY height LIMIT %s",
                               (start, limit))
        return [BlockRecord(*row) for row in rows]

    async def block_of_reading(self, reading_id: int) -> BlockRecord | None:
        row = await self._one(f"{_BLOCK_SELECT} WHERE first_reading_id <= %s "
                              "ORDER BY first_reading_id DESC LIMIT 1", (reading_id,))
        block = BlockRecord(*row) if row else None
        if block is None or reading_id >= block.end_reading_id:
            return None
        return block

    async def block_envelopes(self, block: BlockRecord) -> list[bytes]:
        rows = await self._all("SELECT envelope FROM readings WHERE id >= %s AND id < %s "
                               "ORDER BY id", (block.first_reading_id, block.end_reading_id))
        return [bytes(row[0]) for row in rows]
