"""A systemd notify socket for tests: what a service sends to ``$NOTIFY_SOCKET``.

Each datagram is stamped by the kernel when it arrives (``SO_TIMESTAMPNS``), so the times a
test compares are the service's, not this test process's: on a loaded machine the test may be
scheduled late, and a late ``recv`` must not look like a late watchdog ping."""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

# Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS), which the socket module does not export.
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@ll")

Message = tuple[float, str]  # (arrival time in seconds, text)


@contextlib.contextmanager
def notify_socket_at(path: Path) -> Iterator[tuple[socket.socket, Path]]:
    """A bound datagram socket at ``path`` (as systemd makes for a Type=notify service)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    if sys.platform == "linux":
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    sock.settimeout(0.2)
    try:
        yield sock, path
    finally:
        sock.close()


def _recv(sock: socket.socket) -> Message:
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(_TIMESPEC.size))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
            seconds, nanoseconds = _TIMESPEC.unpack(payload[:_TIMESPEC.size])
            return seconds + nanoseconds / 1e9, data.decode()
    return time.time(), data.decode()


def receive_until(sock: socket.socket, done: Callable[[list[Message]], bool],
                  timeout: float = 60, what: str = "notify messages") -> list[Message]:
    """Datagrams (arrival time, text) until ``done(all received so far)`` holds; an
    AssertionError naming what came if it does not within ``timeout`` seconds."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while not done(got):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s; received {got}")
        with contextlib.suppress(TimeoutError):
            got.append(_recv(sock))
    return got


def lines(messages: list[Message]) -> list[list[str]]:
    """Each datagram's assignments (``READY=1``, ``STATUS=...``), one list per datagram."""
    return [text.splitlines() for _, text in messages]


def pings_after_ready(messages: list[Message]) -> list[float]:
    """Arrival times of the ``WATCHDOG=1`` pings from the first ``READY=1`` on."""
    texts = lines(messages)
    ready = next((i for i, text in enumerate(texts) if "READY=1" in text), None)
    if ready is None:
        return []
    return [t for (t, _), text in zip(messages[ready:], texts[ready:], strict=True)
            if "WATCHDOG=1" in text]
