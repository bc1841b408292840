"""``/metrics`` (Prometheus text format) and ``/health`` over HTTP, served from a thread.

Used by the agent and by the collector (``--metrics-listen``). The server runs on its own
thread, so it keeps answering while the event loop is busy or stuck: a collector whose loop
hangs still says so on ``/health`` rather than timing out. What it serves is computed at
request time by the caller's :class:`prometheus_client.registry.Collector` objects, which read
the live counters of the one process that owns them (no Prometheus multiprocess mode).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from provenance.listen import parse_listen

__all__ = ["Health", "MetricsServer"]


@dataclass(frozen=True, slots=True)
class Health:
    """``/health``'s answer: HTTP 200 when ``ok``, else 503; ``detail`` is the JSON body."""

    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry,
                 health: Callable[[], Health] | None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.registry = registry
        self.health = health


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "sensorledger"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/health" and self.server.health is not None:
            try:
                health = self.server.health()
            except Exception as exc:  # an answer, not a dropped connection
                health = Health(False, {"status": "error", "reason": repr(exc)})
            body = json.dumps({"status": "ok" if health.ok else "failing", **health.detail},
                              sort_keys=True).encode() + b"\n"
            self._send(200 if health.ok else 503, body, "application/json")
        else:
            self._send(404, b"not found: try /metrics or /health\n", "text/plain")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every 15 s is not news


class MetricsServer:
    """Serves ``registry`` on ``/metrics`` and, when given, ``health`` on ``/health``."""

    def __init__(self, listen: str, registry: CollectorRegistry,
                 health: Callable[[], Health] | None = None) -> None:
        self._address = parse_listen(listen)
        self._registry = registry
        self._health = health
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        """Bind and serve; returns the bound (host, port). OSError if it cannot bind."""
        self._server = _Server(self._address, self._registry, self._health)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http",
                                        kwargs={"poll_interval": 0.5}, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            with contextlib.suppress(RuntimeError):
                self._thread.join(5)
            self._thread = None
