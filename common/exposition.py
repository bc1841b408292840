"""``/metrics`` (Prometheus text format) and ``/health`` over HTTP, served by the event loop.

Used by the agent and by the collector (``--metrics-listen``). The server is a small asyncio
HTTP/1.1 responder on the process's own event loop, not a thread: what it serves is computed
at request time by the caller's :class:`prometheus_client.registry.Collector` objects, which
read the live counters of the one process that owns them (no Prometheus multiprocess mode),
and a scrape builds its text in under a millisecond of CPU. A server thread would compete for
the GIL with the threads that carry the readings (the MQTT thread, the database thread): each
of its socket and file calls hands the GIL over and back, and on a busy machine every
hand-over waits for the scheduler (docs/benchmarks.md, "metrics on vs off"). A loop that
hangs leaves ``/health`` unanswered, which every probe treats as failing (and systemd's
watchdog restarts it).

Requests are bounded: a request head of at most 8 KiB, read within 10 s; every answer closes
the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from provenance.listen import parse_listen

__all__ = ["Health", "MetricsServer"]

HEAD_LIMIT = 8192
HEAD_TIMEOUT_S = 10.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class Health:
    """``/health``'s answer: HTTP 200 when ``ok``, else 503; ``detail`` is the JSON body."""

    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


class MetricsServer:
    """Serves ``registry`` on ``/metrics`` and, when given, ``health`` on ``/health``."""

    def __init__(self, listen: str, registry: CollectorRegistry,
                 health: Callable[[], Health] | None = None) -> None:
        self._address = parse_listen(listen)
        self._registry = registry
        self._health = health
        self._server: asyncio.Server | None = None

    async def start(self) -> tuple[str, int]:
        """Bind and serve; returns the bound (host, port). OSError if it cannot bind."""
        host, port = self._address
        self._server = await asyncio.start_server(self._serve, host, port, limit=HEAD_LIMIT)
        bound = self._server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return  # too slow, too long or cut short: no answer owed
            status, body, content_type, method = self._answer(head)
            lines = [f"HTTP/1.1 {status} {_REASONS[status]}",
                     f"Content-Type: {content_type}", f"Content-Length: {len(body)}",
                     "Cache-Control: no-store", "Connection: close", "", ""]
            writer.write("\r\n".join(lines).encode("latin-1"))
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 2.0)

    def _answer(self, head: bytes) -> tuple[int, bytes, str, str]:
        """(status, body, content type, method) for a request head."""
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return 400, b"bad request\n", "text/plain", "GET"
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            return 405, b"only GET and HEAD\n", "text/plain", method
        path = urlsplit(target).path
        if path == "/metrics":
            return 200, generate_latest(self._registry), CONTENT_TYPE_LATEST, method
        if path == "/health" and self._health is not None:
            try:
                health = self._health()
            except Exception as exc:  # an answer, not a dropped connection
                health = Health(False, {"reason": f"health check failed: {exc!r}"})
            body = json.dumps({"status": "ok" if health.ok else "failing", **health.detail},
                              sort_keys=True).encode() + b"\n"
            return 200 if health.ok else 503, body, "application/json", method
        return 404, b"not found: try /metrics or /health\n", "text/plain", method
