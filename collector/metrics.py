"""Counters of a running collector, logged as one ``stats`` event every few seconds.

Counters count since the process started; the ledger's own totals (per device, across runs)
come from ``ledger-collector stats``. ``backlog`` is what the collector holds but has not yet
finished: received and not committed, plus committed and not yet sealed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Metrics"]


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
    # gauges, set by the pipeline
    inbox: int = 0
    verifying: int = 0
    pending_seal: int = 0

    @property
    def backlog(self) -> int:
        return self.inbox + self.verifying + self.pending_seal

    def snapshot(self) -> dict[str, Any]:
        return {
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
            "backlog": self.backlog,
            "backlog_inbox": self.inbox,
            "backlog_verifying": self.verifying,
            "backlog_unsealed": self.pending_seal,
        }
