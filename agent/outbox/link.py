"""The broker link as the rest of the agent sees it: the publisher writes it, others read it.

Created before the publisher and handed to it and to its readers (the recorder's pacing, the
heartbeat), so nothing has to reach into the publisher to ask.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LinkState"]


@dataclass
class LinkState:
    """The broker connection as heartbeats and ``status`` report it."""

    connected: bool = False
    connects: int = 0
    failures: int = 0
    last_error: str | None = None
    connected_since_ms: int | None = None
