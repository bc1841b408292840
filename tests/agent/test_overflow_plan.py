"""The overflow plan on its own: which readings a batch pushes out, which gap records it signs.

Pure: no SQLite, no keys. The spool tests (test_spool.py) hold the same policy end to end.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.spool.overflow import (
    Held,
    SignGap,
    SignItem,
    TakeRelay,
    oldest_needed,
    plan_overflow,
)


def held(*seqs: int, relayed: bool = False) -> list[Held]:
    return [Held(pos=100 + seq, seq=seq, relayed=relayed) for seq in seqs]


def test_a_spool_with_room_signs_each_draft_in_order_and_drops_nothing() -> None:
    plan = plan_overflow([False, False, False], [], depth=2, limit=5, next_seq=7, gap=None)
    assert plan.steps == [SignItem(0, 7), SignItem(1, 8), SignItem(2, 9)]
    assert plan.kept == [True, True, True]
    assert plan.delete == [] and plan.dropped == 0 and plan.gap is None
    assert (plan.next_seq, plan.depth, plan.signed, plan.gap_records) == (10, 5, 3, 0)


def test_a_full_spool_pushes_out_the_oldest_and_opens_an_episode() -> None:
    plan = plan_overflow([False], held(0, 1, 2), depth=3, limit=3, next_seq=3, gap=None)
    assert plan.delete == [100]
    assert plan.steps == [SignItem(0, 3)]
    assert plan.gap == (0, 0) and plan.dropped == 1 and plan.gap_records == 0
    assert plan.depth == 3


def test_each_further_drop_extends_the_open_episode() -> None:
    plan = plan_overflow([False, False], held(5, 6), depth=3, limit=3, next_seq=9, gap=(0, 4))
    assert plan.delete == [105, 106] and plan.gap == (0, 6) and plan.dropped == 2


def test_the_first_reading_that_finds_room_closes_the_episode_with_one_gap_record() -> None:
    plan = plan_overflow([False, False], [], depth=1, limit=3, next_seq=9, gap=(0, 6))
    assert plan.steps == [SignGap(seq=9, first=0, last=6), SignItem(0, 10), SignItem(1, 11)]
    assert plan.gap is None and plan.gap_records == 1 and plan.next_seq == 12


def test_a_non_contiguous_drop_closes_the_episode_first() -> None:
    # Episode (0, 0) is open; the oldest reading left is seq 2 (a gap record 1 sits between).
    plan = plan_overflow([False], held(2), depth=1, limit=1, next_seq=3, gap=(0, 0))
    assert plan.steps == [SignGap(seq=3, first=0, last=0), SignItem(0, 4)]
    assert plan.gap == (2, 2) and plan.delete == [102]


def test_a_batch_larger_than_the_spool_pushes_out_its_own_oldest() -> None:
    plan = plan_overflow([False] * 5, [], depth=0, limit=2, next_seq=0, gap=None)
    # All five are signed (each next reading's prev is the hash of the one before) ...
    assert plan.steps == [SignItem(i, i) for i in range(5)]
    # ... and only the newest two are stored.
    assert plan.kept == [False, False, False, True, True]
    assert plan.gap == (0, 2) and plan.dropped == 3 and plan.depth == 2


def test_relayed_envelopes_are_counted_when_dropped_but_never_named_by_a_gap_record() -> None:
    plan = plan_overflow([True, False], held(41, relayed=True), depth=1, limit=1, next_seq=0,
                         gap=None)
    assert plan.steps == [TakeRelay(0), SignItem(1, 0)]
    assert plan.kept == [False, True]
    assert plan.delete == [141]
    assert (plan.dropped_relayed, plan.dropped, plan.gap) == (2, 0, None)
    assert plan.relayed == 1 and plan.signed == 1


def test_a_lowered_limit_is_enforced_at_the_next_reading() -> None:
    assert oldest_needed(depth=10, arrivals=1, limit=4) == 7
    plan = plan_overflow([False], held(*range(7)), depth=10, limit=4, next_seq=10, gap=None)
    assert plan.delete == [100 + s for s in range(7)]
    assert plan.gap == (0, 6) and plan.depth == 4


def test_the_plan_refuses_too_few_oldest_readings() -> None:
    with pytest.raises(ValueError, match="oldest"):
        plan_overflow([False], [], depth=3, limit=3, next_seq=3, gap=None)


@given(limit=st.integers(1, 6), depth=st.integers(0, 8),
       batch=st.lists(st.booleans(), min_size=1, max_size=12))
def test_every_dropped_seq_is_named_once_and_the_limit_holds(
    limit: int, depth: int, batch: list[bool]
) -> None:
    oldest = held(*range(oldest_needed(depth, len(batch), limit)))
    first_new = 100
    plan = plan_overflow(batch, oldest, depth=depth, limit=limit, next_seq=first_new, gap=None)
    assert plan.depth <= limit
    named = [s for step in plan.steps if isinstance(step, SignGap)
             for s in range(step.first, step.last + 1)]
    if plan.gap is not None:
        named += list(range(plan.gap[0], plan.gap[1] + 1))
    dropped_new = [step.seq for step, kept in zip(plan.steps, plan.kept, strict=True)
                   if isinstance(step, SignItem) and not kept]
    assert sorted(named) == sorted([h.seq for h in oldest] + dropped_new)
    assert len(set(named)) == len(named), "a seq is named by two gap records"
    assert plan.dropped == len(named)
    signed_seqs = [s.seq for s in plan.steps if not isinstance(s, TakeRelay)]
    assert signed_seqs == list(range(first_new, plan.next_seq)), "seqs are consecutive"
