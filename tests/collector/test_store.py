"""The ledger stores, SQLite and PostgreSQL (each test runs on both unless it says): migrations,
durability settings, atomic batches, registry, sealing."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from collector.errors import NotFoundError, RegistryError, StoreError
from collector.ledger.opening import is_postgres_url, open_store
from collector.ledger.pg_store import SCHEMA_VERSION as PG_SCHEMA_VERSION
from collector.ledger.pg_store import PostgresStore
from collector.ledger.records import (
    BatchWrite,
    CheckpointRecord,
    DeviceState,
    PendingLeaf,
    QuarantineRecord,
    ReadingRecord,
)
from collector.ledger.sealer import Sealer
from collector.ledger.sqlite_schema import MIGRATIONS
from collector.ledger.sqlite_store import SCHEMA_VERSION, SQLiteStore
from collector.ledger.store import LedgerStore
from provenance.block import GENESIS_BLOCK_HASH, SignedBlock
from provenance.keys import PrivateKey
from provenance.merkle import RFC9162_SHA256, root
from tests.support.postgres import PostgresServer

T = TypeVar("T")


def run(fn: Callable[[Any], Awaitable[T]], where: Path | str, create: bool = True) -> T:
    async def go() -> T:
        store = await open_store(str(where), create=create)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's ledger lives: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "l.db")
    return str(request.getfixturevalue("pg_url"))


def reading(i: int, device: str = "s-01") -> ReadingRecord:
    return ReadingRecord(i, device, i - 1, 1, 1000 + i, 2000 + i, "water", f"env-{i}".encode())


def quarantined(raw: bytes, reason: str = "not_cbor") -> QuarantineRecord:
    return QuarantineRecord(hashlib.sha256(raw).digest(), reason, "detail", "t", "s-01", None,
                            None, len(raw), raw, 5)


def test_migrations_are_recorded_and_applied_once(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    run(lambda s: s.close(), db)  # create
    for _ in range(2):
        assert run(lambda s: s.schema_version(), db, create=False) == SCHEMA_VERSION
    con = sqlite3.connect(db)
    rows = con.execute("SELECT version, name FROM schema_migrations").fetchall()
    assert rows[:2] == [(1, "initial ledger"), (2, "one log tree and checkpoints")]
    assert rows == [(version, name) for version, name, _ in MIGRATIONS]
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_durable_commit_settings(tmp_path: Path) -> None:
    async def settings(store: SQLiteStore) -> tuple[str, int]:
        return await store._pragma("journal_mode"), await store._pragma("synchronous")

    assert run(settings, tmp_path / "l.db") == ("wal", 2)  # 2 = FULL: fsync every commit


def test_refuses_a_newer_schema_and_a_missing_or_foreign_file(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    run(lambda s: s.close(), db)
    con = sqlite3.connect(db)
    con.execute("INSERT INTO schema_migrations VALUES (99, 'future', 0)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer than this collector"):
        run(lambda s: s.close(), db, create=False)
    with pytest.raises(NotFoundError, match="ledger-collector init"):
        run(lambda s: s.close(), tmp_path / "missing.db", create=False)
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not a usable ledger"):
        run(lambda s: s.close(), tmp_path / "junk.db", create=False)


def _pg(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as con:
        cur = con.execute(sql)
        return list(cur.fetchall()) if cur.description else []


def test_postgres_migrations_are_recorded_and_applied_once(pg_url: str) -> None:
    run(lambda s: s.close(), pg_url)  # create
    for _ in range(2):
        assert run(lambda s: s.schema_version(), pg_url, create=False) == PG_SCHEMA_VERSION
    assert _pg(pg_url, "SELECT version, name FROM schema_migrations ORDER BY version") == [
        (1, "initial ledger, one log tree, checkpoints and the log head"),
        (2, "witness cosignatures; readings by device and time"),
        (3, "readings written once: leaf numbering in its own table, unsealed rows by xid; "
            "private readings' sealed values, grants and erasures"),
        (4, "collector statements indexed by type and key")]
    assert _pg(pg_url, "SELECT id, size, height FROM log_head") == [(1, 0, -1)]


def test_postgres_refuses_a_newer_schema_and_an_empty_or_foreign_database(
        pg_url: str, postgres_server: PostgresServer) -> None:
    empty = postgres_server.create_db()
    with pytest.raises(NotFoundError, match="ledger-collector init"):
        run(lambda s: s.close(), empty, create=False)
    _pg(empty, "CREATE TABLE something_else (x int)")
    with pytest.raises(NotFoundError, match="holds no ledger"):
        run(lambda s: s.close(), empty, create=False)
    assert _pg(empty, "SELECT to_regclass('readings') IS NULL") == [(True,)]  # never written
    run(lambda s: s.close(), pg_url)
    _pg(pg_url, "INSERT INTO schema_migrations VALUES (99, 'future', 0)")
    with pytest.raises(StoreError, match="newer than this collector"):
        run(lambda s: s.close(), pg_url, create=False)
    with pytest.raises(StoreError, match="cannot open ledger database"):
        asyncio.run(PostgresStore.open(postgres_server.url("no_such_db"), timeout=2))


def test_a_url_opens_postgres_and_a_path_sqlite(pg_url: str, tmp_path: Path) -> None:
    assert is_postgres_url(pg_url) and not is_postgres_url(str(tmp_path / "l.db"))

    async def kinds() -> tuple[str, str]:
        a = await open_store(pg_url, create=True)
        b = await open_store(str(tmp_path / "l.db"), create=True)
        try:
            return type(a).__name__, type(b).__name__
        finally:
            await a.close()
            await b.close()

    assert asyncio.run(kinds()) == ("PostgresStore", "SQLiteStore")


def test_a_batch_commits_whole_or_not_at_all(where: str) -> None:
    db = where
    state = DeviceState("s-01", 0, 1, b"h" * 32, 1, 0, 0, accepted=2)

    async def go(store: LedgerStore) -> None:
        await store.commit_batch(BatchWrite([reading(1), reading(2)],
                                            quarantine=[quarantined(b"x")], devices=[state]))
        with pytest.raises(StoreError):  # (s-01, seq 0) again violates uniqueness
            await store.commit_batch(BatchWrite([reading(3), ReadingRecord(
                4, "s-01", 0, 1, 0, 0, "water", b"other")], quarantine=[quarantined(b"y")]))
        assert await store.reading_count() == 2
        assert [e.record.raw for e in await store.quarantine_entries()] == [b"x"]
        assert (await store.device_states())["s-01"].accepted == 2
        assert await store.next_reading_id() == 3

    run(go, db)


def test_quarantine_counts_repeats_instead_of_storing_them_twice(where: str) -> None:
    async def go(store: LedgerStore) -> None:
        for _ in range(3):
            await store.commit_batch(BatchWrite(quarantine=[quarantined(b"same")]))
        await store.commit_batch(BatchWrite(quarantine=[quarantined(b"same", "oversized")]))
        entries = await store.quarantine_entries()
        assert [(e.record.reason, e.times_seen) for e in entries] == [("not_cbor", 3),
                                                                      ("oversized", 1)]
        assert await store.quarantine_counts() == {("s-01", "not_cbor"): 3,
                                                   ("s-01", "oversized"): 1}

    run(go, where)


def test_quarantine_listing_filters_and_limits(where: str) -> None:
    """Entries read back whole, by reason, by device (signed, else the topic's), any limit."""
    by_topic = quarantined(b"a")
    signed = QuarantineRecord(hashlib.sha256(b"b").digest(), "bad_signature", "bad", "t2",
                              "s-09", "s-02", 7, 1, b"b", 6)
    other = quarantined(b"c", "oversized")

    async def go(store: LedgerStore) -> None:
        await store.commit_batch(BatchWrite(quarantine=[by_topic, signed, other]))
        entries = await store.quarantine_entries()
        assert [e.record for e in entries] == [by_topic, signed, other]
        assert [(e.times_seen, e.last_ms) for e in entries] == [(1, 5), (1, 6), (1, 5)]
        assert [type(e.record.raw_sha256) for e in entries] == [bytes] * 3
        assert [e.id for e in entries] == sorted(e.id for e in entries)
        assert [e.record for e in await store.quarantine_entries(reason="oversized")] == [other]
        assert [e.record for e in await store.quarantine_entries(device_id="s-02")] == [signed]
        assert [e.record for e in await store.quarantine_entries(device_id="s-01")] == [
            by_topic, other]
        assert await store.quarantine_entries(device_id="s-09") == []
        assert [e.record for e in await store.quarantine_entries(
            reason="not_cbor", device_id="s-01")] == [by_topic]
        assert [e.record for e in await store.quarantine_entries(limit=2)] == [by_topic, signed]
        assert len(await store.quarantine_entries(limit=-1)) == 3
        assert await store.quarantine_entries(limit=0) == []
        assert await store.quarantine_counts() == {("s-01", "not_cbor"): 1,
                                                   ("s-02", "bad_signature"): 1,
                                                   ("s-01", "oversized"): 1}

    run(go, where)


def test_checkpoint_reads(where: str) -> None:
    """The checkpoint reads: latest, by size, the first covering a size, in chunks."""
    made = [CheckpointRecord(size, bytes([size]) * 32, f"note {size}".encode(), size // 3,
                             1000 + size) for size in (3, 6, 9)]

    async def go(store: LedgerStore) -> None:
        assert await store.checkpoint() is None and await store.checkpoints() == []
        for cp in made:
            await store.commit_checkpoint(cp)
        assert await store.checkpoint() == made[-1]
        assert await store.checkpoint(6) == made[1]
        assert await store.checkpoint(5) is None
        assert await store.checkpoint_at_least(4) == made[1]
        assert await store.checkpoint_at_least(3) == made[0]
        assert await store.checkpoint_at_least(10) is None
        assert await store.checkpoints() == made
        chunks = [chunk async for chunk in store.iter_checkpoints(chunk=2)]
        assert chunks == [made[:2], made[2:]]
        assert [type(cp.note) for cp in await store.checkpoints()] == [bytes] * 3

    run(go, where)


def test_registry_enrol_revoke_and_version(where: str) -> None:
    key, key2 = PrivateKey.generate().public, PrivateKey.generate().public

    async def go(store: LedgerStore) -> None:
        assert await store.registry_version() == 0
        await store.enrol("r-01", key, 100)
        with pytest.raises(RegistryError, match="already enrolled"):
            await store.enrol("r-02", key, 100)
        await store.enrol("r-01", key2, 200)  # a second key: rotation
        assert await store.registry_version() == 2
        revoked = await store.revoke("r-01", key.kid, 500, "lost")
        assert [k.kid for k in revoked] == [key.kid]
        keys = {k.kid: k for k in await store.device_keys()}
        assert (keys[key.kid].revoked_ms, keys[key2.kid].revoked_ms) == (500, None)
        assert await store.registry_version() == 3
        with pytest.raises(NotFoundError):
            await store.revoke("nobody", None, 1, None)
        with pytest.raises(NotFoundError, match=f"no enrolled key {key2.kid.hex()[:8]}"):
            await store.revoke("r-02", key2.kid, 1, None)
        # Revoking the whole device: a key revoked later moves to the earlier time; then a
        # later revocation changes nothing (both are revoked by then).
        revoked = await store.revoke("r-01", None, 300, "retired")
        assert sorted(k.kid for k in revoked) == sorted([key.kid, key2.kid])
        assert {k.revoked_ms for k in revoked} == {300}
        assert await store.revoke("r-01", None, 1000, "again") == []
        keys = {k.kid: k for k in await store.device_keys()}
        assert {(k.revoked_ms, k.revoke_reason) for k in keys.values()} == {(300, "retired")}

    run(go, where)


def test_sealed_blocks_chain_and_cover_readings_in_arrival_order(where: str) -> None:
    key = PrivateKey.generate()

    async def go(store: LedgerStore) -> None:
        await store.commit_batch(BatchWrite([reading(i) for i in range(1, 8)]))
        leaves = await store.pending_leaves()
        assert [leaf.reading_id for leaf in leaves] == list(range(1, 8))
        sealer = Sealer(key, None, leaves, size=3, age_ms=1000)
        assert sealer.is_due(now_ms=0)  # size reached
        heights = []
        while sealer.pending:
            block = sealer.seal(now_ms=50 - len(heights) * 10)  # a clock going backwards
            await store.commit_block(block)
            sealer.sealed(block)
            heights.append(block.height)
        assert heights == [0, 1, 2]
        blocks = await store.blocks()
        assert [(b.first_reading_id, b.leaf_count) for b in blocks] == [(1, 3), (4, 3), (7, 1)]
        prev = GENESIS_BLOCK_HASH
        sealed_times = []
        for b in blocks:
            header = SignedBlock.decode(b.header)
            header.verify(key.public)
            assert header.header.prev_hash == prev and header.hash == b.hash
            envs = await store.block_envelopes(b)
            assert header.header.merkle_root == root([RFC9162_SHA256.hash_leaf(e)
                                                      for e in envs])
            prev = b.hash
            sealed_times.append(header.header.sealed_at_ms)
        assert sealed_times == sorted(sealed_times)  # never backwards
        assert await store.pending_leaves() == []
        assert (await store.block_of_reading(5)).height == 1  # type: ignore[union-attr]
        assert await store.block_of_reading(8) is None

    run(go, where)


def test_the_age_rule_seals_a_partial_block() -> None:
    sealer = Sealer(PrivateKey.generate(), None,
                    [PendingLeaf(1, b"\0" * 32, 5, received_ms=1_000)], size=100, age_ms=500)
    assert sealer.due_ms() == 1_500
    assert not sealer.is_due(1_499) and sealer.is_due(1_500)


def test_a_snapshot_inside_a_snapshot_is_the_same_one(where: str) -> None:
    """The audit reads its ledger-wide pass beside its walk over the blocks, in one snapshot:
    a snapshot taken inside one (by the same task or a task it started) is that snapshot."""

    async def go(store: LedgerStore) -> None:
        await store.commit_batch(BatchWrite([reading(1)]))
        writer = await open_store(where, create=False)
        try:
            async with store.snapshot():
                assert await store.reading_count() == 1
                # (in a context of its own: a PostgreSQL store's snapshot is the context's)
                await asyncio.create_task(writer.commit_batch(BatchWrite([reading(2)])),
                                          context=contextvars.Context())

                async def beside() -> int:
                    async with store.snapshot():
                        return await store.reading_count()

                task = asyncio.create_task(beside())
                async with store.snapshot():
                    assert await store.reading_count() == 1
                assert await task == 1
                assert await store.reading_count() == 1  # still the outer snapshot
            async with store.snapshot():
                assert await store.reading_count() == 2
        finally:
            await writer.close()

    run(go, where)
