"""``ledger-collector stats``: the ledger's totals and every device's health, from the store."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from collector.ledger.store import LedgerStore
from collector.tools.findings import gap_warnings
from provenance.statement import STATEMENT_DEVICE

__all__ = ["TABLE_COLUMNS", "LedgerStats", "collect_stats"]


# (header, key, width) of the per-device table; the CSV has the same columns, by key.
TABLE_COLUMNS = [
    ("device", "device_id", 16), ("last seq", "last_seq", 9), ("accepted", "accepted", 9),
    ("duplicates", "duplicates", 10), ("missing", "missing", 8),
    ("unexplained", "unexplained", 11), ("chain breaks", "chain_breaks", 12),
    ("equivocations", "equivocations", 13), ("reboots", "reboots", 7),
    ("boot resets", "boot_resets", 11), ("skew ms", "last_skew_ms", 8),
    ("quarantined", "quarantined", 11), ("last seen (UTC)", "last_seen", 25),
]


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


@dataclass(slots=True)
class LedgerStats:
    readings: int
    blocks: int
    unsealed: int
    duplicates: int
    quarantined: dict[str, int]
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # devices with unexplained gaps
    statements: int = 0  # collector statements in the log (enrolments, revocations, ...)

    def to_json(self) -> str:
        return json.dumps({
            "readings": self.readings, "statements": self.statements, "blocks": self.blocks,
            "unsealed": self.unsealed,
            "duplicates": self.duplicates, "quarantined": sum(self.quarantined.values()),
            "quarantined_by_reason": self.quarantined, "devices": self.devices,
            "warnings": self.warnings,
        }, indent=2)

    def to_csv(self) -> str:
        """One row per device, with the table's columns (named by key)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([key for _, key, _ in TABLE_COLUMNS])
        for dev in sorted(self.devices):
            d = self.devices[dev]
            writer.writerow(["" if d.get(key) is None else d[key] for _, key, _ in TABLE_COLUMNS])
        return out.getvalue()

    def render(self) -> str:
        lines = [
            f"ledger: {self.readings} readings in {self.blocks} blocks "
            f"({self.unsealed} not yet sealed); {self.duplicates} duplicates dropped; "
            f"{sum(self.quarantined.values())} quarantined; {self.statements} collector "
            "statements",
        ]
        if self.quarantined:
            lines.append("quarantine: " + ", ".join(f"{k}={v}" for k, v in
                                                   sorted(self.quarantined.items())))
        cols = TABLE_COLUMNS
        lines.append(" ".join(f"{h:>{w}}" if i else f"{h:<{w}}"
                              for i, (h, _, w) in enumerate(cols)))
        for dev in sorted(self.devices):
            d = self.devices[dev]
            lines.append(" ".join(
                f"{'' if d.get(k) is None else d.get(k)!s:>{w}}" if i
                else f"{d.get(k)!s:<{w}}"
                for i, (_, k, w) in enumerate(cols)))
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


async def collect_stats(store: LedgerStore, device_id: str | None = None) -> LedgerStats:
    async with store.snapshot():
        statements = await store.reading_count(STATEMENT_DEVICE)
        readings = await store.reading_count() - statements
        last = await store.last_block()
        blocks = last.height + 1 if last else 0
        sealed_upto = last.end_reading_id if last else 1
        next_id = await store.next_reading_id()
        states = await store.device_states()
        qcounts = await store.quarantine_counts()
    by_reason: dict[str, int] = defaultdict(int)
    by_device: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (dev, reason), n in qcounts.items():
        by_reason[reason] += n
        by_device[dev][reason] += n
    devices: dict[str, dict[str, Any]] = {}
    for dev in sorted(set(states) | set(by_device)):
        if device_id is not None and dev != device_id:
            continue
        st = states.get(dev)
        q = dict(sorted(by_device.get(dev, {}).items()))
        row: dict[str, Any] = {"device_id": dev, "quarantined": sum(q.values()),
                               "quarantined_by_reason": q}
        if st is not None:
            row.update({
                "first_seq": st.first_seq, "last_seq": st.last_seq, "accepted": st.accepted,
                "duplicates": st.duplicates, "gaps": len(st.gaps), "missing": st.missing,
                "unexplained": st.unexplained, "explained": st.missing - st.unexplained,
                "gap_ranges": [[g.first, g.last, g.explained_by] for g in st.gaps],
                "chain_breaks": st.chain_breaks, "chain_restarts": st.chain_restarts,
                "equivocations": st.equivocations, "reboots": st.reboots,
                "boot_resets": st.boot_resets, "out_of_order": st.out_of_order,
                "delayed": st.delayed, "last_skew_ms": st.last_skew_ms,
                "max_ahead_ms": st.max_ahead_ms, "last_boot": st.last_boot,
                "last_time_ms": st.last_time_ms, "last_received_ms": st.last_received_ms,
                "last_seen": _utc(st.last_received_ms),
            })
        devices[dev] = row
    return LedgerStats(
        readings=readings,
        blocks=blocks,
        unsealed=max(0, next_id - sealed_upto),
        duplicates=sum(st.duplicates for st in states.values()),
        quarantined=dict(sorted(by_reason.items())),
        devices=devices,
        warnings=gap_warnings({dev: st for dev, st in states.items() if dev in devices}),
        statements=statements,
    )
