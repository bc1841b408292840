"""Test-only crash hook: die with SIGKILL at a named point, to prove crash safety.

Set ``SENSORLEDGER_COLLECTOR_CRASH_AT=<point>[:<n>]`` in the collector's environment and the
process kills itself (SIGKILL: no cleanup, no flush, as a power cut) the n-th time (default 1)
it reaches ``<point>``. Unset, :func:`point` is a dictionary lookup and nothing else. Points:

``batch.before_commit``
    a batch's readings, quarantine rows and device state are written in the open transaction,
    COMMIT not yet issued (the "mid-batch" crash).
``batch.after_commit``
    the batch is durable; none of its messages is acknowledged yet.
``acks.partial``
    the MQTT thread has sent some of a batch's acknowledgements but not all.
``seal.before_commit``
    a block row is written in the open transaction, COMMIT not yet issued (the "mid-seal" crash).
``seal.after_commit``
    the block is durable; the collector has not yet moved on.
``seal.nodes_written``
    a format 2 block's row, tree nodes and tree size are written, its checkpoint not yet.
``cluster.seal_ids_assigned``
    a cluster sealer holds the log-head lock and has given the next leaf indices to the
    readings of its block in the open transaction; nothing else of the block is written yet.
``migrate.before_commit`` / ``checkpoint.before_commit``
    ``migrate`` has written a chunk of tree nodes / the head checkpoint, COMMIT not yet issued.
``erase.before_commit`` / ``erase.after_commit`` / ``erase.after_vacuum``
    ``erase`` has deleted a subject's rows, COMMIT not yet issued / committed, not yet
    scrubbed / vacuumed, WAL not yet emptied.
``rotate.recorded``
    ``key rotate`` has recorded the pending rotation; the new key files are not in place yet.
``rotate.statement_committed`` / ``rotate.sealed``
    a starting collector completing a rotation has logged the ``key-rotate`` statement, not
    sealed it yet / sealed it under the old keys, not switched to the new keys yet (on
    PostgreSQL all inside the one completing transaction, not committed yet).
``note_key.written``
    a new note key (``init``, ``key rotate``, a mirror's own key) is written and fsynced under
    its temporary name, not linked into place yet.
``mirror.identity``
    a new mirror has stored the collector key of its policy, not the log's origin yet.
``mirror.before_commit`` / ``mirror.after_commit``
    a mirror has written a chunk of verified entries, tree nodes and tree size (and, for the
    last chunk, the checkpoint) in the open transaction, COMMIT not yet issued / committed.
"""

from __future__ import annotations

import os
import signal

__all__ = ["ENV", "POINTS", "point"]

ENV = "SENSORLEDGER_COLLECTOR_CRASH_AT"
POINTS = frozenset({
    "batch.before_commit", "batch.after_commit", "acks.partial",
    "seal.before_commit", "seal.after_commit", "seal.nodes_written",
    "migrate.before_commit", "checkpoint.before_commit", "cluster.seal_ids_assigned",
    "erase.before_commit", "erase.after_commit", "erase.after_vacuum",
    "rotate.recorded", "rotate.statement_committed", "rotate.sealed",
    "note_key.written", "mirror.identity", "mirror.before_commit", "mirror.after_commit",
})


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV}={spec!r}: unknown crash point (known: {sorted(POINTS)})")
    return name, int(count or "1")


_target = _parse(os.environ.get(ENV))
_hits = 0


def point(name: str) -> None:
    """Reaching ``name``: crash here if the environment asks for it."""
    global _hits
    if _target is None or _target[0] != name:
        return
    _hits += 1
    if _hits >= _target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
