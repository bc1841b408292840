"""Query parameters of the view and the API, checked against their limits.

Every limit is a 4xx with a sentence saying what is allowed, never a silent clamp: a client
asking for a year of readings in one page learns the rule rather than getting a partial answer
it takes for the whole.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime

from collector.errors import CollectorError
from provenance.errors import MalformedError
from provenance.reading import check_device_id

__all__ = [
    "DEFAULT_PAGE",
    "MAX_LIST",
    "MAX_PAGE",
    "MAX_RANGE_MS",
    "BadParameter",
    "decode_cursor",
    "device_id_param",
    "encode_cursor",
    "int_param",
    "time_param",
]

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_LIST = 500
MAX_RANGE_MS = 31 * 86_400_000
MAX_HISTORY = 10_000


class BadParameter(CollectorError):
    """A request parameter outside what the view serves (HTTP 400, or ``status``)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class UnknownDevice(CollectorError):
    """A path names no valid device id (HTTP 404)."""


def device_id_param(text: str) -> str:
    try:
        return check_device_id(text)
    except MalformedError:
        raise UnknownDevice("no such device") from None


def int_param(query: Mapping[str, str], name: str, default: int | None, *, minimum: int = 0,
              maximum: int | None = None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 19:
        raise BadParameter(f"{name} must be a whole number, not {raw[:40]!r}")
    value = int(raw)
    if value < minimum:
        raise BadParameter(f"{name} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise BadParameter(f"{name} may be at most {maximum}, not {value}")
    return value


def time_param(query: Mapping[str, str], name: str) -> int | None:
    """Epoch milliseconds or an ISO 8601 time (UTC unless it says)."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    if raw.isdigit() and len(raw) <= 16:
        return int(raw)
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadParameter(f"{name} must be epoch milliseconds or an ISO 8601 time, "
                           f"not {raw[:40]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def encode_cursor(time_ms: int, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{time_ms}:{seq}".encode()).decode().rstrip("=")


def decode_cursor(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        t, s = raw.split(":")
        if not (t.isdigit() and s.isdigit() and len(t) <= 16 and len(s) <= 19):
            raise ValueError
        return int(t), int(s)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadParameter("cursor is not one this server gave out") from None
