"""A device's complete history in one file, checked offline: a 100,000-reading history verifies,
and each way of hiding a reading is caught (a dropped reading, a dropped gap record, a
reordered pair, a reading of another device)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from collector.ledger.logkeys import load_tree_log
from collector.ledger.records import BatchWrite, ReadingRecord
from collector.ledger.sealer import Sealer
from collector.ledger.sqlite_store import SQLiteStore
from provenance.envelope import Envelope
from provenance.history import HistoryFile, verify_history
from provenance.keys import PrivateKey
from provenance.trust import parse_policy
from tests.support.collector import Device, Ledger, run_cli


def _fill(ledger: Ledger, envelopes: list[bytes], devices: list[Device]) -> None:
    """Store and seal ``envelopes`` in this order, as the collector would (format 2 blocks)."""

    async def go() -> None:
        store = await SQLiteStore.open(ledger.db)
        try:
            for d in devices:
                await store.enrol(d.device_id, d.key.public, 0)
            now = time.time_ns() // 1_000_000
            rows = []
            for i, env in enumerate(envelopes, 1):
                r = Envelope.decode(env).reading()
                rows.append(ReadingRecord(i, r.device_id, r.seq, r.boot, r.time_ms, now,
                                          r.kind, env))
            for start in range(0, len(rows), 20_000):
                await store.commit_batch(BatchWrite(rows[start:start + 20_000]))
            key = PrivateKey.from_pem(Path(ledger.key).read_bytes())
            sealer = Sealer(key, None, await store.pending_leaves(), size=1000, age_ms=1,
                            log=await load_tree_log(store, key, ledger.key))
            while sealer.pending:
                block = sealer.seal(now)
                await store.commit_block(block)
                sealer.sealed(block)
        finally:
            await store.close()

    asyncio.run(go())


@pytest.fixture
def two_devices(tmp_path: Path) -> tuple[Ledger, Device, Device]:
    ledger = Ledger(tmp_path / "ledger").init()
    a, b = Device("ess-rack-1"), Device("ess-rack-2")
    envelopes = []
    for i in range(300):
        if i == 100:
            for _ in range(20):  # spool full: the device drops seqs 100..119 ...
                a.next()
            envelopes.append(a.gap_record(100, 119))  # ... and says so, signed (seq 120)
        elif i == 200:
            a.boot += 1
            envelopes.append(a.next())
        else:
            envelopes.append(a.next())
        envelopes.append(b.next())
    _fill(ledger, envelopes, [a, b])
    return ledger, a, b


def _history(ledger: Ledger, device: str, tmp_path: Path, *args: str) -> Path:
    out = tmp_path / f"{device}.history"
    made = run_cli("history", "--db", ledger.db, device, *args, "-o", str(out))
    assert made.exit_code == 0, made.output
    return out


def test_a_history_verifies_and_says_what_it_shows(two_devices: tuple[Ledger, Device, Device],
                                                   tmp_path: Path) -> None:
    ledger, a, _ = two_devices
    path = _history(ledger, "ess-rack-1", tmp_path)
    result = run_cli("verify-history", str(path), "--policy", ledger.vkey)
    assert result.exit_code == 0, result.output
    assert ("device ess-rack-1: 300 readings" in result.output
            and "complete except 1 signed gap(s) (20 readings dropped by the device), "
                "1 boot(s)" in result.output)
    assert result.output.rstrip().endswith("history VERIFIED")
    hf = HistoryFile.decode(path.read_bytes())
    assert (hf.first_seq, hf.last_seq, len(hf.entries)) == (0, a.seq - 1, 300)
    part = _history(ledger, "ess-rack-1", tmp_path, "--from", "150", "--to", "249")
    assert run_cli("verify-history", str(part), "--policy", ledger.vkey).exit_code == 0


def _tampered(path: Path, change: str, other: Path) -> bytes:
    hf = HistoryFile.decode(path.read_bytes())
    entries = list(hf.entries)
    if change == "dropped reading":
        del entries[50]
    elif change == "dropped gap record":
        del entries[100]  # the gap record, seq 120
    elif change == "reordered pair":
        entries[10], entries[11] = entries[11], entries[10]
    elif change == "reading of another device":
        entries[30] = HistoryFile.decode(other.read_bytes()).entries[30]
    elif change == "dropped last reading":
        del entries[-1]
    return HistoryFile(hf.device_public_key, hf.checkpoint, hf.first_seq, hf.last_seq,
                       tuple(entries)).encode()


@pytest.mark.parametrize("change,failed", [
    ("dropped reading", "complete sequence"),
    ("dropped gap record", "complete sequence"),
    ("reordered pair", "complete sequence"),
    ("reading of another device", "device signatures"),
    ("dropped last reading", "complete sequence"),
])
def test_every_way_of_hiding_a_reading_is_caught(two_devices: tuple[Ledger, Device, Device],
                                                 tmp_path: Path, change: str,
                                                 failed: str) -> None:
    ledger, _, _ = two_devices
    path = _history(ledger, "ess-rack-1", tmp_path)
    other = _history(ledger, "ess-rack-2", tmp_path)
    report = verify_history(_tampered(path, change, other),
                            parse_policy(Path(ledger.vkey).read_text()))
    assert not report.ok
    assert [c.name for c in report.checks if not c.ok] == [failed], report.render()


def test_a_100000_reading_history_verifies_offline(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger").init()
    device = Device("ess-rack-9")
    _fill(ledger, [device.next(time_ms=1_767_225_600_000 + i * 1000) for i in range(100_000)],
          [device])
    started = time.monotonic()
    path = _history(ledger, "ess-rack-9", tmp_path)
    built = time.monotonic() - started
    away = tmp_path / "away"
    away.mkdir()
    (away / "h").write_bytes(path.read_bytes())
    Path(ledger.db).rename(tmp_path / "gone.db")  # offline: no ledger
    started = time.monotonic()
    report = verify_history((away / "h").read_bytes(), parse_policy(Path(ledger.vkey).read_text()))
    checked = time.monotonic() - started
    assert report.ok, report.render()
    assert report.summary == ("device ess-rack-9: 100,000 readings 2026-01-01..2026-01-02, "
                              "complete, 0 boot(s)")
    print(f"100,000-reading history: {path.stat().st_size:,} bytes, built in {built:.1f} s, "
          f"verified in {checked:.1f} s")
