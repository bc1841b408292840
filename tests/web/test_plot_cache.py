"""The plot cache against the ledger: the min/max buckets a long range reads from the cache are
the ones the short-range path computes from the envelopes themselves, the events are the same
marks, and a cache found beside another ledger starts over."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from collector.web import plotdata
from collector.web.plotdata import PlotData, load_plot
from collector.web.series import LEVELS_MS, SeriesCache
from collector.web.viewstore import ReadOnlySQLiteStore
from tests.web.fleet import Fleet

HOUR = 3_600_000


def _filled_cache(fleet: Fleet, path: Path) -> SeriesCache:
    async def go() -> None:
        store = await ReadOnlySQLiteStore.open_readonly(fleet.ledger.db)
        try:
            first = await store.reading_by_id(1)
            assert first is not None
            cache.bind(first.envelope, await store.next_reading_id() - 1)
            async for chunk in store.iter_readings(1, chunk=97):  # chunks split buckets
                cache.add(chunk)
        finally:
            await store.close()

    cache = SeriesCache(path)
    asyncio.run(go())
    return cache


def _plot(fleet: Fleet, cache: SeriesCache, device: str, names: list[str], since: int,
          until: int) -> PlotData:
    async def go() -> PlotData:
        store = await ReadOnlySQLiteStore.open_readonly(fleet.ledger.db)
        try:
            return await load_plot(store, cache, device, names, since, until)
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.mark.parametrize(("device", "names"), [
    ("water-01", ["ph", "temperature"]),
    ("bms-01", ["cell_voltage_min", "cell_voltage_max", "pack_current"]),
    ("arc-01", ["total_current"]),
])
@pytest.mark.parametrize("level", [0, 1])
def test_cache_buckets_equal_the_ledgers(fleet: Fleet, tmp_path: Path, device: str,
                                         names: list[str], level: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _filled_cache(fleet, tmp_path / "cache.sqlite")
    # Every reading id folded in: the devices' readings and the collector's statements.
    assert cache.upto == fleet.ledger.sql("SELECT MAX(id) FROM readings")[0][0]
    since = fleet.first_ms - fleet.first_ms % HOUR  # aligned to every level
    width = LEVELS_MS[level]
    until = since + width * plotdata.MAX_BUCKETS  # so the plot's bucket is the level's width
    from_ledger = _plot(fleet, cache, device, names, since, until)
    assert from_ledger.source == "ledger"
    monkeypatch.setattr(plotdata, "RAW_LIMIT", 10)
    from_cache = _plot(fleet, cache, device, names, since, until)
    assert from_cache.source == "cache" and from_cache.width_ms == width
    assert from_cache.readings == from_ledger.readings == fleet.counts[device]
    for name in names:
        assert from_cache.series[name] == from_ledger.series[name], name
        assert sum(b.n for b in from_cache.series[name]) > 100
    assert from_cache.marks == from_ledger.marks
    if device == "arc-01":
        assert len(from_cache.marks) == 4
    cache.close()


def test_a_cache_of_another_ledger_starts_over(fleet: Fleet, tmp_path: Path) -> None:
    cache = _filled_cache(fleet, tmp_path / "cache.sqlite")
    assert cache.series_of("water-01")
    cache.bind(b"another ledger's first envelope", 10**9)
    assert cache.upto == 0 and cache.series_of("water-01") == []
    cache.close()
    cache = _filled_cache(fleet, tmp_path / "cache.sqlite")
    cache.bind(None, 5)  # the ledger is shorter than the cache: not the one it was built on
    assert cache.upto == 0
    cache.close()
