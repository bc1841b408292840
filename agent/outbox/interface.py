"""What the publisher needs from the spool, and nothing more: the outbox interface.

The publisher reads rows in order, reports what the broker acknowledged, and waits for new
rows. The spool (:class:`agent.spool.Spool`) is the one outbox the agent has; the interface
keeps the publisher from reaching into its storage, counters or overflow state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from provenance.receipt import SignedReceipt

__all__ = ["Outbox", "Row"]


@dataclass(frozen=True, slots=True)
class Row:
    """A spooled envelope as the publisher sees it."""

    pos: int
    device_id: str
    seq: int
    envelope: bytes


class Outbox(Protocol):
    """Rows waiting for the broker, oldest first; each leaves only when acknowledged."""

    async def fetch(self, after_pos: int, limit: int) -> list[Row]:
        """Up to ``limit`` rows after position ``after_pos``, oldest first."""
        ...

    def ack(self, positions: Sequence[int], now_ms: int) -> None:
        """The broker acknowledged these rows (PUBACK): they may leave."""
        ...

    async def flush_acks(self) -> None:
        """Let acknowledged rows leave now, so that a new connection does not send them again."""
        ...

    async def wait_for_new(self) -> None:
        """Return at the next commit that adds rows."""
        ...

    async def due(self, acked_before_ms: int, limit: int) -> list[Row]:
        """Rows acknowledged by the broker before ``acked_before_ms`` and still not covered by
        a receipt: to be published again (always empty in puback mode)."""
        ...

    async def settle(self, signed: SignedReceipt, now_ms: int) -> object:
        """Apply a collector receipt: rows it states sealed (or refused for good) leave."""
        ...
