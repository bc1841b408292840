"""The overflow plan: which readings a batch pushes out of a full spool, which gap records it signs.

Pure: no SQLite, no keys, no clock. The intake gives it the batch (one flag per item: relayed or
not), the oldest readings in the spool and the spool's state; it returns the steps in signing
order. The intake signs the steps, and the spool stores the result, in one transaction.

The policy (docs/agent.md, "Overflow and gap records"):

* **Bounded.** At most ``limit`` readings (own and relayed) are kept. A reading that arrives at
  a full spool pushes out the oldest one. Gap records are never pushed out and do not count
  towards the limit: they are how a loss is proven, and there is at most one per episode.
* **Episodes.** An episode opens at the first drop. While it is open, each further drop
  extends its range ``[first, last]`` (the spool persists it with the drop, so it survives
  restarts). It closes, and its one gap record is signed (taking the next seq, chained
  normally, spooled like a reading), at the first reading that finds room in the spool again,
  i.e. once the publisher has made room. If a drop would not extend the range contiguously (a
  retained record sits between), the episode is closed first and a new one opens, so every
  gap record names exactly the seqs it dropped.
* Relayed envelopes belong to other devices' chains: their drops are counted
  (``dropped_relayed``) but cannot be signed for.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "Held",
    "OverflowPlan",
    "SignGap",
    "SignItem",
    "Step",
    "TakeRelay",
    "oldest_needed",
    "plan_overflow",
]


@dataclass(frozen=True, slots=True)
class Held:
    """A reading already in the spool, which a full spool may push out (oldest first)."""

    pos: int
    seq: int
    relayed: bool


@dataclass(frozen=True, slots=True)
class SignItem:
    """Sign item ``item`` of the batch; it takes sequence number ``seq``."""

    item: int
    seq: int


@dataclass(frozen=True, slots=True)
class SignGap:
    """Sign a gap record for the dropped seqs ``first..last``; it takes ``seq``."""

    seq: int
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class TakeRelay:
    """Spool item ``item`` of the batch as it is (a relayed envelope takes no seq of ours)."""

    item: int


Step = SignItem | SignGap | TakeRelay


@dataclass(slots=True)
class OverflowPlan:
    """The steps of one batch in signing order, and the spool's state after it."""

    steps: list[Step] = field(default_factory=list)
    #: Per step: False when a later item of the same batch pushes it out again. It is still
    #: signed (the next reading's ``prev`` is its hash) but never stored.
    kept: list[bool] = field(default_factory=list)
    #: Positions of spooled readings pushed out.
    delete: list[int] = field(default_factory=list)
    next_seq: int = 0
    gap: tuple[int, int] | None = None
    depth: int = 0
    dropped: int = 0
    dropped_relayed: int = 0

    @property
    def signed(self) -> int:
        return sum(isinstance(s, SignItem) for s in self.steps)

    @property
    def relayed(self) -> int:
        return sum(isinstance(s, TakeRelay) for s in self.steps)

    @property
    def gap_records(self) -> int:
        return sum(isinstance(s, SignGap) for s in self.steps)


@dataclass(slots=True)
class _Candidate:
    """A reading that may be pushed out: spooled (``pos``) or new in this batch (``step``)."""

    seq: int
    relayed: bool
    pos: int | None = None
    step: int | None = None


def oldest_needed(depth: int, arrivals: int, limit: int) -> int:
    """How many of the oldest spooled readings a batch of ``arrivals`` may push out."""
    return min(max(0, depth + arrivals - limit), depth)


def plan_overflow(
    relayed: Sequence[bool], oldest: Sequence[Held], *, depth: int, limit: int,
    next_seq: int, gap: tuple[int, int] | None,
) -> OverflowPlan:
    """Plan a batch: ``relayed`` has one flag per arriving item (True: a relayed envelope).

    ``oldest`` holds at least :func:`oldest_needed` of the spool's oldest readings (gap
    records excluded), ``depth`` is how many readings the spool holds, ``gap`` the open
    episode. Raises ValueError if ``oldest`` is too short for what must be pushed out.
    """
    if len(oldest) < oldest_needed(depth, len(relayed), limit):
        raise ValueError("the plan needs more of the oldest spooled readings")
    plan = OverflowPlan(next_seq=next_seq)
    candidates = deque(_Candidate(h.seq, h.relayed, pos=h.pos) for h in oldest)

    def close(episode: tuple[int, int]) -> None:
        plan.steps.append(SignGap(plan.next_seq, episode[0], episode[1]))
        plan.kept.append(True)
        plan.next_seq += 1

    for index, is_relay in enumerate(relayed):
        dropped_now = False
        # "while": the limit may have been lowered since these rows were spooled.
        while depth >= limit:
            dropped_now = True
            victim = candidates.popleft()
            depth -= 1
            if victim.pos is not None:
                plan.delete.append(victim.pos)
            else:
                assert victim.step is not None
                plan.kept[victim.step] = False
            if victim.relayed:
                plan.dropped_relayed += 1
                continue
            plan.dropped += 1
            if gap is not None and victim.seq != gap[1] + 1:
                close(gap)
                gap = None
            gap = (victim.seq, victim.seq) if gap is None else (gap[0], victim.seq)
        if not dropped_now and gap is not None:
            close(gap)
            gap = None
        step: Step
        if is_relay:
            step, seq = TakeRelay(index), -1  # another chain's seq: never part of our gaps
        else:
            step, seq = SignItem(index, plan.next_seq), plan.next_seq
            plan.next_seq += 1
        plan.steps.append(step)
        plan.kept.append(True)
        candidates.append(_Candidate(seq, is_relay, step=len(plan.steps) - 1))
        depth += 1
    plan.gap = gap
    plan.depth = depth
    return plan
