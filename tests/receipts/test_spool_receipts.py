"""The spool in receipts mode: rows leave on receipts, not on PUBACK; refusals; bounds."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.clock import Clock
from agent.intake.sign_and_spool import sign_and_spool
from agent.signer import ChainSigner, Draft, Relay
from agent.spool import Spool, read_report
from agent.spool.schema import SCHEMA_VERSION
from provenance.envelope import sign_reading
from provenance.keys import PrivateKey
from provenance.reading import GENESIS_PREV, Reading
from provenance.receipt import Receipt, Refusal, SeqRange, SignedReceipt
from provenance.senml import Measurement
from tests.support.spools import close_spools, open_spool

KEY = PrivateKey.generate()
COLLECTOR = PrivateKey.generate()


@pytest.fixture(autouse=True)
async def _close_spools() -> AsyncIterator[None]:
    yield
    await close_spools()


def draft(n: int) -> Draft:
    return Draft("s", "counter", 1_790_000_000_000 + n, True, (Measurement(name="n", value=n),))


async def filled(path: Path, n: int, limit: int = 1000) -> tuple[Spool, ChainSigner]:
    spool = await open_spool(path, limit, "dev-r", "receipts")
    signer = ChainSigner("dev-r", KEY, spool.boot, spool.head, Clock("synced"))
    await sign_and_spool(spool, [draft(i) for i in range(n)], signer)
    return spool, signer


def receipt(**fields: object) -> SignedReceipt:
    base: dict[str, object] = {"device_id": "dev-r", "time_ms": 1, "tree_size": 100}
    return SignedReceipt.sign(Receipt(**{**base, **fields}), COLLECTOR)  # type: ignore[arg-type]


async def test_puback_keeps_rows_until_a_receipt_covers_them(tmp_path: Path) -> None:
    spool, _ = await filled(tmp_path / "s.sqlite", 10)
    rows = await spool.fetch(0, 100)
    spool.ack([r.pos for r in rows[:8]], 5_000)
    await spool.flush_acks()
    assert spool.depth == 10 and spool.awaiting == 8 and spool.unsent == 2
    # Acknowledged rows are not fetched again on the next connection...
    assert [r.seq for r in await spool.fetch(0, 100)] == [8, 9]
    # ...but come back once they are overdue.
    assert await spool.due(5_000, 100) == []
    assert [r.seq for r in await spool.due(5_001, 100)] == list(range(8))

    done = await spool.settle(receipt(sealed_through=4, sealed=(SeqRange(6, 6),)), 6_000)
    assert done.released == 6 and spool.depth == 4 and spool.awaiting == 2
    assert [r.seq for r in await spool.due(10_000, 100)] == [5, 7]
    report = read_report(tmp_path / "s.sqlite")
    assert report.sealed_through == 4 and report.awaiting_receipt == 2
    assert report.counters.sealed == 6
    # A receipt again (retained, redelivered) changes nothing; the mark never goes back.
    await spool.settle(receipt(sealed_through=2), 7_000)
    assert spool.depth == 4 and spool.sealed_through == 4
    # Nor does the tree size a receipt was made at: another collector's older receipt coming
    # after a newer one leaves the newer one as the last receipt.
    newer = receipt(sealed_through=4, tree_size=150)
    await spool.settle(newer, 8_000)
    await spool.settle(receipt(sealed_through=4, tree_size=120), 9_000)
    report = read_report(tmp_path / "s.sqlite")
    assert (report.receipt_tree, report.receipt_ms) == (150, 8_000)
    con = sqlite3.connect(tmp_path / "s.sqlite")
    try:
        assert con.execute("SELECT receipt FROM state").fetchone()[0] == newer.raw
    finally:
        con.close()


async def test_refusals_keep_what_may_pass_and_release_only_the_refused_bytes(
    tmp_path: Path,
) -> None:
    spool, _ = await filled(tmp_path / "s.sqlite", 6)
    rows = {r.seq: r for r in await spool.fetch(0, 100)}
    spool.ack(list(r.pos for r in rows.values()), 1_000)
    await spool.flush_acks()
    wrong = hashlib.sha256(b"other bytes").digest()
    right = hashlib.sha256(rows[5].envelope).digest()
    done = await spool.settle(receipt(refused=(
        Refusal(0, 3, "unknown_key"),
        Refusal(4, 4, "bad_signature", wrong),  # not our bytes: kept
        Refusal(5, 5, "chain_break", right),    # ours, final: released
    )), 2_000)
    assert (done.refused_kept, done.refused_final) == (4, 1)
    assert spool.depth == 5 and spool.counters.refused_final == 1
    report = read_report(tmp_path / "s.sqlite")
    assert report.held_refused == {"unknown_key": 4}
    assert report.refusals == {"bad_signature": 1, "chain_break": 1, "unknown_key": 4}
    # Kept rows are published again when overdue, and leave once sealed.
    assert [r.seq for r in await spool.due(1_001, 100)] == [0, 1, 2, 3, 4]
    await spool.settle(receipt(sealed_through=5), 3_000)
    assert spool.depth == 0 and spool.awaiting == 0


async def test_relayed_rows_leave_at_puback(tmp_path: Path) -> None:
    spool, signer = await filled(tmp_path / "s.sqlite", 2)
    sensor = PrivateKey.generate()
    relayed = sign_reading(Reading(device_id="sensor-9", seq=0, boot=1, time_ms=1_790_000_000,
                                   clock_synced=True, prev=GENESIS_PREV, kind="x",
                                   measurements=(Measurement(name="n", value=1),)), sensor)
    await sign_and_spool(spool, [Relay("relay", "sensor-9", 0, relayed)], signer)
    rows = await spool.fetch(0, 100)
    assert [r.device_id for r in rows] == ["dev-r", "dev-r", "sensor-9"]
    spool.ack([r.pos for r in rows], 1_000)
    await spool.flush_acks()
    assert spool.depth == 2 and spool.awaiting == 2


async def test_overflow_still_bounds_a_spool_that_waits_for_receipts(tmp_path: Path) -> None:
    spool, signer = await filled(tmp_path / "s.sqlite", 10, limit=10)
    rows = await spool.fetch(0, 100)
    spool.ack([r.pos for r in rows], 1_000)
    await spool.flush_acks()
    assert spool.awaiting == 10
    # No receipt comes; the sensors go on: the oldest (acknowledged) readings make room.
    await sign_and_spool(spool, [draft(i) for i in range(10, 15)], signer)
    assert spool.depth == 10 and spool.awaiting == 5 and spool.gap == (0, 4)
    spool.ack([r.pos for r in await spool.fetch(0, 100)], 2_000)
    await spool.flush_acks()
    # The next reading finds room after a receipt and closes the episode with a gap record.
    await spool.settle(receipt(sealed_through=9), 3_000)
    await sign_and_spool(spool, [draft(15)], signer)
    assert spool.gap is None and spool.counters.gap_records == 1
    assert spool.depth <= 10


async def test_a_version_1_spool_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), device_id TEXT NOT NULL,
            boot INTEGER NOT NULL, next_seq INTEGER NOT NULL, head BLOB NOT NULL,
            gap_first INTEGER, gap_last INTEGER, signed INTEGER NOT NULL DEFAULT 0,
            relayed INTEGER NOT NULL DEFAULT 0, published INTEGER NOT NULL DEFAULT 0,
            dropped INTEGER NOT NULL DEFAULT 0, dropped_relayed INTEGER NOT NULL DEFAULT 0,
            gap_records INTEGER NOT NULL DEFAULT 0, last_puback_ms INTEGER);
        CREATE TABLE spool (pos INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL,
            seq INTEGER NOT NULL, is_gap INTEGER NOT NULL DEFAULT 0,
            relayed INTEGER NOT NULL DEFAULT 0, envelope BLOB NOT NULL);
        PRAGMA user_version = 1;
    """)
    con.execute("INSERT INTO state (id, device_id, boot, next_seq, head) VALUES (1, 'dev-r', 3, "
                "7, ?)", (bytes(32),))
    con.execute("INSERT INTO spool (device_id, seq, envelope) VALUES ('dev-r', 6, x'00')")
    con.commit()
    con.close()
    spool = await open_spool(path, 100, "dev-r", "receipts")
    assert spool.boot == 4 and spool.depth == 1 and spool.awaiting == 0
    assert [r.seq for r in await spool.fetch(0, 10)] == [6]
    await spool.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
