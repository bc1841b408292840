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
    # (several a minute while the database is away); the collector reports that outage itself
    # (`store_retry`). The pool's errors come as events of their own.
    pool = logging.getLogger("psycopg.pool")
    pool.handlers[:] = [handler]
    pool.setLevel(logging.ERROR)
    pool.propagate = False
