"""The intake stage: the single writer between the pollers and the spool.

Pollers hand over drafts through a bounded queue; the recorder takes whatever has gathered
(up to ``max_batch``) and signs and spools it in one transaction (:func:`sign_and_spool`).
At 1 Hz a batch is one reading; at full rate batching turns one fsync per reading into one
per batch, which is what makes thousands of durable readings per second possible on an SD
card. The queue bound is backpressure: if the disk stalls, pollers wait instead of the
agent's memory growing.

Pacing: signing and publishing share one CPU budget. When readings arrive faster than the
broker connection takes them, an unpaced recorder would take ever more of it, the publisher
ever less, and the spool would fill with readings that are then dropped. So while the broker
is connected and the backlog exceeds ``pace_backlog``, the recorder waits (at most
``PACE_MAX_WAIT_S``) for PUBACKs to bring it back under before the next batch: readings wait
in the queue and batches grow, so recording runs at the rate the broker takes readings and
neither side starves the other. While the broker is away nothing waits: the spool takes it
all, up to its limit.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import SpoolError
from ..outbox.link import LinkState
from ..signer import ChainSigner, Draft, Relay
from ..spool import Spool
from .sign_and_spool import sign_and_spool

__all__ = ["Recorder"]

log = logging.getLogger(__name__)

RETRY_S = 1.0
PACE_MAX_WAIT_S = 0.25


class Recorder:
    def __init__(
        self, spool: Spool, signer: ChainSigner, link: LinkState, *, max_batch: int = 500,
        queue_size: int = 2_000, pace_backlog: int = 1_000,
    ) -> None:
        self.spool = spool
        self.signer = signer
        self.max_batch = max_batch
        self._link = link  # the publisher's broker link: pacing applies while it is up
        self._pace_backlog = pace_backlog
        self.queue: asyncio.Queue[Draft | Relay] = asyncio.Queue(queue_size)
        self.last_error: str | None = None
        self.write_failures = 0
        self._idle = asyncio.Event()  # set while run() waits on an empty queue

    async def put(self, item: Draft | Relay) -> None:
        await self.queue.put(item)

    async def run(self) -> None:
        """Record until cancelled. To stop without losing a batch: stop the pollers, await
        :meth:`drained`, then cancel (run() is then waiting on the empty queue)."""
        while True:
            if self.queue.empty():
                self._idle.set()
            first = await self.queue.get()
            self._idle.clear()
            if self._link.connected and self.spool.unsent > self._pace_backlog:
                await self.spool.drained_to(self._pace_backlog, PACE_MAX_WAIT_S)
            await self._record([first, *self._drain()])

    async def drained(self) -> None:
        """Return once everything queued is spooled (after the pollers have stopped)."""
        while True:
            await self._idle.wait()
            if self.queue.empty():
                return
            await asyncio.sleep(0)  # run() is about to take the rest

    def _drain(self) -> list[Draft | Relay]:
        batch: list[Draft | Relay] = []
        while len(batch) < self.max_batch:
            try:
                batch.append(self.queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    async def _record(self, batch: list[Draft | Relay]) -> None:
        while True:
            try:
                await sign_and_spool(self.spool, batch, self.signer)
            except SpoolError as exc:
                # Keep the batch and retry: the readings exist only here until committed.
                self.write_failures += 1
                if self.last_error != str(exc):
                    log.error("%s; retrying every %.0f s", exc, RETRY_S)
                self.last_error = str(exc)
                await asyncio.sleep(RETRY_S)
                continue
            self.last_error = None
            return
