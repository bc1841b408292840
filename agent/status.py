"""What the agent says about itself: heartbeat JSON, the status file, ``sensor-agent status``.

The same snapshot goes three ways: as the periodic heartbeat on the status topic, as
``status.json`` in the state directory (written atomically, so ``sensor-agent status`` can
show per-sensor errors and the broker link even while the agent runs, or after it died), and
condensed into one line for systemd's ``STATUS=``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .intake.recorder import Recorder
from .outbox.link import LinkState
from .poller import SensorHealth, SensorRunner
from .spool import Spool, SpoolReport

__all__ = ["Heartbeat", "render_status", "snapshot", "status_line", "write_status_file"]


class Heartbeat:
    """The running agent's snapshot, taken on demand (heartbeat, status file, ``STATUS=``)."""

    def __init__(
        self, spool: Spool, link: LinkState, runners: Sequence[SensorRunner], recorder: Recorder,
    ) -> None:
        self._spool = spool
        self._link = link
        self._runners = runners
        self._recorder = recorder
        self.started_s = time.monotonic()

    def __call__(self) -> dict[str, Any]:
        return snapshot(self._spool, self._link, (r.health for r in self._runners),
                        started_s=self.started_s, spool_error=self._recorder.last_error)


def snapshot(
    spool: Spool, link: LinkState, sensors: Iterable[SensorHealth], *, started_s: float,
    spool_error: str | None = None,
) -> dict[str, Any]:
    """The heartbeat: counters are totals since the spool was created."""
    now_ms = time.time_ns() // 1_000_000
    c = spool.counters
    return {
        "state": "online" if link.connected else "offline",
        "device_id": spool.device_id,
        "time_ms": now_ms,
        "boot": spool.boot,
        "uptime_s": round(time.monotonic() - started_s, 1),
        "next_seq": spool.head.next_seq,
        "signed": c.signed,
        "relayed": c.relayed,
        "published": c.published,
        "dropped": c.dropped,
        "dropped_relayed": c.dropped_relayed,
        "gap_records": c.gap_records,
        "open_gap": list(spool.gap) if spool.gap else None,
        "spool_depth": spool.depth,
        "spool_limit": spool.max_readings,
        "delivery": spool.delivery,
        "awaiting_receipt": spool.awaiting,
        "sealed_through": spool.sealed_through,
        "sealed": c.sealed,
        "refused_final": c.refused_final,
        "receipts": link.receipts.as_dict(),
        "last_puback_age_s": (None if c.last_puback_ms is None
                              else round((now_ms - c.last_puback_ms) / 1000, 1)),
        "broker": {"connected": link.connected, "connects": link.connects,
                   "failures": link.failures, "last_error": link.last_error},
        "spool_error": spool_error,
        "sensors": {h.name: h.as_dict() for h in sensors},
    }


def status_line(snap: dict[str, Any]) -> str:
    """One line for ``systemctl status``."""
    broker = "broker connected" if snap["broker"]["connected"] else (
        f"broker down: {snap['broker']['last_error'] or 'connecting'}")
    errors = sum(s["errors"] for s in snap["sensors"].values())
    sealed = ""
    if snap.get("delivery") == "receipts":
        through = snap.get("sealed_through")
        refused = snap.get("receipts", {}).get("refused") or {}
        sealed = (f", sealed through {'-' if through is None else through}"
                  + (", refused " + " ".join(f"{k}={v}" for k, v in refused.items())
                     if refused else ""))
    return (f"seq {snap['next_seq']}, spool {snap['spool_depth']}/{snap['spool_limit']}, "
            f"published {snap['published']}{sealed}, dropped {snap['dropped']}, "
            f"sensor errors {errors}; {broker}")


def write_status_file(path: Path, snap: dict[str, Any]) -> None:
    """Replace ``path`` atomically, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(snap, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_status_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def render_status(report: SpoolReport, runtime: dict[str, Any] | None) -> str:
    """Human-readable ``sensor-agent status``: spool facts, then the last runtime snapshot."""
    t = report.counters
    lines = [
        f"device        {report.device_id}",
        f"spool         {report.path}",
        f"boot          {report.boot}",
        f"next seq      {report.next_seq}",
        f"chain head    {report.head}",
        f"spooled       {report.depth} readings waiting"
        + (f" (seq {report.oldest_seq}..{report.newest_seq})"
           if report.oldest_seq is not None else "")
        + (f", {report.gap_rows} gap record(s)" if report.gap_rows else ""),
        "overflow      " + (f"episode open: seqs {report.open_gap[0]}..{report.open_gap[1]} "
                             "dropped so far (gap record follows when the spool has room)"
                             if report.open_gap else "none open"),
        f"totals        signed {t.signed}, published {t.published}, dropped {t.dropped}, "
        f"gap records {t.gap_records}, relayed {t.relayed} (dropped {t.dropped_relayed})",
    ]
    if t.last_puback_ms is not None:
        age = time.time() - t.last_puback_ms / 1000
        lines.append(f"last PUBACK   {age:.1f} s ago")
    else:
        lines.append("last PUBACK   never")
    if report.receipt_ms is None:
        sealed = "no receipt yet"
    else:
        through = "-" if report.sealed_through is None else str(report.sealed_through)
        sealed = (f"through seq {through} (tree size {report.receipt_tree}, receipt "
                  f"{time.time() - report.receipt_ms / 1000:.1f} s ago)")
    lines.append(f"sealed        {sealed}; {report.awaiting_receipt} reading(s) wait for a "
                 f"receipt; released by receipts {t.sealed}, refused for good "
                 f"{t.refused_final}")
    if report.refusals:
        held = report.held_refused or {}
        lines.append("refused       " + ", ".join(
            f"{reason} {count}" + (f" ({held[reason]} kept, sent again)" if reason in held
                                   else "")
            for reason, count in report.refusals.items()))
    if runtime is None:
        lines.append("runtime       no status file (the agent has not run here yet)")
        return "\n".join(lines)
    age = time.time() - runtime.get("time_ms", 0) / 1000
    broker = runtime.get("broker", {})
    lines.append(f"runtime       snapshot {age:.0f} s old, boot {runtime.get('boot')}, "
                 f"up {runtime.get('uptime_s')} s")
    lines.append("broker        " + ("connected" if broker.get("connected") else
                                     f"not connected: {broker.get('last_error') or '-'}"))
    if runtime.get("spool_error"):
        lines.append(f"spool error   {runtime['spool_error']} (the batch is kept and retried)")
    for name, s in sorted(runtime.get("sensors", {}).items()):
        # The agent's own words first (poll failed, sample refused), else the driver's.
        last = s.get("last_error") or (s.get("driver_stats") or {}).get("last_error")
        lines.append(f"sensor {name:<12} {s.get('driver')}: {s.get('samples')} samples, "
                     f"{s.get('errors')} errors" + (f" (last: {last})" if last else ""))
    return "\n".join(lines)
