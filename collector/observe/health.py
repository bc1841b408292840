"""The collector's health rule, pure: a function of the live state, the clock and the config.

Failing (HTTP 503) exactly when **readings wait and no checkpoint has been signed for twice
the block age**:

* "readings wait": the oldest reading the collector has received and not yet sealed (in the
  inbox, in verification, in the commit batch, or committed and unsealed) arrived more than
  ``2 × blocks.age`` ago, by the collector clock; and
* "no checkpoint": the newest checkpoint (one per block) was signed more than
  ``2 × blocks.age`` ago, counting from the collector's start if it signed none since.

A collector that seals, however far behind it runs, signs a checkpoint at least every block
age and stays healthy; one that is idle has nothing waiting and stays healthy. Sealing that
stops (a database another process holds locked, a full disk) while readings wait fails.
"""

from __future__ import annotations

from collector.metrics import LiveState
from common.exposition import Health

__all__ = ["assess"]


def assess(live: LiveState, *, now_ms: int, started_ms: int, block_age_s: float) -> Health:
    limit_ms = int(2 * block_age_s * 1000)
    reference_ms = max(live.last_checkpoint_ms or 0, started_ms)
    since_checkpoint_ms = max(0, now_ms - reference_ms)
    detail: dict[str, object] = {
        "limit_s": limit_ms / 1000,
        "waiting": live.backlog,
        "tree_size": live.tree_size,
        "checkpoint_age_s": (None if live.last_checkpoint_ms is None
                             else round(max(0, now_ms - live.last_checkpoint_ms) / 1000, 3)),
    }
    if live.oldest_waiting_ms is None:
        return Health(True, {**detail, "reason": "no readings waiting"})
    waited_ms = max(0, now_ms - live.oldest_waiting_ms)
    detail["oldest_waiting_s"] = round(waited_ms / 1000, 3)
    if waited_ms > limit_ms and since_checkpoint_ms > limit_ms:
        signed = ("no checkpoint signed since the collector started"
                  if (live.last_checkpoint_ms or 0) < started_ms
                  else f"last checkpoint signed {since_checkpoint_ms / 1000:.1f} s ago")
        return Health(False, {**detail, "reason": (
            f"sealing has stopped: {signed}, while {live.backlog} reading(s) wait, the oldest "
            f"for {waited_ms / 1000:.1f} s (limit: twice the block age, {limit_ms / 1000:g} s)")})
    return Health(True, {**detail, "reason": "sealing keeps up"})
