"""Fetching tlog-tiles resources over HTTP (the standard library's client: a mirror needs GET
and nothing else). Blocking; the mirror calls it from a worker thread."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Protocol

from collector.mirror.errors import FetchError

__all__ = ["HttpTiles", "TileSource"]

#: The largest resource a mirror accepts: a full entry bundle of 256 entries of at most
#: 65,535 bytes each, with their length prefixes.
MAX_RESOURCE = 256 * (0xFFFF + 2)


class TileSource(Protocol):
    def get(self, path: str) -> bytes | None:
        """The resource at ``path`` below the log's prefix; None when it does not exist."""
        ...


class HttpTiles:
    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise FetchError(f"{url!r} is not an http:// or https:// URL")
        self.url = url.rstrip("/") + "/"
        self.timeout = timeout
        self.fetched = 0  # resources
        self.bytes = 0

    def get(self, path: str) -> bytes | None:
        request = urllib.request.Request(self.url + path,
                                         headers={"Accept-Encoding": "identity"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data: bytes = response.read(MAX_RESOURCE + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise FetchError(f"GET {self.url}{path}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise FetchError(f"GET {self.url}{path}: {exc}") from None
        if len(data) > MAX_RESOURCE:
            raise FetchError(f"GET {self.url}{path}: larger than {MAX_RESOURCE} bytes")
        self.fetched += 1
        self.bytes += len(data)
        return data
