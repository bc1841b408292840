"""The commit->seal latency of a single collector's readings: which commit each unsealed leaf
came from, in sealing order, so that a block sealed at time T observes ``T - commit time``
for each of its leaves (``sensorledger_commit_to_seal_seconds``)."""

from __future__ import annotations

from collections import deque
from typing import TypeVar

from collector.metrics import LatencyHistogram

__all__ = ["CommitMarks", "first"]

T = TypeVar("T")


class CommitMarks:
    """[leaves, commit time ms or None if unknown] per commit, oldest first. Leaves found
    pending at start were committed by an earlier run, at a time not kept."""

    def __init__(self, histogram: LatencyHistogram, pending_at_start: int) -> None:
        self._histogram = histogram
        self._marks: deque[list[int | None]] = deque()
        if pending_at_start:
            self._marks.append([pending_at_start, None])

    def committed(self, leaves: int, at_ms: int) -> None:
        if leaves:
            self._marks.append([leaves, at_ms])

    def sealed(self, count: int, sealed_ms: int) -> None:
        """The ``count`` oldest unsealed leaves were sealed at ``sealed_ms``."""
        marks = self._marks
        while count > 0 and marks:
            mark = marks[0]
            left, committed_ms = mark
            assert left is not None
            take = min(count, left)
            if committed_ms is not None:
                self._histogram.observe((sealed_ms - committed_ms) / 1000, take)
            count -= take
            if take == left:
                marks.popleft()
            else:
                mark[0] = left - take


def first(items: deque[T]) -> T | None:
    """The first of ``items``, or None; safe while another thread empties the deque."""
    try:
        return items[0]
    except IndexError:
        return None
