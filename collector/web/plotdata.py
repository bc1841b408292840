"""What a device page plots: which measurements, for a kind of device, and their min/max
buckets over a time range, from the ledger itself for short ranges and from the series cache
for long ones.

Panels per kind follow what each kind's users look at (a water probe's pH, turbidity, free
chlorine and temperature; a battery's state of charge, pack current and cell voltage range; an
oximeter's SpO2 and pulse; an arc monitor's currents, with its events as marks); a kind with no
profile gets a panel per measurement, the first few.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from collector.ledger.records import ReadingRecord
from collector.web.series import Bucket, Mark, SeriesCache, decode_values
from collector.web.viewstore import ViewStore

__all__ = ["MAX_BUCKETS", "RAW_LIMIT", "Panel", "PlotData", "load_plot", "panels_for"]

#: A range holding at most this many readings is read and decoded from the ledger directly
#: (exact, and about 0.1 s per thousand readings); a longer one from the plot cache.
RAW_LIMIT = 4_000
#: Buckets across a plot (about one per two pixels of a 1,200-pixel wide panel).
MAX_BUCKETS = 600
MAX_PANELS = 6
MAX_MARKS = 500

# kind -> panels: (title, measurement names drawn together)
PROFILES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "water-quality": [("pH", ("ph",)), ("Turbidity", ("turbidity",)),
                      ("Free chlorine", ("free_chlorine", "chlorine")),
                      ("Temperature", ("temperature",))],
    "battery": [("State of charge", ("state_of_charge",)), ("Pack current", ("pack_current",)),
                ("Cell voltage min / max", ("cell_voltage_min", "cell_voltage_max"))],
    "pulse-oximeter": [("SpO2", ("spo2",)), ("Pulse rate", ("pulse_rate",))],
    "arc-detector": [("Total current", ("total_current",)), ("Bus voltage", ("bus_voltage",)),
                     ("Residual current", ("residual_current",))],
}


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    names: tuple[str, ...]
    units: tuple[str | None, ...]


@dataclass(slots=True)
class PlotData:
    since_ms: int
    until_ms: int
    width_ms: int
    readings: int
    source: str  # "ledger" or "cache"
    series: dict[str, list[Bucket]] = field(default_factory=dict)
    marks: list[Mark] = field(default_factory=list)
    marks_total: int = 0

    @property
    def gap_ms(self) -> int:
        """Consecutive buckets further apart than this are drawn with a gap between them."""
        span = max(1, self.until_ms - self.since_ms)
        typical = span / max(1, self.readings)
        return int(max(2.5 * self.width_ms, 3 * typical))


def panels_for(kind: str | None, series: list[tuple[str, str | None]],
               only: str | None = None) -> list[Panel]:
    """The panels to draw for a device of ``kind`` with ``series`` (name, unit) in the cache;
    ``only`` picks one measurement."""
    units = dict(series)
    if only is not None:
        return [Panel(only, (only,), (units.get(only),))] if only in units else []
    panels = []
    for title, names in PROFILES.get(kind or "", []):
        present = tuple(n for n in names if n in units)
        if present:
            panels.append(Panel(title, present, tuple(units[n] for n in present)))
    if not panels:
        panels = [Panel(name, (name,), (unit,)) for name, unit in series[:MAX_PANELS]]
    return panels


async def load_plot(store: ViewStore, cache: SeriesCache, device_id: str, names: list[str],
                    since_ms: int, until_ms: int) -> PlotData:
    count = await store.device_reading_count(device_id, since_ms, until_ms)
    width = max(1, -(-(until_ms - since_ms) // MAX_BUCKETS))
    if count <= RAW_LIMIT:
        data = PlotData(since_ms, until_ms, width, count, "ledger")
        rows = []
        after: tuple[int, int] | None = None
        while True:
            page = await store.device_readings(device_id, since_ms, until_ms, after=after,
                                               limit=5000)
            rows += page
            if len(page) < 5000:
                break
            after = (page[-1].time_ms, page[-1].seq)
        data.series, marks = await asyncio.to_thread(_bucket_rows, rows, set(names), since_ms,
                                                     width)
        data.marks_total = len(marks)
        data.marks = marks[:MAX_MARKS]
        if count <= MAX_BUCKETS:  # every reading is its own point
            data.width_ms = max(1, (until_ms - since_ms) // max(1, count))
        return data
    used, series = await asyncio.to_thread(cache.buckets, device_id, names, since_ms, until_ms,
                                           width)
    marks, total = await asyncio.to_thread(cache.marks, device_id, since_ms, until_ms, MAX_MARKS)
    return PlotData(since_ms, until_ms, used, count, "cache", series, marks, total)


def _bucket_rows(rows: list[ReadingRecord], names: set[str], since_ms: int,
                 width: int) -> tuple[dict[str, list[Bucket]], list[Mark]]:
    cells: dict[str, dict[int, list[float]]] = {n: {} for n in names}
    marks: list[Mark] = []
    for r in rows:
        time_ms, values, mark = decode_values(r.envelope)
        if mark is not None:
            marks.append(Mark(time_ms, r.seq, mark))
        for name, _unit, t, v in values:
            per = cells.get(name)
            if per is None:
                continue
            b = (t - since_ms) // width
            cell = per.get(b)
            if cell is None:
                per[b] = [v, v, 1]
            else:
                cell[0] = min(cell[0], v)
                cell[1] = max(cell[1], v)
                cell[2] += 1
    out = {name: [Bucket(since_ms + b * width, c[0], c[1], int(c[2]))
                  for b, c in sorted(per.items())] for name, per in cells.items() if per}
    return out, marks
