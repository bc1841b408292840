"""The log head a cluster shares, watched from the database for ``/metrics`` and ``/health``.

A collector on its own SQLite ledger is the log's only sealer: its sealer knows the tree size
and when it signed the newest checkpoint. A member of a cluster (several collectors on one
PostgreSQL ledger) seals only some of the blocks, so it reads the newest checkpoint from the
database instead, every ``interval`` seconds while metrics are served (one index lookup), and
its live state shows that: the tree size and checkpoint time of the whole cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from collector.errors import CollectorError
from collector.ledger.records import CheckpointRecord
from collector.metrics import LiveState

__all__ = ["SharedHead"]

log = logging.getLogger("collector.observe")

#: The newest checkpoint of the ledger (``LedgerStore.checkpoint``).
ReadHead = Callable[[], Awaitable[CheckpointRecord | None]]


class SharedHead:
    def __init__(self, read: ReadHead, interval: float) -> None:
        self._read = read
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self.size: int | None = None  # None until read once
        self.signed_ms: int | None = None  # None: the log has no checkpoint yet

    async def refresh(self) -> None:
        """Read the newest checkpoint now."""
        record = await self._read()
        self.size = record.size if record is not None else 0
        self.signed_ms = record.signed_ms if record is not None else None

    async def start(self) -> None:
        """Read the head once, then again every ``interval`` seconds until :meth:`close`."""
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except CollectorError as exc:  # the database away for a while: keep the last
                log.warning("reading the log head for metrics: %s", exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def apply(self, live: LiveState) -> LiveState:
        """``live`` with the shared head's tree size and checkpoint time."""
        return replace(live, tree_size=self.size, last_checkpoint_ms=self.signed_ms)
