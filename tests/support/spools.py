"""Spools opened by a test, all closed when it ends: a spool left open keeps aiosqlite's
(non-daemon) thread, and so the test run, alive."""

from __future__ import annotations

import contextlib
from pathlib import Path

from agent.config import Delivery
from agent.spool import Spool

_OPEN: list[Spool] = []


async def open_spool(path: Path, limit: int = 1000, device: str = "dev-1",
                     delivery: Delivery = "puback") -> Spool:
    """``Spool.open``, remembered for :func:`close_spools`."""
    spool = await Spool.open(path, device, limit, delivery)
    _OPEN.append(spool)
    return spool


async def close_spools() -> None:
    """Close every spool :func:`open_spool` opened (the autouse fixture of a spool test)."""
    while _OPEN:
        spool = _OPEN.pop()
        with contextlib.suppress(Exception):
            await spool.close()
