"""One ``add-checkpoint`` HTTP request (c2sp.org/tlog-witness), blocking, on the standard
library's ``http.client``: the submitter runs it in its own thread pool, off the event loop.
A connection per witness is kept open between requests (the specification asks clients to use
keep-alive)."""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["WitnessClient", "WitnessReply"]


@dataclass(frozen=True, slots=True)
class WitnessReply:
    status: int
    content_type: str
    body: bytes


class WitnessClient:
    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path.rstrip("/") or "") + "/add-checkpoint"
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def add_checkpoint(self, body: bytes) -> WitnessReply:
        """POST the request; OSError / http.client.HTTPException when the witness is not
        reachable or the connection broke (the caller retries)."""
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    conn.request("POST", self._path, body=body,
                                 headers={"Content-Type": "text/plain; charset=utf-8"})
                    response = conn.getresponse()
                    data = response.read(256 * 1024)
                    return WitnessReply(response.status,
                                        response.getheader("Content-Type", "") or "", data)
                except (OSError, http.client.HTTPException):
                    self.close()
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
