"""The spool contract: sign and spool together, resume after a crash, bounded with gap records."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.clock import Clock
from agent.errors import SpoolError, SpoolLockedError, SpoolMismatchError
from agent.intake.sign_and_spool import sign_and_spool
from agent.outbox.interface import Row
from agent.signer import ChainSigner, Draft, Relay
from agent.spool import Spool, read_report
from agent.spool.store import BatchTotals
from provenance.envelope import Envelope
from provenance.keys import PrivateKey
from provenance.reading import GENESIS_PREV, Reading
from provenance.senml import Measurement
from tests.support.signed import SignedReading
from tests.support.spools import close_spools, open_spool

KEY = PrivateKey.generate()


@pytest.fixture(autouse=True)
async def _close_spools() -> AsyncIterator[None]:
    yield
    await close_spools()


def draft(n: int) -> Draft:
    return Draft("s", "counter", 1_790_000_000_000 + n, True, (Measurement(name="n", value=n),))


def signer_for(spool: Spool) -> ChainSigner:
    return ChainSigner(spool.device_id, KEY, spool.boot, spool.head, Clock("synced"))


async def ack(spool: Spool, positions: list[int], now_ms: int) -> None:
    """Acknowledge and make the deletes durable now (normally batched in the background)."""
    spool.ack(positions, now_ms)
    await spool.flush_acks()


def readings(rows: list[Row]) -> list[Reading]:
    return [SignedReading.open(r.envelope, KEY.public).reading for r in rows]


async def test_readings_are_signed_in_chain_order_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = await open_spool(path)
    signer = signer_for(spool)
    assert spool.boot == 1 and spool.head.next_seq == 0
    await sign_and_spool(spool, [draft(i) for i in range(3)], signer)
    await sign_and_spool(spool, [draft(3)], signer)
    rows = await spool.fetch(0, 100)
    got = readings(rows)
    assert [r.seq for r in got] == [0, 1, 2, 3]
    assert got[0].prev == GENESIS_PREV
    for before, after in zip(rows, got[1:], strict=False):
        assert after.prev == hashlib.sha256(before.envelope).digest()
    assert {r.boot for r in got} == {1}
    head = spool.head
    await spool.close()

    # A restart resumes the committed head: the next reading chains onto the last one.
    spool = await open_spool(path)
    assert spool.boot == 2 and spool.head == head and spool.depth == 4
    signer = signer_for(spool)
    await sign_and_spool(spool, [draft(4)], signer)
    rows = await spool.fetch(0, 100)
    last = readings(rows)[-1]
    assert (last.seq, last.boot) == (4, 2)
    assert last.prev == hashlib.sha256(rows[-2].envelope).digest()
    await spool.close()


async def test_ack_removes_only_what_was_acknowledged(tmp_path: Path) -> None:
    spool = await open_spool(tmp_path / "spool.sqlite")
    await sign_and_spool(spool, [draft(i) for i in range(5)], signer_for(spool))
    rows = await spool.fetch(0, 100)
    await ack(spool, [rows[0].pos, rows[1].pos], now_ms=123)
    assert [r.seq for r in await spool.fetch(0, 100)] == [2, 3, 4]
    assert spool.depth == 3 and spool.counters.published == 2
    assert spool.counters.last_puback_ms == 123
    assert [r.seq for r in await spool.fetch(rows[2].pos, 100)] == [3, 4]
    await ack(spool, [rows[0].pos], now_ms=124)  # already gone: a no-op for the depth
    assert spool.depth == 3
    await spool.close()


async def test_a_full_spool_drops_the_oldest_and_signs_one_gap_record_per_episode(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spool.sqlite"
    spool = await open_spool(path, limit=3)
    signer = signer_for(spool)
    for i in range(10):  # one at a time, as a 1 Hz sensor would
        await sign_and_spool(spool, [draft(i)], signer)
    rows = await spool.fetch(0, 100)
    assert [r.seq for r in rows] == [7, 8, 9]  # the newest three are kept
    assert spool.gap == (0, 6)  # the episode is open: no gap record yet
    assert spool.counters.dropped == 7 and spool.counters.gap_records == 0
    report = read_report(path)
    assert report.open_gap == (0, 6) and report.depth == 3

    # The publisher makes room; the next reading closes the episode with ONE gap record.
    await ack(spool, [rows[0].pos, rows[1].pos], now_ms=1)
    await sign_and_spool(spool, [draft(10)], signer)
    got = readings(await spool.fetch(0, 100))
    assert [(r.seq, r.kind) for r in got] == [(9, "counter"), (10, "gap"), (11, "counter")]
    gap = got[1]
    assert gap.gap is not None and (gap.gap.first, gap.gap.last) == (0, 6)
    assert spool.gap is None and spool.counters.gap_records == 1

    # Everything is delivered; a second overflow is a second episode with its own record.
    await ack(spool, [r.pos for r in await spool.fetch(0, 100)], now_ms=2)
    for i in range(11, 18):
        await sign_and_spool(spool, [draft(i)], signer)  # seqs 12..18
    assert [r.seq for r in await spool.fetch(0, 100)] == [16, 17, 18]
    assert spool.gap == (12, 15)
    rows = await spool.fetch(0, 100)
    await ack(spool, [rows[0].pos], now_ms=3)
    await sign_and_spool(spool, [draft(18)], signer)
    got = readings(await spool.fetch(0, 100))
    assert [(r.seq, r.kind) for r in got] == [(17, "counter"), (18, "counter"), (19, "gap"),
                                              (20, "counter")]
    assert got[2].gap is not None and (got[2].gap.first, got[2].gap.last) == (12, 15)
    assert spool.counters.gap_records == 2 and spool.counters.dropped == 11
    await spool.close()


async def test_an_open_episode_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = await open_spool(path, limit=2)
    signer = signer_for(spool)
    for i in range(5):
        await sign_and_spool(spool, [draft(i)], signer)
    assert spool.gap == (0, 2)
    await spool.close()
    spool = await open_spool(path, limit=2)
    assert spool.gap == (0, 2)
    signer = signer_for(spool)
    await sign_and_spool(spool, [draft(5)], signer)  # still full: the episode grows
    assert spool.gap == (0, 3)
    rows = await spool.fetch(0, 10)
    await ack(spool, [rows[0].pos], now_ms=1)
    await sign_and_spool(spool, [draft(6)], signer)
    got = readings(await spool.fetch(0, 10))
    gaps = [(r.gap.first, r.gap.last) for r in got if r.gap is not None]
    assert gaps == [(0, 3)]
    await spool.close()


async def test_a_non_contiguous_drop_closes_the_episode_first(tmp_path: Path) -> None:
    spool = await open_spool(tmp_path / "spool.sqlite", limit=3)
    signer = signer_for(spool)
    for i in range(3):
        await sign_and_spool(spool, [draft(i)], signer)  # 0 1 2
    await sign_and_spool(spool, [draft(3)], signer)  # drops 0: episode (0, 0)
    rows = await spool.fetch(0, 10)
    await ack(spool, [rows[0].pos], now_ms=1)  # 1 published: room
    await sign_and_spool(spool, [draft(4)], signer)  # gap record 4 (0..0), reading 5
    # spool: 2 3 G4 5. Now drop 2, 3, then 5: 4 is a retained gap record in between.
    # seqs 6 7 8 and a gap record
    await sign_and_spool(spool, [draft(i) for i in range(6, 9)], signer)
    got = readings(await spool.fetch(0, 20))
    gaps = sorted((r.gap.first, r.gap.last) for r in got if r.gap is not None)
    assert gaps == [(0, 0), (2, 3)]  # closed before dropping 5
    assert spool.gap == (5, 5)
    await spool.close()


async def test_a_batch_larger_than_the_spool_drops_its_own_oldest(tmp_path: Path) -> None:
    spool = await open_spool(tmp_path / "spool.sqlite", limit=2)
    await sign_and_spool(spool, [draft(i) for i in range(5)], signer_for(spool))
    assert [r.seq for r in await spool.fetch(0, 10)] == [3, 4]
    assert spool.gap == (0, 2) and spool.counters.dropped == 3
    await spool.close()


async def test_relayed_envelopes_are_kept_byte_for_byte_and_their_drops_counted(
    tmp_path: Path,
) -> None:
    spool = await open_spool(tmp_path / "spool.sqlite", limit=2)
    signer = signer_for(spool)
    sensor_key = PrivateKey.generate()
    from provenance.envelope import sign_reading

    foreign = sign_reading(Reading("probe-9", 41, 1, 1, True, GENESIS_PREV, "water-quality"),
                           sensor_key)
    await sign_and_spool(spool, [Relay("s", "probe-9", 41, foreign)], signer)
    rows = await spool.fetch(0, 10)
    assert rows[0].envelope == foreign and rows[0].device_id == "probe-9"
    assert Envelope.decode(rows[0].envelope).reading().seq == 41
    await sign_and_spool(spool, [draft(0), draft(1)], signer)  # pushes the relayed one out
    assert spool.counters.dropped_relayed == 1 and spool.counters.dropped == 0
    assert spool.gap is None  # another device's chain: this device cannot sign for it
    await spool.close()


async def test_one_writer_per_spool_and_one_device_per_spool(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = await open_spool(path)
    with pytest.raises(SpoolLockedError, match="in use by another sensor-agent"):
        await open_spool(path)
    await spool.close()
    with pytest.raises(SpoolMismatchError, match="belongs to device 'dev-1'"):
        await open_spool(path, device="dev-2")
    reopened = await open_spool(path)  # the failed attempts left the lock free
    await reopened.close()


async def test_a_corrupt_spool_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(SpoolError, match="unusable"):
        await open_spool(path)


async def test_the_spool_is_durable_sqlite_wal_with_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = await open_spool(path)
    await sign_and_spool(spool, [draft(0)], signer_for(spool))
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # Another connection sees the committed reading and the head beside it.
    assert db.execute("SELECT next_seq FROM state").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM spool").fetchone()[0] == 1
    db.close()
    await spool.close()


class _Abandoned(Exception):
    """Raised inside a write transaction to roll it back."""


async def test_the_publisher_never_sees_a_reading_before_its_commit(tmp_path: Path) -> None:
    # A reading published and then lost with its transaction (the agent killed before the
    # commit) is signed again at the next start, other bytes under the same seq: a reuse.
    spool = await open_spool(tmp_path / "spool.sqlite")
    signer = signer_for(spool)
    fetch: asyncio.Task[list[Row]] | None = None
    with pytest.raises(_Abandoned):
        async with spool.transaction() as txn:
            entry, head = signer.sign(draft(0), signer.head)
            await txn.write([entry], delete=[], head=head, gap=None, depth=1,
                            totals=BatchTotals(signed=1))
            # The publisher asks now, its query queued ahead of the rollback below.
            fetch = asyncio.create_task(spool.fetch(0, 100))
            for _ in range(5):
                await asyncio.sleep(0)
            raise _Abandoned
    assert fetch is not None
    assert await fetch == [], "a row of a transaction that never committed was published"
    assert spool.head.next_seq == 0
    await sign_and_spool(spool, [draft(1)], signer)
    assert [r.seq for r in await spool.fetch(0, 100)] == [0]


# Every sequence of records and acks keeps the promise: each seq this device signed is
# either still spooled, acknowledged, or named by exactly one gap record; the spool never
# holds more readings than its limit; and the chain of everything kept verifies.
operations = st.lists(
    st.one_of(st.tuples(st.just("record"), st.integers(1, 7)),
              st.tuples(st.just("ack"), st.integers(1, 5))),
    min_size=1, max_size=40,
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(1, 6), ops=operations)
def test_spool_invariants_hold_for_any_interleaving(
    tmp_path_factory: pytest.TempPathFactory, limit: int, ops: list[tuple[str, int]]
) -> None:
    asyncio.run(_check_invariants(tmp_path_factory.mktemp("spool") / "s.sqlite", limit, ops))


async def _check_invariants(path: Path, limit: int, ops: list[tuple[str, int]]) -> None:
    spool = await Spool.open(path, "dev-1", limit)
    try:
        await _exercise(spool, limit, ops)
    finally:
        await spool.close()


async def _exercise(spool: Spool, limit: int, ops: list[tuple[str, int]]) -> None:
    signer = signer_for(spool)
    acked: set[int] = set()
    envelopes: dict[int, bytes] = {}
    n = 0
    for op, count in ops:
        if op == "record":
            await sign_and_spool(spool, [draft(n + i) for i in range(count)], signer)
            n += count
        else:
            rows = await spool.fetch(0, count)
            # Half the time leave the deletes to the next record() transaction.
            spool.ack([r.pos for r in rows], now_ms=1)
            if count % 2:
                await spool.flush_acks()
            for r in rows:
                acked.add(r.seq)
                envelopes[r.seq] = r.envelope
        assert spool.depth <= limit
    rows = await spool.fetch(0, 10_000)
    for r in rows:
        envelopes[r.seq] = r.envelope
    kept = {r.seq for r in rows}
    signed = set(range(spool.head.next_seq))
    gap_records = [SignedReading.open(e, KEY.public).reading for e in envelopes.values()]
    ranges = [(g.gap.first, g.gap.last) for g in gap_records if g.gap is not None]
    named: list[int] = [s for first, last in ranges for s in range(first, last + 1)]
    assert len(named) == len(set(named)), "a seq is named by two gap records"
    if spool.gap is not None:
        named += list(range(spool.gap[0], spool.gap[1] + 1))  # the open episode
    assert signed == kept | acked | set(named)
    assert not (kept & set(named)), "a kept reading is also reported dropped"
    assert spool.counters.dropped == len(named)
    # The chain verifies across everything that left or stayed, skipping only named gaps.
    for seq in sorted(envelopes):
        reading = SignedReading.open(envelopes[seq], KEY.public).reading
        if seq - 1 in envelopes:
            assert reading.prev == hashlib.sha256(envelopes[seq - 1]).digest()
        elif seq > 0:
            assert seq - 1 in named


async def test_a_lowered_limit_is_enforced_at_the_next_reading(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    spool = await open_spool(path, limit=10)
    await sign_and_spool(spool, [draft(i) for i in range(10)], signer_for(spool))
    await spool.close()
    spool = await open_spool(path, limit=4)
    await sign_and_spool(spool, [draft(10)], signer_for(spool))
    assert [r.seq for r in await spool.fetch(0, 100)] == [7, 8, 9, 10]
    assert spool.depth == 4 and spool.gap == (0, 6)
