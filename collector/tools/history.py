"""A device's history file, built from the store: every envelope of the device in a seq range
and its inclusion path under one checkpoint. The paths share their upper nodes, and each node
is read once (one batched read of the tree tiles for the whole file)."""

from __future__ import annotations

from collector.errors import NotFoundError
from collector.ledger.store import LedgerStore
from collector.tools.proofs import cosigned_note, pick_cosigned
from provenance.envelope import Envelope
from provenance.history import HistoryFile
from provenance.merkle import inclusion_nodes

__all__ = ["build_history"]


async def build_history(store: LedgerStore, device_id: str, first: int | None,
                        last: int | None, *, size: int | None = None,
                        quorum: int = 0) -> HistoryFile:
    async with store.snapshot():
        rows = []
        query = store.query_readings(device_id=device_id)  # in seq order
        try:
            async for r in query:
                if last is not None and r.seq > last:
                    break  # nothing further is in the range
                if first is None or r.seq >= first:
                    rows.append(r)
        finally:
            aclose = getattr(query, "aclose", None)
            if aclose is not None:
                await aclose()
        cp = await pick_cosigned(store, quorum, size, max((r.id for r in rows), default=0))
        if not rows:
            raise NotFoundError(f"the ledger holds no reading of {device_id} in that range")
        outside = [r for r in rows if r.id > cp.size]
        if outside:
            raise NotFoundError(f"{device_id} seq {outside[0].seq} is not in the checkpoint of "
                                f"tree size {cp.size} yet; try again after the next block")
        kid = Envelope.decode(rows[0].envelope).kid
        key = await store.device_key(kid)
        if key is None:
            raise NotFoundError(f"the key {kid.hex()} of {device_id} is not in the registry")
        ranges = [inclusion_nodes(r.id - 1, cp.size) for r in rows]
        flat = sorted({rng for per in ranges for rng in per})
        hashes = dict(zip(flat, await store.subtree_hashes(flat), strict=True))
        note = await cosigned_note(store, cp)
    return HistoryFile(
        key.public_key_der, note,
        first if first is not None else rows[0].seq,
        last if last is not None else rows[-1].seq,
        tuple((r.id - 1, r.envelope, tuple(hashes[rng] for rng in per))
              for r, per in zip(rows, ranges, strict=True)),
    )
