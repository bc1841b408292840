"""Sign and spool in one transaction: the overflow plan, the chain signer and the spool store.

The agent's first rule (docs/agent.md, "Spool contract"): a batch of drafts is signed and
committed together with the new chain head, the boot counter's run, the overflow state and
the counters. The chain signer signs *provisionally*; only after the commit does it adopt the
new head (:meth:`ChainSigner.advance`), so if the commit fails no sequence number is spent on
a reading that is not on disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ..signer import ChainHead, ChainSigner, Draft, Entry, Relay
from ..spool.overflow import OverflowPlan, SignGap, SignItem, oldest_needed, plan_overflow
from ..spool.store import BatchTotals, Spool

__all__ = ["SIGN_ON_LOOP", "sign_and_spool"]

#: Batches up to this many readings are signed on the event loop, larger ones in a thread.
SIGN_ON_LOOP = 8


async def sign_and_spool(
    spool: Spool, items: Sequence[Draft | Relay], signer: ChainSigner
) -> None:
    """Plan overflow, sign the drafts and gap records, and commit it all in one transaction."""
    if not items:
        return
    async with spool.transaction() as txn:
        need = oldest_needed(txn.depth, len(items), spool.max_readings)
        plan = plan_overflow(
            [isinstance(item, Relay) for item in items], await txn.oldest(need),
            depth=txn.depth, limit=spool.max_readings, next_seq=signer.head.next_seq,
            gap=txn.gap)
        # Signing is CPU work (~50 µs a reading): a large batch is signed in a worker thread
        # so that the publisher keeps its share of the event loop; a few readings cost less
        # than the hand-off to a thread and back.
        if len(items) <= SIGN_ON_LOOP:
            entries, head = _sign(plan, items, signer)
        else:
            entries, head = await asyncio.to_thread(_sign, plan, items, signer)
        await txn.write(
            entries, delete=plan.delete, head=head, gap=plan.gap, depth=plan.depth,
            totals=BatchTotals(signed=plan.signed, relayed=plan.relayed, dropped=plan.dropped,
                               dropped_relayed=plan.dropped_relayed,
                               gap_records=plan.gap_records))
    signer.advance(head)


def _sign(
    plan: OverflowPlan, items: Sequence[Draft | Relay], signer: ChainSigner
) -> tuple[list[Entry], ChainHead]:
    """The plan's steps signed in order; returns the entries to store and the head after."""
    head = signer.head
    entries: list[Entry] = []
    for step, kept in zip(plan.steps, plan.kept, strict=True):
        if isinstance(step, SignItem):
            draft = items[step.item]
            assert isinstance(draft, Draft) and step.seq == head.next_seq
            entry, head = signer.sign(draft, head)
        elif isinstance(step, SignGap):
            assert step.seq == head.next_seq
            entry, head = signer.sign_gap(step.first, step.last, head)
        else:
            relay = items[step.item]
            assert isinstance(relay, Relay)
            entry = Entry(relay.device_id, relay.seq, relay.envelope, relayed=True)
        if kept:  # a reading its own batch pushed out is signed (for the chain), not stored
            entries.append(entry)
    return entries, head
