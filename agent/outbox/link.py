"""The broker link as the rest of the agent sees it: the publisher writes it, others read it.

Created before the publisher and handed to it and to its readers (the recorder's pacing, the
heartbeat), so nothing has to reach into the publisher to ask.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LinkState", "ReceiptState"]


@dataclass
class ReceiptState:
    """What the collector's receipts said, as heartbeats and ``status`` report it."""

    received: int = 0
    last_ms: int | None = None
    sealed_through: int | None = None
    tree_size: int | None = None
    republished: int = 0  # publishes of readings no receipt covered in time
    bad: int = 0  # receipts that did not decode or verify (ignored)
    last_bad: str | None = None
    refused: Counter[str] = field(default_factory=Counter)  # refusals heard, by reason
    last_refusal: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"received": self.received, "last_ms": self.last_ms,
                "sealed_through": self.sealed_through, "tree_size": self.tree_size,
                "republished": self.republished, "bad": self.bad, "last_bad": self.last_bad,
                "refused": dict(sorted(self.refused.items())),
                "last_refusal": self.last_refusal}


@dataclass
class LinkState:
    """The broker connection as heartbeats and ``status`` report it."""

    connected: bool = False
    connects: int = 0
    failures: int = 0
    last_error: str | None = None
    connected_since_ms: int | None = None
    receipts: ReceiptState = field(default_factory=ReceiptState)
