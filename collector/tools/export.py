"""Reading export: CSV (one row per reading, or one per measurement) and JSON Lines (one
object per reading).

Each exported reading says where it sits in the ledger, empty while not yet sealed: its block's
height, its ``leaf_index`` in that block, and its ``log_index``, the leaf of the one log that
``ledger-collector proof`` and ``verify-proof`` name and the web API calls ``leaf_index``
(empty on a ledger without a log).
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, TextIO

from collector.ledger.store import BlockRecord, LedgerStore, ReadingRecord
from provenance.envelope import Envelope
from provenance.prooffile import reading_to_json
from provenance.statement import STATEMENT_DEVICE

__all__ = ["CSV_COLUMNS", "MEASUREMENT_COLUMNS", "export_readings"]

CSV_COLUMNS = [
    "reading_id", "device_id", "seq", "boot", "time_ms", "time_utc", "clock_synced", "kind",
    "measurements", "event", "gap_first", "gap_last", "block", "leaf_index", "log_index",
    "received_ms", "envelope_sha256",
]
# One row per measurement: a spreadsheet's or a time-series database's shape. ``time_utc`` is the
# measurement's own time (the reading's time plus the measurement's offset).
MEASUREMENT_COLUMNS = [
    "reading_id", "device_id", "seq", "time_utc", "name", "value", "unit", "kind",
    "clock_synced", "block", "leaf_index", "log_index",
]


class _BlockIndex:
    def __init__(self, blocks: list[BlockRecord], has_log: bool) -> None:
        self.has_log = has_log  # sealed readings are leaves of the log (reading id - 1)
        self._blocks = blocks
        self._starts = [b.first_reading_id for b in blocks]

    def locate(self, reading_id: int) -> tuple[int | None, int | None]:
        i = bisect.bisect_right(self._starts, reading_id) - 1
        if i < 0 or reading_id >= self._blocks[i].end_reading_id:
            return None, None
        block = self._blocks[i]
        return block.height, reading_id - block.first_reading_id


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _record(r: ReadingRecord, index: _BlockIndex, with_envelope: bool) -> dict[str, Any]:
    reading = Envelope.decode(r.envelope).reading()
    height, leaf = index.locate(r.id)
    out: dict[str, Any] = {"reading_id": r.id, **reading_to_json(reading),
                           "time_utc": _iso(reading.time_ms), "block": height,
                           "leaf_index": leaf,
                           "log_index": r.id - 1 if index.has_log and leaf is not None else None,
                           "received_ms": r.received_ms,
                           "envelope_sha256": hashlib.sha256(r.envelope).hexdigest()}
    if with_envelope:
        out["envelope"] = r.envelope.hex()
    return out


async def export_readings(store: LedgerStore, out: TextIO, *, fmt: str,
                          device_id: str | None = None, since_ms: int | None = None,
                          until_ms: int | None = None, with_envelope: bool = False,
                          per_measurement: bool = False) -> int:
    """Write matching readings to ``out`` as ``fmt`` ("csv" or "jsonl"); return the count of
    readings. ``per_measurement`` (CSV only): one row per measurement instead of per reading."""
    index = _BlockIndex(await store.blocks(), await store.log_origin() is not None)
    query = _device_readings(
        store.query_readings(device_id=device_id, since_ms=since_ms, until_ms=until_ms))
    # Closed here, whatever stops the writing (a reader that left: BrokenPipeError), so the
    # query never outlives the store's connection.
    try:
        return await _write(query, out, index, fmt=fmt, with_envelope=with_envelope,
                            per_measurement=per_measurement)
    finally:
        aclose = getattr(query, "aclose", None)  # an async generator's; a plain iterator has none
        if aclose is not None:
            await aclose()


async def _device_readings(rows: AsyncIterator[ReadingRecord]
                           ) -> AsyncIterator[ReadingRecord]:
    """The device readings among ``rows``: collector statements are not readings of a device."""
    try:
        async for r in rows:
            if r.device_id != STATEMENT_DEVICE:
                yield r
    finally:
        aclose = getattr(rows, "aclose", None)
        if aclose is not None:
            await aclose()


async def _write(rows: AsyncIterator[ReadingRecord], out: TextIO, index: _BlockIndex, *,
                 fmt: str, with_envelope: bool, per_measurement: bool) -> int:
    count = 0
    if fmt == "jsonl":
        async for r in rows:
            out.write(json.dumps(_record(r, index, with_envelope), separators=(",", ":")))
            out.write("\n")
            count += 1
        return count
    if per_measurement:
        writer = csv.DictWriter(out, fieldnames=MEASUREMENT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        async for r in rows:
            rec = _record(r, index, False)
            for m in rec["measurements"]:
                offset_ms = round(float(m.get("t", 0)) * 1000)
                writer.writerow({**rec, "time_utc": _iso(rec["time_ms"] + offset_ms),
                                 "name": m["n"], "value": m.get("v"), "unit": m.get("u", "")})
            count += 1
        return count
    columns = CSV_COLUMNS + (["envelope"] if with_envelope else [])
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    async for r in rows:
        rec = _record(r, index, with_envelope)
        gap = rec.pop("gap", None) or {}
        rec["gap_first"], rec["gap_last"] = gap.get("first"), gap.get("last")
        rec["measurements"] = json.dumps(rec["measurements"], separators=(",", ":"))
        rec["event"] = json.dumps(rec["event"]) if "event" in rec else ""
        writer.writerow(rec)
        count += 1
    return count
