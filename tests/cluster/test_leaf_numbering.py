"""Readings on PostgreSQL are written once: the sealer numbers them in ``leaves``, finds the
unsealed ones above a horizon of transaction ids, and never passes a row whose insert commits
late. Migration 3 carries a version 2 ledger's ids over."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from collector.ledger.pg_cluster import ClusterLedger
from collector.ledger.pg_schema import MIGRATIONS
from collector.ledger.pg_store import SCHEMA_VERSION as PG_SCHEMA_VERSION
from collector.ledger.pg_store import PostgresStore
from collector.ledger.records import BatchWrite, ReadingRecord
from provenance.keys import PrivateKey
from provenance.merkle import RFC9162_SHA256, root
from provenance.note import EcdsaNoteSigner

ORIGIN = "sensorledger.example/numbering"


def _row(device: str, seq: int) -> ReadingRecord:
    return ReadingRecord(0, device, seq, 1, seq, seq, "water", f"{device}-{seq}".encode())


async def _open(url: str) -> tuple[PostgresStore, PrivateKey]:
    store = await PostgresStore.open(url, create=True)
    key = PrivateKey.generate()
    await store.set_collector_public_key(key.public)
    await store.set_log_identity(ORIGIN, [])
    return store, key


async def _admit(cluster: ClusterLedger, rows: list[ReadingRecord]) -> None:
    async with cluster.admission(sorted({r.device_id for r in rows})) as adm:
        await cluster.write(adm, BatchWrite(rows))


async def _seal(cluster: ClusterLedger, key: PrivateKey, size: int = 100) -> Any:
    return await cluster.seal(key, ORIGIN, [EcdsaNoteSigner(ORIGIN, key)], size=size,
                              age_ms=0, now_ms=lambda: 1_000, force=True)


def _sql(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as con:
        return list(con.execute(sql).fetchall())


def test_a_row_committed_late_is_sealed_in_the_next_block(pg_url: str) -> None:
    """A transaction takes its row id first and commits after a later one was sealed: the
    horizon stays below it, the next block takes it, ids stay dense, rows are never updated."""

    async def go() -> None:
        store, key = await _open(pg_url)
        cluster = ClusterLedger(store)
        try:
            late = await psycopg.AsyncConnection.connect(pg_url)
            try:
                await late.execute(
                    "INSERT INTO reading_rows(device_id, seq, boot, time_ms, received_ms, kind, "
                    "envelope) VALUES ('late', 0, 1, 0, 0, 'water', 'late-0')")
                await _admit(cluster, [_row("d", s) for s in range(3)])
                first = await _seal(cluster, key)
                assert first.leaves == 3  # the late row is not visible yet
                await late.commit()
            finally:
                await late.close()
            await _admit(cluster, [_row("d", 3)])
            second = await _seal(cluster, key)
            assert second.leaves == 2
            assert await _seal(cluster, key) is None
            assert await cluster.unsealed() == (0, None)
        finally:
            await store.close()

    asyncio.run(go())
    rows = _sql(pg_url, "SELECT id, device_id, seq, envelope FROM readings ORDER BY id")
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    # The late row (the lowest row id, an older transaction) has the id after the first block.
    assert [(r[1], r[2]) for r in rows] == [("d", 0), ("d", 1), ("d", 2), ("late", 0), ("d", 3)]
    size, tree_root = _sql(pg_url, "SELECT size, root FROM log_head")[0]
    assert size == 5
    assert bytes(tree_root) == root([RFC9162_SHA256.hash_leaf(bytes(r[3])) for r in rows])
    updated = _sql(pg_url, "SELECT n_tup_upd + n_tup_hot_upd FROM pg_stat_user_tables "
                           "WHERE relname = 'reading_rows'")
    assert updated == [(0,)]
    horizon, current = _sql(pg_url, "SELECT unsealed_xid::text::bigint, "
                                    "pg_current_xact_id()::text::bigint FROM log_head")[0]
    assert 0 < horizon <= current


def test_a_block_full_of_rows_leaves_the_horizon_at_the_rest(pg_url: str) -> None:
    """More rows wait than a block takes: the horizon stays at the oldest that waits, and the
    next blocks take the rest in row order."""

    async def go() -> list[int]:
        store, key = await _open(pg_url)
        cluster = ClusterLedger(store)
        try:
            await _admit(cluster, [_row("a", s) for s in range(4)])
            await _admit(cluster, [_row("b", s) for s in range(4)])
            counts = []
            while (sealed := await _seal(cluster, key, size=3)) is not None:
                counts.append(sealed.leaves)
            return counts
        finally:
            await store.close()

    assert asyncio.run(go()) == [3, 3, 2]
    rows = _sql(pg_url, "SELECT id, device_id, seq FROM readings ORDER BY row_id")
    assert rows == [(i + 1, d, s) for i, (d, s) in
                    enumerate([("a", s) for s in range(4)] + [("b", s) for s in range(4)])]


def test_migration_3_keeps_the_ids_of_a_version_2_ledger(pg_url: str) -> None:
    """A version 2 ledger (ids in ``readings.id``, one row unsealed) opens at version 3 with
    the same ids, and the unsealed row is sealed next."""
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_ms BIGINT NOT NULL)")
        for version, name, sql in MIGRATIONS[:2]:
            con.execute(sql.encode())
            con.execute("INSERT INTO schema_migrations VALUES (%s, %s, 0)", (version, name))
        for seq, rid in ((0, 1), (1, 2), (2, None)):
            con.execute("INSERT INTO readings(id, device_id, seq, boot, time_ms, received_ms, "
                        "kind, envelope) VALUES (%s, 'd', %s, 1, %s, %s, 'water', %s)",
                        (rid, seq, seq, seq, f"d-{seq}".encode()))

    async def go() -> tuple[int, Any]:
        store = await PostgresStore.open(pg_url)
        try:
            assert await store.schema_version() == PG_SCHEMA_VERSION
            assert await store.next_reading_id() == 3
            found = await store.find_reading("d", 1)
            assert found is not None and found.id == 2
            return (await ClusterLedger(store).unsealed())[0], await store.find_reading("d", 2)
        finally:
            await store.close()

    waiting, unsealed = asyncio.run(go())
    assert waiting == 1 and unsealed is not None and unsealed.id is None
    assert _sql(pg_url, "SELECT id, seq FROM readings ORDER BY row_id") == [
        (1, 0), (2, 1), (None, 2)]
