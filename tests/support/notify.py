"""A systemd notify socket for tests: what a service sends to ``$NOTIFY_SOCKET``."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def notify_socket_at(path: Path) -> Iterator[tuple[socket.socket, Path]]:
    """A bound datagram socket at ``path`` (as systemd makes for a Type=notify service)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    try:
        yield sock, path
    finally:
        sock.close()


def receive(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    """Datagrams (arrival time, text) received within ``seconds``."""
    got: list[tuple[float, str]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            got.append((time.monotonic(), sock.recv(4096).decode()))
    return got
