"""Issue 13, defect 2: junk must not grow the collector's memory.

Random 4,000-byte messages on one reading topic took a collector from 41 to 147 MB over 21,000
messages (~4.9 KB each, never returned). cbor2's C decoder leaked every error it raised for an
invalid UTF-8 text string, and with it the traceback, the frames and so the whole batch of
messages they held. This soak test feeds a real collector (verifying in its own process, so
all the decoding happens where we measure) through a real Mosquitto and bounds its resident
memory: a benchmark-style bound on the growth, not a timing test.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.collector import CollectorProcess, Ledger, Publisher
from tests.support.polling import wait_until

pytestmark = pytest.mark.slow

WARMUP = 4_000
SOAK = 20_000
SIZE = 4_000
# Measured after the fix: +2 to +13 MB over the 20,000 messages (SQLite's page cache and
# allocator warm-up, flat by the end); before it, about +95 MB.
BOUND_MB = 30


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def quarantined(ledger: Ledger) -> int:
    return int(ledger.sql("SELECT COALESCE(SUM(times_seen), 0) FROM quarantine")[0][0])


def test_resident_memory_stays_bounded_over_a_long_stream_of_junk(
        ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess],
        capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(13)
    topic = "sensorledger/v1/junk-01/reading"
    col = collector("--workers", "1").start()
    sent = 0

    def feed(n: int) -> None:
        nonlocal sent
        with Publisher(broker) as pub:
            pub.publish((topic, rng.randbytes(SIZE)) for _ in range(n))
        sent += n
        wait_until(lambda: quarantined(ledger) >= sent, 180, 0.2)

    feed(WARMUP)
    before = rss_mb(col.pid)
    figures = [before]
    for _ in range(4):
        feed(SOAK // 4)
        figures.append(rss_mb(col.pid))
    grown = figures[-1] - before
    with capsys.disabled():
        print(f"\njunk soak: {SOAK:,} random {SIZE:,}-byte messages after {WARMUP:,} warm-up: "
              f"collector RSS {' -> '.join(f'{f:.1f}' for f in figures)} MB "
              f"(+{grown:.1f} MB, {grown * 1024 / SOAK:.2f} KB a message; bound {BOUND_MB} MB)")
    assert col.proc is not None and col.proc.poll() is None, "the collector died"
    assert grown < BOUND_MB
    assert col.stop() == 0
    assert os.path.getsize(ledger.db) > 0
