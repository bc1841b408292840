"""What the pages and the API show, gathered from the store once and shared by both, so a
page and its JSON never disagree (and agree with ``ledger-collector stats``, whose
:func:`collector.tools.stats.collect_stats` they reuse).

Every function returns plain JSON-ready values; text that came from a device stays text, and
the templates and the JSON encoder escape it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collector.errors import NotFoundError
from collector.ingest.presence import load_presence, presence_path
from collector.ledger.pg_base import is_postgres_url
from collector.ledger.records import BlockRecord, CheckpointRecord, QuarantineEntry, ReadingRecord
from collector.tools.stats import collect_stats
from collector.web.viewstore import ViewStore
from provenance.block import SignedBlock
from provenance.checkpoint import parse_checkpoint
from provenance.envelope import Envelope
from provenance.errors import ProvenanceError
from provenance.note import parse_note
from provenance.prooffile import reading_to_json

__all__ = [
    "block_facts",
    "checkpoint_facts",
    "device_list",
    "iso",
    "overview",
    "quarantine_facts",
    "reading_facts",
    "reading_row",
]

#: How many recent blocks the blocks-per-minute figure looks at, at most.
_RATE_WINDOW_BLOCKS = 2000


def iso(ms: int | None) -> str | None:
    """UTC ISO 8601 to the millisecond; None for no time."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def checkpoint_facts(cp: CheckpointRecord, log_names: set[str],
                     cosignatures: Sequence[tuple[str, str, int]] = ()) -> dict[str, Any]:
    note = parse_note(cp.note)
    parsed = parse_checkpoint(note.text)
    return {
        "size": cp.size, "root": cp.root.hex(), "origin": parsed.origin,
        "block_height": cp.block_height, "signed_ms": cp.signed_ms,
        "signed_at": iso(cp.signed_ms), "note": cp.note.decode("utf-8"),
        "signatures": [{"name": s.name, "key_id": f"{s.key_id:08x}",
                        "role": "log" if s.name in log_names else "witness"}
                       for s in note.signatures],
        # C2SP cosignature/v1 lines witnesses returned for this checkpoint (the witness
        # branch's table); appended to the note they make the cosigned checkpoint.
        "cosignatures": [{"witness": w.split("+", 1)[0], "vkey": w, "line": line,
                          "cosigned_s": t, "cosigned_at": iso(t * 1000)}
                         for w, line, t in cosignatures],
    }


async def _log_names(store: ViewStore) -> set[str]:
    return {v.split("+", 1)[0] for v in await store.log_vkeys()}


async def overview(store: ViewStore) -> dict[str, Any]:
    """Ledger size, the latest checkpoint and its signatures, blocks per minute, backlog and
    quarantine counts by reason."""
    stats = await collect_stats(store)
    now = _now_ms()
    async with store.snapshot():
        last = await store.last_block()
        cp = await store.checkpoint()
        tree_size = await store.tree_size()
        recent: list[BlockRecord] = []
        if last is not None:
            recent = await store.blocks(max(0, last.height - _RATE_WINDOW_BLOCKS + 1),
                                        _RATE_WINDOW_BLOCKS)
        vkeys = await store.log_vkeys()
        names = {v.split("+", 1)[0] for v in vkeys}
        origin = await store.log_origin()
    last_minute = sum(1 for b in recent if b.sealed_ms >= now - 60_000)
    last_ten = sum(1 for b in recent if b.sealed_ms >= now - 600_000)
    return {
        "readings": stats.readings, "blocks": stats.blocks, "tree_size": tree_size,
        "unsealed": stats.unsealed, "duplicates": stats.duplicates,
        "devices": len([d for d in stats.devices if not d.startswith("@")]),
        "quarantined": sum(stats.quarantined.values()),
        "quarantined_by_reason": stats.quarantined,
        "blocks_last_minute": last_minute,
        # over the last 10 minutes (of the last 2,000 blocks at most)
        "blocks_per_minute_10min": round(last_ten / 10, 1),
        "last_block": None if last is None else {
            "height": last.height, "sealed_ms": last.sealed_ms, "sealed_at": iso(last.sealed_ms),
            "age_s": round((now - last.sealed_ms) / 1000, 1)},
        "checkpoint": None if cp is None else checkpoint_facts(
            cp, names, await store.cosignature_times(cp.size)),
        "log_origin": origin,
        "log_vkeys": vkeys,
        "warnings": stats.warnings,
        "generated_at": iso(now),
    }


