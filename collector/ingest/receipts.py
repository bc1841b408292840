"""Receipts to the agents: what the ledger sealed and refused, per device, signed.

After every block commit the pipeline asks :meth:`ReceiptDesk.after_block` for one receipt per
device that had a reading in the block, or a refusal or a re-sent sealed reading since the last
receipt; after a batch commit it asks :meth:`ReceiptDesk.after_batch` for the refusals and
re-sent sealed readings alone (at most every ``refusal_interval_ms``). Receipts are built from
the *store* (:meth:`LedgerStore.sealed_marks`), never from this collector's memory, so any
collector writing the same ledger issues the same receipt. Each is signed with the collector
key (:class:`provenance.receipt.SignedReceipt`) and handed to ``send`` (the MQTT thread
publishes it, QoS 1, retained). A receipt is advice to the agent: losing one costs a re-publish,
which the ledger counts as a duplicate and answers with another receipt.

Memory stays bounded: at most ``max_refusals`` refusal entries wait (the rest are counted and
dropped; the agent re-publishes those readings and they are refused again).

In a cluster (:mod:`collector.ingest.cluster`) the desk is asked from two tasks (admission
and sealing) and another collector may seal between its looks at the store, so receipts are
made one at a time (a lock: a device's receipts leave in the order they were made) and the
tree size may be left to the desk (``None``): it is read from the store after the marks, so
it includes every reading they state as sealed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.ledger.store import BlockRecord, LedgerStore
from collector.logs import event
from provenance.errors import ProvenanceError
from provenance.keys import PrivateKey
from provenance.receipt import RETRY_REASONS, Receipt, Refusal, SignedReceipt, seq_ranges
from provenance.statement import STATEMENT_DEVICE
from provenance.wire import receipt_topic

__all__ = ["ReceiptDesk"]

log = logging.getLogger("collector.ingest.receipts")

#: Entries of one receipt's ``refused`` list (more wait for the next receipt).
REFUSALS_PER_RECEIPT = 512


@dataclass(slots=True)
class _Waiting:
    refused: list[tuple[int, str, bytes]] = field(default_factory=list)  # seq, reason, sha256
    resealed: set[int] = field(default_factory=set)


class ReceiptDesk:
    def __init__(self, store: LedgerStore, key: PrivateKey, send: Callable[[str, bytes], None],
                 *, max_refusals: int = 100_000, refusal_interval_ms: int = 200) -> None:
        self._store = store
        self._key = key
        self._send = send
        self._max_refusals = max_refusals
        self._interval_ms = refusal_interval_ms
        self._waiting: dict[str, _Waiting] = {}
        self._count = 0
        self._last_ms = 0
        self._issuing = asyncio.Lock()
        self.issued = 0
        self.dropped_refusals = 0

    # what happened ----------------------------------------------------------------------------

    def refused(self, device_id: str, seq: int, reason: str, digest: bytes) -> None:
        """``device_id``'s message claiming ``seq`` (SHA-256 ``digest``) was quarantined."""
        if self._count >= self._max_refusals:
            self.dropped_refusals += 1
            return
        self._waiting.setdefault(device_id, _Waiting()).refused.append((seq, reason, digest))
        self._count += 1

    def resent(self, device_id: str, seq: int) -> None:
        """A reading the ledger had already sealed came again (the agent missed a receipt)."""
        self._waiting.setdefault(device_id, _Waiting()).resealed.add(seq)

    # receipts ---------------------------------------------------------------------------------

    async def after_block(self, block: BlockRecord, tree_size: int | None,
                          now_ms: int) -> None:
        """Receipts for the devices with a reading in ``block`` (and those with refusals or
        re-sent readings waiting). ``tree_size``: the log's size (None: read from the store)."""
        seqs = await self._store.reading_seqs(block.first_reading_id, block.end_reading_id)
        seqs.pop(STATEMENT_DEVICE, None)  # the collector's own statements: no agent to tell
        await self._issue(seqs, tree_size, now_ms)

    async def after_batch(self, tree_size: int | None, now_ms: int) -> None:
        """Receipts for the devices with refusals or re-sent readings waiting, at most every
        ``refusal_interval_ms``."""
        if self._waiting and now_ms - self._last_ms >= self._interval_ms:
            await self._issue({}, tree_size, now_ms)

    async def _issue(self, seqs: dict[str, list[int]], tree_size: int | None,
                     now_ms: int) -> None:
        async with self._issuing:
            self._last_ms = now_ms
            waiting, self._waiting, self._count = self._waiting, {}, 0
            devices = set(seqs) | set(waiting)
            try:
                marks = await self._store.sealed_marks(sorted(devices))
                if tree_size is None:  # read after the marks: it covers what they state
                    last = await self._store.last_block()
                    tree_size = last.end_reading_id - 1 if last is not None else 0
            except BaseException:
                self._put_back(waiting)  # told with the next receipt
                raise
            self._publish(devices, seqs, waiting, marks, tree_size, now_ms)

    def _put_back(self, waiting: dict[str, _Waiting]) -> None:
        for device_id, w in waiting.items():
            now = self._waiting.setdefault(device_id, _Waiting())
            now.refused[:0] = w.refused
            now.resealed |= w.resealed
            self._count += len(w.refused)

    def _publish(self, devices: set[str], seqs: dict[str, list[int]],
                 waiting: dict[str, _Waiting], marks: dict[str, int | None], tree_size: int,
                 now_ms: int) -> None:
        for device_id in sorted(devices):
            through = marks.get(device_id)
            w = waiting.get(device_id) or _Waiting()
            floor = -1 if through is None else through
            above = [s for s in seqs.get(device_id, ()) if s > floor]
            above += [s for s in w.resealed if s > floor]
            refused = _refusals(w.refused)
            if len(refused) > REFUSALS_PER_RECEIPT:
                self.dropped_refusals += len(refused) - REFUSALS_PER_RECEIPT
            try:
                receipt = Receipt(device_id=device_id, time_ms=now_ms, tree_size=tree_size,
                                  sealed_through=through, sealed=seq_ranges(above),
                                  refused=tuple(refused[:REFUSALS_PER_RECEIPT]))
                raw = SignedReceipt.sign(receipt, self._key).raw
            except ProvenanceError as exc:  # advice only: never a reason to stop ingest
                event(log, "receipt_failed", logging.ERROR, device_id=device_id,
                      error=exc.diagnostics())
                continue
            self._send(receipt_topic(device_id), raw)
            self.issued += 1
        if self.dropped_refusals:
            event(log, "receipt_refusals_dropped", logging.WARNING, count=self.dropped_refusals,
                  detail="too many refusals waiting; the agents re-publish and hear again")
            self.dropped_refusals = 0


def _refusals(entries: list[tuple[int, str, bytes]]) -> list[Refusal]:
    """Retryable refusals merged into seq ranges per reason; final ones one by one, with the
    digest of the refused message, so an agent lets go only of exactly those bytes."""
    out: list[Refusal] = []
    retry: dict[str, set[int]] = {}
    seen: set[tuple[int, str, bytes]] = set()
    for seq, reason, digest in entries:
        if reason in RETRY_REASONS:
            retry.setdefault(reason, set()).add(seq)
        elif (seq, reason, digest) not in seen:
            seen.add((seq, reason, digest))
            out.append(Refusal(seq, seq, reason, digest))
    for reason, seqs in sorted(retry.items()):
        out.extend(Refusal(r.first, r.last, reason) for r in seq_ranges(seqs))
    out.sort(key=lambda r: (r.first, r.reason))
    return out
