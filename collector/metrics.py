"""Counters of a running collector: the one source of the ``stats`` log line and of ``/metrics``.

Counters count since the process started; the ledger's own totals (per device, across runs)
come from ``ledger-collector stats``. The pipeline updates them in the collector's main
process only: verification workers return outcomes, and the pipeline counts the outcomes, so
nothing is counted in a worker process (no Prometheus multiprocess mode, no files to merge).

Gauges (backlog per stage, tree size, checkpoint time) are not stored here: they are read from
the live pipeline when asked (:class:`LiveState`), so a scrape and a log line see the same
values. ``backlog`` is what the collector holds but has not yet finished: received and not
committed, plus committed and not yet sealed.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LATENCY_BUCKETS_S", "LatencyHistogram", "LiveState", "Metrics"]

#: Upper bounds (seconds) of the latency histograms' buckets; ``+Inf`` is implied.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)


@dataclass(slots=True)
class LatencyHistogram:
    """A cumulative-on-read histogram of durations in seconds (Prometheus semantics)."""

    bounds: Sequence[float] = LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=list)  # per bucket, the last one is +Inf
    total: int = 0
    sum_s: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float, n: int = 1) -> None:
        """Count ``n`` observations of ``seconds`` (negative values, a clock step, count 0)."""
        seconds = max(0.0, seconds)
        self.counts[bisect.bisect_left(self.bounds, seconds)] += n
        self.total += n
        self.sum_s += seconds * n

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= bound)`` for every bucket, ``+Inf`` last."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding quantile ``q`` (None when empty)."""
        if not self.total:
            return None
        rank = q * self.total
        for bound, seen in self.cumulative():
            if seen >= rank:
                return bound
        return float("inf")


@dataclass(frozen=True, slots=True)
class LiveState:
    """What the pipeline holds right now (read on demand, from any thread)."""

    inbox: int  # received from the broker, not yet handed to a verification worker
    verifying: int  # handed to a worker, or verified and waiting for the writer
    committing: int  # decided by the writer, in the commit batch not yet durable
    unsealed: int  # committed, waiting for a block
    tree_size: int  # leaves in the sealed log tree
    last_checkpoint_ms: int | None  # when the newest checkpoint was signed; None: never
    oldest_waiting_ms: int | None  # arrival of the oldest reading received and not yet sealed

    @property
    def backlog(self) -> int:
        return self.inbox + self.verifying + self.committing + self.unsealed


@dataclass(slots=True)
class Metrics:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    gaps: int = 0
    chain_restarts: int = 0
    reboots: int = 0
    boot_resets: int = 0
    late: int = 0
    blocks_sealed: int = 0
    commits: int = 0
    acks_requested: int = 0
    statements: int = 0  # collector statements logged (enrolments, revocations)
    receive_to_commit: LatencyHistogram = field(default_factory=LatencyHistogram)
    commit_to_seal: LatencyHistogram = field(default_factory=LatencyHistogram)

    def snapshot(self, live: LiveState | None = None, now_ms: int | None = None
                 ) -> dict[str, Any]:
        """The ``stats`` log line's fields (the same numbers ``/metrics`` exports)."""
        out: dict[str, Any] = {
            "received": self.received,
            "accepted": self.accepted,
            "duplicate": self.duplicates,
            "quarantined": sum(self.quarantined.values()),
            "quarantined_by_reason": dict(sorted(self.quarantined.items())),
            "gaps": self.gaps,
            "chain_restarts": self.chain_restarts,
            "reboots": self.reboots,
            "boot_resets": self.boot_resets,
            "late": self.late,
            "blocks_sealed": self.blocks_sealed,
            "commits": self.commits,
            "statements": self.statements,
        }
        if live is not None:
            out.update({
                "backlog": live.backlog,
                "backlog_inbox": live.inbox,
                "backlog_verifying": live.verifying,
                "backlog_committing": live.committing,
                "backlog_unsealed": live.unsealed,
                "tree_size": live.tree_size,
            })
            if live.last_checkpoint_ms is not None and now_ms is not None:
                out["checkpoint_age_s"] = round(max(0, now_ms - live.last_checkpoint_ms) / 1000,
                                                3)
        for name, hist in (("receive_to_commit", self.receive_to_commit),
                           ("commit_to_seal", self.commit_to_seal)):
            p99 = hist.quantile(0.99)
            out[f"{name}_p99_le_s"] = p99 if p99 is None or p99 != float("inf") else "+Inf"
        return out
