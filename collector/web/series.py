"""The view's cache of plot series: each device's numeric measurements folded into min/max
buckets at three resolutions, and its events as marks.

Measurement values live only inside the signed envelopes, so plotting a long range would mean
decoding every envelope in it. The cache decodes each reading once, as the ledger grows, and
keeps per (device, measurement, level, bucket) the minimum, maximum and count: a plot over a
million readings then reads a few thousand rows. It is a separate SQLite file the view owns
(the ledger stays read-only), derived data that can be deleted at any time and holds no
evidence: reading pages and proofs always come from the ledger itself.
"""

from __future__ import annotations

import math
import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

from collector.ledger.records import ReadingRecord
from provenance.wire import PayloadLabel as L

__all__ = [
    "LEVELS_MS",
    "Bucket",
    "Mark",
    "SeriesCache",
    "decode_values",
]

#: Bucket widths of the three resolutions, in milliseconds.
LEVELS_MS = (10_000, 300_000, 3_600_000)
#: At most this many series per device are kept (a device sending more names keeps its first).
MAX_SERIES_PER_DEVICE = 32
_CELL = re.compile(r"cell_voltage_\d+")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, name TEXT NOT NULL, unit TEXT,
    UNIQUE (device_id, name));
CREATE TABLE IF NOT EXISTS rollup (
    series_id INTEGER NOT NULL, level INTEGER NOT NULL, bucket INTEGER NOT NULL,
    vmin REAL NOT NULL, vmax REAL NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (series_id, level, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS marks (
    device_id TEXT NOT NULL, time_ms INTEGER NOT NULL, seq INTEGER NOT NULL,
    text TEXT NOT NULL, PRIMARY KEY (device_id, time_ms, seq)) WITHOUT ROWID;
"""
_CACHE_FORMAT = "1"


@dataclass(frozen=True, slots=True)
class Bucket:
    start_ms: int
    vmin: float
    vmax: float
    n: int


@dataclass(frozen=True, slots=True)
class Mark:
    time_ms: int
    seq: int
    text: str


Value = tuple[str, str | None, int, float]  # name, unit, time (ms), value


def decode_values(envelope: bytes) -> tuple[int, list[Value], str | None]:
    """A sealed envelope's device time, numeric measurements (with each one's own time, and
    derived ``cell_voltage_min``/``_max`` over a battery's cells) and its mark text (an event
    or a gap record), or None. The envelope was verified on admission; this only reads it."""
    body: Any = cbor2.loads(cbor2.loads(envelope).value[2])
    time_ms = int(body[L.TIME])
    values: list[Value] = []
    cells: list[float] = []
    cell_unit: str | None = None
    for rec in body[L.MEASUREMENTS]:
        v = rec.get(2)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            continue
        name = rec.get(0)
        unit = rec.get(1)
        offset = rec.get(6)
        t = time_ms + (round(float(offset) * 1000) if isinstance(offset, int | float) else 0)
        values.append((name, unit, t, float(v)))
        if _CELL.fullmatch(name):
            cells.append(float(v))
            cell_unit = unit
    if cells:
        values.append(("cell_voltage_min", cell_unit, time_ms, min(cells)))
        values.append(("cell_voltage_max", cell_unit, time_ms, max(cells)))
    mark: str | None = None
    event = body.get(L.EVENT)
    gap = body.get(L.GAP)
    if isinstance(event, dict):
        mark = "; ".join(f"{k}={v}" for k, v in event.items())
    elif isinstance(gap, list) and len(gap) == 2:
        mark = f"gap record: seqs {gap[0]}..{gap[1]} dropped"
    return time_ms, values, mark


class SeriesCache:
    """One SQLite file; every method is safe to call from any thread (one lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = OFF")  # a cache: rebuilt if lost
            self._db.executescript(_SCHEMA)
        self._series: dict[tuple[str, str], int] = {
            (dev, name): sid for sid, dev, name in
            self._db.execute("SELECT id, device_id, name FROM series")}
        self._per_device: dict[str, int] = {}
        for dev, _ in self._series:
            self._per_device[dev] = self._per_device.get(dev, 0) + 1

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # identity and progress -------------------------------------------------------------------

    def _meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def bind(self, first_envelope: bytes | None, ledger_max_id: int) -> None:
        """Start over when the cache belongs to another ledger (first envelope differs) or to
        a longer one (it is ahead of the ledger)."""
        with self._lock:
            mine = self._meta("first_envelope")
            format_ok = self._meta("format") == _CACHE_FORMAT
            upto = int(self._meta("upto") or 0)
            if (mine is not None and first_envelope is not None and mine != first_envelope) \
                    or upto > ledger_max_id or not format_ok:
                self._db.executescript("BEGIN; DELETE FROM meta; DELETE FROM series; "
                                       "DELETE FROM rollup; DELETE FROM marks; COMMIT;")
                self._series.clear()
                self._per_device.clear()
                mine = None
            if first_envelope is not None and mine is None:
                self._db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                     [("first_envelope", first_envelope),
                                      ("format", _CACHE_FORMAT)])

    @property
    def upto(self) -> int:
        """The last reading id folded in."""
        with self._lock:
            return int(self._meta("upto") or 0)

    # writing ---------------------------------------------------------------------------------

    def _series_id(self, device_id: str, name: str, unit: str | None) -> int | None:
        key = (device_id, name)
        sid = self._series.get(key)
        if sid is None:
            if self._per_device.get(device_id, 0) >= MAX_SERIES_PER_DEVICE:
                return None
            cur = self._db.execute("INSERT INTO series(device_id, name, unit) VALUES (?, ?, ?)",
                                   (device_id, name, unit))
            sid = self._series[key] = int(cur.lastrowid or 0)
            self._per_device[device_id] = self._per_device.get(device_id, 0) + 1
        return sid

    def add(self, records: Sequence[ReadingRecord]) -> None:
        """Fold ``records`` (consecutive reading ids after :attr:`upto`) in, atomically."""
        if not records:
            return
        agg: dict[tuple[int, int, int], list[float]] = {}
        marks: list[tuple[str, int, int, str]] = []
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for r in records:
                    if r.device_id.startswith("@"):  # collector statements are no device's
                        continue
                    time_ms, values, mark = decode_values(r.envelope)
                    if mark is not None:
                        marks.append((r.device_id, time_ms, r.seq, mark))
                    for name, unit, t, v in values:
                        sid = self._series_id(r.device_id, name, unit)
                        if sid is None:
                            continue
                        for level, width in enumerate(LEVELS_MS):
                            key = (sid, level, t - t % width)
                            cell = agg.get(key)
                            if cell is None:
                                agg[key] = [v, v, 1]
                            else:
                                cell[0] = min(cell[0], v)
                                cell[1] = max(cell[1], v)
                                cell[2] += 1
                self._db.executemany(
                    "INSERT INTO rollup(series_id, level, bucket, vmin, vmax, n) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(series_id, level, bucket) DO UPDATE "
                    "SET vmin = MIN(vmin, excluded.vmin), vmax = MAX(vmax, excluded.vmax), "
                    "n = n + excluded.n",
                    [(*k, c[0], c[1], int(c[2])) for k, c in agg.items()])
                self._db.executemany("INSERT OR IGNORE INTO marks(device_id, time_ms, seq, "
                                     "text) VALUES (?, ?, ?, ?)", marks)
                self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('upto', ?)",
                                 (records[-1].id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # reading ---------------------------------------------------------------------------------

    def series_of(self, device_id: str) -> list[tuple[str, str | None]]:
        """The device's series (name, unit), in the order first seen."""
        with self._lock:
            return [(n, u) for n, u in self._db.execute(
                "SELECT name, unit FROM series WHERE device_id = ? ORDER BY id", (device_id,))]

    def buckets(self, device_id: str, names: Iterable[str], since_ms: int, until_ms: int,
                width_ms: int) -> tuple[int, dict[str, list[Bucket]]]:
        """Min/max buckets of ``width_ms`` (at least the finest level's) over the range, read
        from the coarsest level that is not coarser than asked; returns the width used."""
        level = 0
        for i, w in enumerate(LEVELS_MS):
            if w <= width_ms:
                level = i
        width = max(width_ms, LEVELS_MS[level])
        out: dict[str, list[Bucket]] = {}
        with self._lock:
            for name in names:
                sid = self._series.get((device_id, name))
                if sid is None:
                    continue
                out[name] = [Bucket(since_ms + int(b) * width, lo, hi, n) for b, lo, hi, n in
                             self._db.execute(
                                 "SELECT (bucket - ?) / ? AS b, MIN(vmin), MAX(vmax), SUM(n) "
                                 "FROM rollup WHERE series_id = ? AND level = ? AND bucket >= ? "
                                 "AND bucket < ? GROUP BY b ORDER BY b",
                                 (since_ms, width, sid, level,
                                  since_ms - since_ms % LEVELS_MS[level], until_ms))]
        return width, out

    def marks(self, device_id: str, since_ms: int, until_ms: int,
              limit: int) -> tuple[list[Mark], int]:
        """Up to ``limit`` marks in the range, and how many there are in all."""
        with self._lock:
            total = int(self._db.execute(
                "SELECT COUNT(*) FROM marks WHERE device_id = ? AND time_ms >= ? "
                "AND time_ms < ?", (device_id, since_ms, until_ms)).fetchone()[0])
            rows = self._db.execute(
                "SELECT time_ms, seq, text FROM marks WHERE device_id = ? AND time_ms >= ? "
                "AND time_ms < ? ORDER BY time_ms LIMIT ?",
                (device_id, since_ms, until_ms, limit)).fetchall()
        return [Mark(*row) for row in rows], total
