"""Sequence gaps of one device: ranges of seq numbers the ledger does not hold.

A gap opens when a reading's seq jumps past the next expected one. It is *explained* when the
device signs a gap record (kind ``gap``) naming that range as dropped from its spool, and it
shrinks when a missing reading arrives late. Pure list arithmetic; the store persists the lists.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SeqGap", "explain", "fill", "missing", "unexplained"]


@dataclass(slots=True)
class SeqGap:
    """Seqs ``first..last`` (inclusive) missing from the ledger."""

    first: int
    last: int
    detected_ms: int
    explained_by: int | None = None  # seq of the gap record that states the range was dropped

    @property
    def count(self) -> int:
        return self.last - self.first + 1


def fill(gaps: list[SeqGap], seq: int) -> bool:
    """A missing reading arrived: cut ``seq`` out of the gap holding it. True if one did."""
    for i, gap in enumerate(gaps):
        if gap.first <= seq <= gap.last:
            parts = [
                SeqGap(first, last, gap.detected_ms, gap.explained_by)
                for first, last in ((gap.first, seq - 1), (seq + 1, gap.last))
                if first <= last
            ]
            gaps[i:i + 1] = parts
            return True
    return False


def explain(gaps: list[SeqGap], first: int, last: int, by_seq: int) -> int:
    """Mark the parts of unexplained gaps inside ``first..last`` as explained by ``by_seq``.

    Gaps that overlap the range only partly are split, so exactly the stated seqs count as
    explained. Returns how many missing seqs became explained.
    """
    explained = 0
    out: list[SeqGap] = []
    for gap in gaps:
        lo, hi = max(gap.first, first), min(gap.last, last)
        if gap.explained_by is not None or lo > hi:
            out.append(gap)
            continue
        if gap.first < lo:
            out.append(SeqGap(gap.first, lo - 1, gap.detected_ms))
        out.append(SeqGap(lo, hi, gap.detected_ms, by_seq))
        explained += hi - lo + 1
        if hi < gap.last:
            out.append(SeqGap(hi + 1, gap.last, gap.detected_ms))
    gaps[:] = out
    return explained


def missing(gaps: list[SeqGap]) -> int:
    return sum(g.count for g in gaps)


def unexplained(gaps: list[SeqGap]) -> int:
    return sum(g.count for g in gaps if g.explained_by is None)
