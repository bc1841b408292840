"""The health rule, exactly: failing when readings wait and no checkpoint has been signed for
twice the block age (collector/observe/health.py)."""

from __future__ import annotations

from collector.metrics import LiveState
from collector.observe.health import assess

AGE_S = 1.0  # limit: 2 s
START = 1_000_000


def live(*, oldest: int | None, checkpoint: int | None, unsealed: int = 5) -> LiveState:
    return LiveState(inbox=0, verifying=0, committing=0, unsealed=unsealed, tree_size=10,
                     last_checkpoint_ms=checkpoint, oldest_waiting_ms=oldest)


def check(state: LiveState, now: int) -> bool:
    return assess(state, now_ms=now, started_ms=START, block_age_s=AGE_S).ok


def test_nothing_waiting_is_healthy_however_old_the_checkpoint() -> None:
    h = assess(live(oldest=None, checkpoint=START - 3_600_000, unsealed=0),
               now_ms=START + 3_600_000, started_ms=START, block_age_s=AGE_S)
    assert h.ok and h.detail["reason"] == "no readings waiting"


def test_fails_only_when_both_the_wait_and_the_checkpoint_pass_the_limit() -> None:
    now = START + 10_000
    assert check(live(oldest=now - 2_000, checkpoint=now - 9_000), now)  # waited == limit
    assert not check(live(oldest=now - 2_001, checkpoint=now - 2_001), now)
    assert check(live(oldest=now - 9_000, checkpoint=now - 2_000), now)  # sealing, behind
    assert check(live(oldest=now - 100, checkpoint=now - 9_000), now)  # fresh reading
    failing = assess(live(oldest=now - 5_000, checkpoint=now - 4_000), now_ms=now,
                     started_ms=START, block_age_s=AGE_S)
    assert not failing.ok
    assert failing.detail["reason"] == (
        "sealing has stopped: last checkpoint signed 4.0 s ago, while 5 reading(s) wait, the "
        "oldest for 5.0 s (limit: twice the block age, 2 s)")
    assert (failing.detail["oldest_waiting_s"], failing.detail["checkpoint_age_s"]) == (5.0, 4.0)


def test_a_checkpoint_from_before_the_start_counts_from_the_start() -> None:
    # A restart after a long stop: the old checkpoint is hours old, but this collector has
    # had only a moment to seal what the broker kept for it.
    old = START - 3_600_000
    assert check(live(oldest=old, checkpoint=old), START + 1_500)
    failing = assess(live(oldest=old, checkpoint=None), now_ms=START + 2_500, started_ms=START,
                     block_age_s=AGE_S)
    assert not failing.ok
    assert "no checkpoint signed since the collector started" in str(failing.detail["reason"])
