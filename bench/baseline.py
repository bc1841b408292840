"""The baseline a user might build instead: paho-mqtt straight into SQLite, nothing verified.

A competent version of it, so that the comparison flatters nobody: WAL, batched ``executemany``
inserts, one commit per batch, the network thread never blocked by SQLite (a queue between
them), and the collector's MQTT protocol and window (its default Receive Maximum under MQTT 5,
the broker's in-flight window under 3.1.1). It comes in two forms:

* ``ack-on-receipt`` — paho's default: each message is acknowledged as soon as the callback
  returns, before it is written; ``synchronous=NORMAL``. What most people write. A crash loses
  every acknowledged message not yet committed, and the broker will not send them again.
* ``ack-after-commit`` — manual acks sent only after the batch's COMMIT, with
  ``synchronous=FULL``: the same durability per acknowledgement as the collector.

Neither verifies a signature, checks a chain, removes duplicates or builds blocks.
"""

from __future__ import annotations

import queue
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .backlog import TOPIC_FILTER
from .mqtt import wait_connected

__all__ = ["MODES", "BaselineRun", "drain_into_sqlite"]

MODES = ("ack-on-receipt", "ack-after-commit")
_BATCH = 1000
_GATHER_S = 0.02


@dataclass(frozen=True, slots=True)
class BaselineRun:
    mode: str
    seconds: float
    rows: int
    commits: int
    db_bytes: int


def _open_db(path: Path, *, durable: bool) -> sqlite3.Connection:
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
    db.execute(
        "CREATE TABLE readings (id INTEGER PRIMARY KEY, topic TEXT NOT NULL, "
        "payload BLOB NOT NULL, received_ms INTEGER NOT NULL)"
    )
    return db


def drain_into_sqlite(
    host: str, port: int, client_id: str, count: int, db_path: Path, *, mode: str,
    mqtt5: bool, receive_maximum: int, timeout: float = 600.0,
) -> BaselineRun:
    """Connect as ``client_id`` (a persistent session), store ``count`` messages, stop."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    durable = mode == "ack-after-commit"
    db = _open_db(db_path, durable=durable)
    inbox: queue.SimpleQueue[tuple[int, str, bytes, int]] = queue.SimpleQueue()
    if mqtt5:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=MQTTProtocolVersion.MQTTv5, manual_ack=durable)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 24 * 3600
        props.ReceiveMaximum = receive_maximum
        connect: dict[str, Any] = {"clean_start": False, "properties": props}
    else:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=False, manual_ack=durable)
        connect = {}

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        inbox.put((msg.mid, msg.topic, bytes(msg.payload), int(time.time() * 1000)))

    client.on_message = on_message
    rows = commits = 0
    start = time.perf_counter()
    wait_connected(client, host, port, **connect)
    try:
        client.subscribe(TOPIC_FILTER, qos=1)
        deadline = start + timeout
        while rows < count:
            # Block for the first message, then gather for up to a few milliseconds: fewer,
            # larger commits, at a latency no user would notice.
            batch = [inbox.get(timeout=max(0.0, deadline - time.perf_counter()))]
            gather_until = time.perf_counter() + _GATHER_S
            while len(batch) < _BATCH:
                try:
                    batch.append(inbox.get(timeout=max(0.0, gather_until - time.perf_counter())))
                except queue.Empty:
                    break
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO readings (topic, payload, received_ms) VALUES (?, ?, ?)",
                [(topic, payload, ms) for _, topic, payload, ms in batch],
            )
            db.execute("COMMIT")
            commits += 1
            if durable:
                for mid, *_ in batch:
                    client.ack(mid, 1)
            rows += len(batch)
        seconds = time.perf_counter() - start
    finally:
        client.disconnect()
        client.loop_stop()
        db.close()
    size = sum(p.stat().st_size for p in db_path.parent.glob(db_path.name + "*"))
    return BaselineRun(mode, seconds, rows, commits, size)
