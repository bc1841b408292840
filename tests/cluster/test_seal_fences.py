"""The two fences around sealing on PostgreSQL, one at a time: the log-head row lock (a second
sealer skips while one holds it) and the compare-and-swap on the previous head (a sealer that
read a head that has since moved writes nothing)."""

from __future__ import annotations

import asyncio

import pytest

from collector.ledger.pg_cluster import ClusterLedger, SealConflict
from collector.ledger.pg_store import PostgresStore
from collector.ledger.records import BatchWrite, ReadingRecord
from provenance.keys import PrivateKey
from provenance.merkle import RFC9162_SHA256, root
from provenance.note import EcdsaNoteSigner

ORIGIN = "sensorledger.example/fences"


class Lockless(ClusterLedger):
    """A sealer whose head lock failed (as a session lock behind a pooler would): only the
    compare-and-swap stands between it and a fork."""

    head_lock = ""


async def _ledger(url: str, readings: int) -> tuple[PostgresStore, PrivateKey]:
    store = await PostgresStore.open(url, create=True)
    key = PrivateKey.generate()
    await store.set_collector_public_key(key.public)
    await store.set_log_identity(ORIGIN, [])
    cluster = ClusterLedger(store)
    async with cluster.admission(["d"]) as adm:
        await cluster.write(adm, BatchWrite([
            ReadingRecord(0, "d", seq, 1, seq, seq, "water", f"env-{seq}".encode())
            for seq in range(readings)]))
    return store, key


async def _seal(cluster: ClusterLedger, key: PrivateKey, pause: asyncio.Event | None = None,
                reached: asyncio.Event | None = None) -> object:
    async def wait() -> None:
        if reached is not None:
            reached.set()
        if pause is not None:
            await pause.wait()

    return await cluster.seal(key, ORIGIN, [EcdsaNoteSigner(ORIGIN, key)], size=3, age_ms=0,
                              now_ms=lambda: 1_000, force=True, pause=wait)


def test_a_second_sealer_skips_while_the_head_is_locked(pg_url: str) -> None:
    async def go() -> None:
        store, key = await _ledger(pg_url, 6)
        other = await PostgresStore.open(pg_url)
        try:
            release, reached = asyncio.Event(), asyncio.Event()
            first = asyncio.create_task(_seal(ClusterLedger(store), key, release, reached))
            await reached.wait()  # holds the head lock, block signed, nothing written
            assert await _seal(ClusterLedger(other), key) is None
            release.set()
            assert (await first) is not None
            assert await _seal(ClusterLedger(other), key) is not None  # its turn now
            blocks = await store.blocks()
            assert [(b.height, b.first_reading_id, b.leaf_count) for b in blocks] == [
                (0, 1, 3), (1, 4, 3)]
            leaves = [RFC9162_SHA256.hash_leaf(f"env-{i}".encode()) for i in range(6)]
            assert (await store.checkpoint(3)).root == root(leaves[:3])  # type: ignore[union-attr]
            assert (await store.checkpoint(6)).root == root(leaves)  # type: ignore[union-attr]
        finally:
            await other.close()
            await store.close()

    asyncio.run(go())


def test_a_sealer_whose_head_moved_writes_nothing(pg_url: str) -> None:
    async def go() -> None:
        store, key = await _ledger(pg_url, 6)
        other = await PostgresStore.open(pg_url)
        try:
            release, reached = asyncio.Event(), asyncio.Event()
            stale = asyncio.create_task(_seal(Lockless(store), key, release, reached))
            await reached.wait()  # read the empty head, signed block 0 over readings 1..3
            assert await _seal(ClusterLedger(other), key) is not None  # block 0, committed
            release.set()
            with pytest.raises(SealConflict, match="the log head moved"):
                await stale
            assert [b.height for b in await store.blocks()] == [0]
            assert [c.size for c in await store.checkpoints()] == [3]
            assert await store.tree_size() == 3
            ids = await store._all("SELECT id FROM readings ORDER BY row_id")
            assert [r[0] for r in ids] == [1, 2, 3, None, None, None]
            # Reloaded from the head, the same sealer goes on from where the log is.
            assert await _seal(Lockless(store), key) is not None
            assert [c.size for c in await store.checkpoints()] == [3, 6]
        finally:
            await other.close()
            await store.close()

    asyncio.run(go())
