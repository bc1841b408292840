"""What a collector receipt does to the spool's rows, inside the spool's write transaction:
the rows it states sealed leave, a row refused for good leaves only if it holds the very bytes
refused, rows refused for a reason that may pass later are marked, and the receipt of the
largest tree is kept as the latest (receipts from two collectors, or a retained one
redelivered, may come out of order)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import aiosqlite

from provenance.receipt import RETRY_REASONS, SignedReceipt

__all__ = ["RETURNING", "Applied", "apply_receipt"]

#: What a deleted row counted for: a reading (not a gap record), and one awaiting a receipt.
RETURNING = " RETURNING is_gap = 0, is_gap = 0 AND sent_ms IS NOT NULL"
_OWN = "device_id = ? AND relayed = 0"


@dataclass(slots=True)
class Applied:
    removed: list[tuple[int, int]] = field(default_factory=list)  # (reading, waiting) a row
    released: int = 0  # readings the receipt states sealed
    final: int = 0  # readings refused for good
    kept: int = 0  # rows marked refused for a reason that may pass later


async def apply_receipt(db: aiosqlite.Connection, device_id: str, signed: SignedReceipt,
                        now_ms: int) -> Applied:
    r = signed.receipt
    out = Applied()
    ranges = [(0, r.sealed_through)] if r.sealed_through is not None else []
    ranges += [(x.first, x.last) for x in r.sealed]
    for first, last in ranges:
        cursor = await db.execute(
            f"DELETE FROM spool WHERE {_OWN} AND seq BETWEEN ? AND ?" + RETURNING,
            (device_id, first, last))
        out.removed += [tuple(row) for row in await cursor.fetchall()]
    out.released = sum(int(reading) for reading, _ in out.removed)
    for refusal in r.refused:
        if refusal.reason in RETRY_REASONS:
            cursor = await db.execute(
                f"UPDATE spool SET refused = ? WHERE {_OWN} AND seq BETWEEN ? AND ?",
                (refusal.reason, device_id, refusal.first, refusal.last))
            out.kept += cursor.rowcount
        elif refusal.digest is not None:
            for pos, envelope in await db.execute_fetchall(
                    f"SELECT pos, envelope FROM spool WHERE {_OWN} AND seq = ?",
                    (device_id, refusal.first)):
                if hashlib.sha256(envelope).digest() == refusal.digest:
                    cursor = await db.execute("DELETE FROM spool WHERE pos = ?" + RETURNING,
                                              (pos,))
                    gone = [tuple(row) for row in await cursor.fetchall()]
                    out.removed += gone
                    out.final += sum(int(reading) for reading, _ in gone)
        await db.execute(
            "INSERT INTO refusals(reason, count, last_seq, last_ms) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(reason) DO UPDATE SET "
            "count = count + excluded.count, last_seq = excluded.last_seq, "
            "last_ms = excluded.last_ms",
            (refusal.reason, refusal.last - refusal.first + 1, refusal.last, now_ms))
    await db.execute(
        "UPDATE state SET sealed = sealed + :released, "
        "refused_final = refused_final + :final, "
        "sealed_through = CASE WHEN :through IS NULL THEN sealed_through "
        "ELSE MAX(COALESCE(sealed_through, -1), :through) END, "
        "receipt_ms = CASE WHEN :tree >= COALESCE(receipt_tree, -1) THEN :now "
        "ELSE receipt_ms END, "
        "receipt = CASE WHEN :tree >= COALESCE(receipt_tree, -1) THEN :raw ELSE receipt END, "
        "receipt_tree = MAX(COALESCE(receipt_tree, -1), :tree) WHERE id = 1",
        {"released": out.released, "final": out.final, "through": r.sealed_through,
         "tree": r.tree_size, "now": now_ms, "raw": signed.raw})
    return out