async def device_list(store: ViewStore, database: str | Path,
                      only: str | None = None) -> list[dict[str, Any]]:
    """Every device (or ``only`` that one) with its health, as ``stats`` counts it, plus kind
    and presence."""
    stats = await collect_stats(store, only)
    # A PostgreSQL ledger's presence boards are each collector's own local files.
    presence = {} if is_postgres_url(str(database)) else load_presence(presence_path(database))
    out = []
    for dev, row in stats.devices.items():
        if dev.startswith("@"):  # collector statements: no device
            continue
        p = presence.get(dev)
        out.append({
            **row,
            "kind": await store.device_kind(dev),
            "online": None if p is None else p.online,
            "presence_changed": None if p is None else iso(p.changed_ms),
            "last_heartbeat": None if p is None else iso(p.last_seen_ms),
        })
    return out


def reading_row(r: ReadingRecord) -> dict[str, Any]:
    """A reading as the API lists it: decoded, with its UTC time and ledger position."""
    reading = Envelope.decode(r.envelope).reading()
    return {"reading_id": r.id, "leaf_index": r.id - 1, **reading_to_json(reading),
            "time_utc": iso(reading.time_ms), "received_ms": r.received_ms,
            "received_utc": iso(r.received_ms),
            "envelope_sha256": hashlib.sha256(r.envelope).hexdigest()}


async def reading_facts(store: ViewStore, device_id: str, seq: int) -> dict[str, Any]:
    """One reading, decoded, with its block and the checkpoint that first covered it."""
    async with store.snapshot():
        r = await store.find_reading(device_id, seq)
        if r is None:
            raise NotFoundError(f"the ledger holds no reading {device_id} seq {seq}")
        block = await store.block_of_reading(r.id)
        cp = await store.checkpoint(block.end_reading_id - 1) if block is not None else None
        names = await _log_names(store)
        latest = await store.checkpoint()
    row = reading_row(r)
    row["block"] = None if block is None else {
        "height": block.height, "index_in_block": r.id - block.first_reading_id,
        "sealed_at": iso(block.sealed_ms)}
    row["checkpoint"] = None if cp is None else checkpoint_facts(
        cp, names, await store.cosignature_times(cp.size))
    row["provable"] = latest is not None and latest.size >= r.id
    row["envelope_hex"] = r.envelope.hex()
    return row


def _block_row(b: BlockRecord) -> dict[str, Any]:
    h = SignedBlock.decode(b.header).header
    row: dict[str, Any] = {
        "height": b.height, "hash": b.hash.hex(), "prev_hash": h.prev_hash.hex(),
        "merkle_root": h.merkle_root.hex(), "leaf_count": h.leaf_count,
        "first_reading_id": b.first_reading_id, "first_time_ms": h.first_time_ms,
        "last_time_ms": h.last_time_ms, "sealed_at_ms": h.sealed_at_ms,
        "first_time": iso(h.first_time_ms), "last_time": iso(h.last_time_ms),
        "sealed_at": iso(h.sealed_at_ms), "collector_kid": h.collector_kid.hex(),
        "format": h.version,
    }
    if h.tree_size_before is not None:
        row.update(tree_size_before=h.tree_size_before, tree_size_after=h.tree_size_after)
    return row


async def block_facts(store: ViewStore, start: int | None, limit: int,
                      height: int | None = None) -> list[dict[str, Any]]:
    """Blocks from ``start`` (default: the last ``limit``), or block ``height``."""
    if height is not None:
        b = await store.block(height)
        if b is None:
            raise NotFoundError(f"there is no block {height}")
        return [_block_row(b)]
    if start is None:
        last = await store.last_block()
        start = max(0, (last.height + 1 if last else 0) - limit)
    return [_block_row(b) for b in await store.blocks(start, limit)]


def _quarantine_row(e: QuarantineEntry) -> dict[str, Any]:
    q = e.record
    try:
        preview = q.raw[:64].hex()
    except (ProvenanceError, ValueError):
        preview = ""
    return {"id": e.id, "reason": q.reason, "detail": q.detail, "topic": q.topic,
            "topic_device": q.topic_device, "device_id": q.device_id, "seq": q.seq,
            "size": q.size, "sha256": q.raw_sha256.hex(), "first_ms": q.received_ms,
            "last_ms": e.last_ms, "first_seen": iso(q.received_ms), "last_seen": iso(e.last_ms),
            "times_seen": e.times_seen, "raw_prefix_hex": preview}


async def quarantine_facts(store: ViewStore, reason: str | None, device_id: str | None,
                           limit: int) -> dict[str, Any]:
    entries = await store.quarantine_entries(reason=reason, device_id=device_id, limit=limit)
    counts = await store.quarantine_counts()
    reasons: dict[str, int] = {}
    for (_dev, why), n in counts.items():
        reasons[why] = reasons.get(why, 0) + n
    return {"entries": [_quarantine_row(e) for e in entries],
            "reasons": dict(sorted(reasons.items()))}
