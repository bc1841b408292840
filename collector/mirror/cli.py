"""The ``ledger-mirror`` console script (the command itself: :mod:`collector.cli.mirror`)."""

from __future__ import annotations

from collector.cli.mirror import main

__all__ = ["main"]
