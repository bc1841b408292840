"""Which devices are online, from the agents' status topic (``sensorledger/v1/<id>/status``).

An agent publishes ``online`` (retained) when it connects, a JSON heartbeat every
``heartbeat_s``, and leaves ``offline`` (retained) as its last will, which the broker publishes
when the agent disconnects or vanishes. The collector subscribes with QoS 0 beside its reading
subscription; nothing here touches the ledger. A heartbeat, or a live ``online``, is the device
being *seen*; a retained message replayed on subscribing only tells its state, and ``offline``
changes the state without being a sighting.

The board is written to ``DATABASE.presence.json`` (beside the ledger, by the collector that
holds the ledger's lock; atomically, every few seconds and on exit), which ``devices list``
reads. It is operational state, not evidence: nothing in it is signed or audited.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["DevicePresence", "PresenceBoard", "load_presence", "presence_path", "status_topic_of"]

ONLINE, OFFLINE = b"online", b"offline"


@dataclass(slots=True)
class DevicePresence:
    online: bool
    changed_ms: int  # when the collector learnt the current state
    last_seen_ms: int | None = None  # the last heartbeat or live "online"


def presence_path(database: str | os.PathLike[str]) -> Path:
    p = Path(database)
    return p.with_name(p.name + ".presence.json")


def status_topic_of(reading_topic: str) -> str | None:
    """The status filter beside a reading filter (``.../+/reading`` → ``.../+/status``)."""
    head, sep, last = reading_topic.rpartition("/")
    return f"{head}/status" if sep and last == "reading" else None


def load_presence(path: Path) -> dict[str, DevicePresence]:
    """The board last written at ``path``; empty when there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text())
        return {dev: DevicePresence(**row) for dev, row in data["devices"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


class PresenceBoard:
    """Updated from the MQTT thread, saved from the event loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._devices = load_presence(path)
        self._lock = threading.Lock()
        self._dirty = False

    def observe(self, topic: str, payload: bytes, retained: bool, now_ms: int) -> None:
        parts = topic.split("/")
        if len(parts) < 2 or parts[-1] != "status" or not parts[-2]:
            return
        device = parts[-2]
        if payload == OFFLINE:
            online, seen = False, False
        elif payload == ONLINE:
            online, seen = True, not retained
        elif payload.startswith(b"{"):  # a heartbeat: the agent is up and publishing
            online, seen = True, True
        else:
            return
        with self._lock:
            old = self._devices.get(device)
            if old is None or old.online != online:
                old = self._devices[device] = DevicePresence(
                    online, now_ms, old.last_seen_ms if old else None)
            if seen:
                old.last_seen_ms = now_ms
            self._dirty = True

    def snapshot(self) -> dict[str, DevicePresence]:
        with self._lock:
            return {dev: DevicePresence(p.online, p.changed_ms, p.last_seen_ms)
                    for dev, p in self._devices.items()}

    def save(self, *, force: bool = False) -> None:
        """Write the board (atomically) if it changed since the last save."""
        with self._lock:
            if not (self._dirty or force):
                return
            self._dirty = False
            data = {"devices": {dev: asdict(p) for dev, p in sorted(self._devices.items())}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        with contextlib.suppress(OSError):  # presence is advisory: never stop the collector
            tmp.write_text(json.dumps(data, indent=1) + "\n")
            tmp.replace(self.path)
