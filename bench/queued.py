"""A broker that starts with the backlog already queued for each consumer's persistent session.

Publishing 100,000 QoS 1 messages takes longer than draining them, and every drain benchmark
needs the same backlog again. So the backlog is published once, into a broker holding one
persistent session per consumer (client id), and the broker's persistence file is kept. Each
benchmark then starts a fresh broker from a copy of that file: identical queues, loaded in the
time Mosquitto takes to read its database.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from .backlog import Backlog
from .broker import SHIPPED_MAX_INFLIGHT, Broker, bench_broker
from .mqtt import create_session, publish_backlog

__all__ = ["DB_NAME", "broker_with_backlog", "queued_snapshot"]

DB_NAME = "mosquitto.db"


def queued_snapshot(
    cache_dir: Path, backlog: Backlog, sessions: Sequence[tuple[str, bool]]
) -> Path:
    """A Mosquitto database holding ``backlog`` queued for each (client id, MQTT v5?) session.

    Cached beside the backlog and rebuilt when the backlog or the set of sessions changes.
    """
    tag = "-".join(sorted(f"{cid}{'5' if v5 else ''}" for cid, v5 in sessions))
    path = cache_dir / f"queued-{len(backlog)}-{backlog.created_ms}-{tag}.db"
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    for old in cache_dir.glob(f"queued-{len(backlog)}-*.db"):
        old.unlink()  # snapshots of an older backlog of this size
    workdir = cache_dir / "loader"
    shutil.rmtree(workdir, ignore_errors=True)
    with bench_broker(workdir) as broker:
        for client_id, mqtt5 in sessions:
            create_session(broker.host, broker.port, client_id, mqtt5=mqtt5)
        publish_backlog(broker.host, broker.port, backlog)
    # Mosquitto writes its database on a clean shutdown (SIGTERM).
    tmp = path.with_suffix(".tmp")
    shutil.move(workdir / DB_NAME, tmp)
    tmp.replace(path)
    shutil.rmtree(workdir, ignore_errors=True)
    return path


def broker_with_backlog(
    workdir: Path, snapshot: Path, *, max_inflight: int = SHIPPED_MAX_INFLIGHT
) -> Broker:
    """A started broker in ``workdir`` whose sessions hold the snapshot's queued backlog."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    shutil.copyfile(snapshot, workdir / DB_NAME)
    return bench_broker(workdir, max_inflight=max_inflight).start()
