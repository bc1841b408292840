"""The agent's log on stderr (the journal under systemd): one line per event, text or JSON.

Every line carries a UTC timestamp, the level, the logger and the message; ``--log-format
json`` gives the same as one JSON object per line, with the collector's field names (``ts``,
``level``, ``event``). Libraries speak only when it matters: the agent says what went wrong
in its own words (a sensor's faults, a broker that went away), so pymodbus, aiosqlite and
asyncio are held at WARNING or above whatever ``--log-level`` asks for.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["FORMATS", "QUIET_LIBRARIES", "setup_logging"]

FORMATS = ("text", "json")
#: Library loggers and the least severe level that still reaches the log.
QUIET_LIBRARIES = {
    # pymodbus logs each timeout and bad frame as an error of its own; the driver counts
    # them and the agent reports them per sensor, rate-limited.
    "pymodbus": logging.CRITICAL,
    "aiosqlite": logging.WARNING,  # every statement, at DEBUG
    "asyncio": logging.WARNING,
}
#: The loggers that are ours, and follow ``--log-level``.
OURS = ("agent", "hardware", "provenance")


def _timestamp(record: logging.LogRecord) -> str:
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record), "level": record.levelname.lower(),
            "logger": record.name, "event": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def setup_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Log our events at ``level`` and above, libraries' at WARNING (or quieter), to stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in OURS:
        logging.getLogger(name).setLevel(level.upper())
    for name, quiet in QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(quiet)
