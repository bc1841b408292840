"""Structured logs: one event per line, as JSON or as key=value pairs, on stderr.

Every line has ``ts``, ``level`` and ``event``; the rest are the event's fields. Use
:func:`event` rather than formatting messages, so log processors can filter on fields.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["event", "setup_logging"]

_FIELDS = "sl_fields"


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log event ``name`` with ``fields``."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={_FIELDS: fields})


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "event": record.getMessage(),
    }
    out.update(getattr(record, _FIELDS, {}))
    if record.exc_info:
        out["exception"] = logging.Formatter().formatException(record.exc_info)
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_record_fields(record), default=str, separators=(",", ":"))


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for key, value in _record_fields(record).items():
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            if not text or any(c in text for c in ' "=\n'):
                text = json.dumps(text)
            parts.append(f"{key}={text}")
        return " ".join(parts)


def setup_logging(fmt: str = "json", level: str = "info", stream: TextIO | None = None) -> None:
    """Send the collector's events to ``stream`` (stderr) in ``fmt`` ("json" or "kv")."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger("collector")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # PostgreSQL's connection pool warns, in plain text, at every failed reconnection attempt
    # (several a minute while the database is away). Its first warning of a kind says why
    # (refused, password rejected, no such database); the repeats are held back for a minute
    # at a time and counted (`held_back`) on the next one let through. Its errors all pass.
    pool = logging.getLogger("psycopg.pool")
    pool.handlers[:] = [handler]
    pool.filters[:] = [Sparse()]
    pool.setLevel(logging.WARNING)
    pool.propagate = False


class Sparse(logging.Filter):
    """Let each kind of warning (its message template) through once per ``every`` seconds,
    with the number held back since as ``held_back``; errors always. The kinds are the few
    templates of a library's source, so the memory is bounded."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self.every = every
        self._kinds: dict[str, tuple[float, int]] = {}  # template: (last let through, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        kind = str(record.msg)
        last, held = self._kinds.get(kind, (None, 0))
        if last is not None and record.created - last < self.every:
            self._kinds[kind] = (last, held + 1)
            return False
        self._kinds[kind] = (record.created, 0)
        if held:
            setattr(record, _FIELDS, {**getattr(record, _FIELDS, {}), "held_back": held})
        return True
