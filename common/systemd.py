"""The systemd notification protocol (sd_notify), spoken directly over the socket.

libsystemd is not needed: systemd passes the path of a unix datagram socket in
``NOTIFY_SOCKET`` (a leading ``@`` means the Linux abstract namespace), and each datagram is
newline-separated ``KEY=VALUE`` lines: ``READY=1`` once the agent works, ``WATCHDOG=1`` at
least every ``WATCHDOG_USEC`` (we send at half that, as sd_watchdog_enabled(3) advises),
``STATUS=...`` for ``systemctl status``, ``STOPPING=1`` on the way out. The agent and the
collector both use it. Without
``NOTIFY_SOCKET`` (not under systemd) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages when the process (an agent, a collector) runs under systemd
    ``Type=notify``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        if address.startswith("@"):
            self._address = b"\0" + address[1:].encode()
        elif address.startswith("/"):
            self._address = address
        self._sock: socket.socket | None = None
        self._warned = False
        self.watchdog_interval_s = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self, status: str = "") -> None:
        self.send(READY="1", STATUS=status) if status else self.send(READY="1")

    def watchdog(self) -> None:
        self.send(WATCHDOG="1")

    def status(self, text: str) -> None:
        self.send(STATUS=text)

    def stopping(self, status: str = "") -> None:
        self.send(STOPPING="1", STATUS=status) if status else self.send(STOPPING="1")

    def send(self, **fields: str) -> None:
        if self._address is None:
            return
        message = "\n".join(f"{k}={v.replace(chr(10), ' ')}" for k, v in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:
            # systemd going away must not take the process with it; say so once.
            if not self._warned:
                log.warning("cannot notify systemd at %s: %s", os.environ.get("NOTIFY_SOCKET"),
                            exc)
                self._warned = True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, when the watchdog is meant for this process."""
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2 / 1_000_000 if value > 0 else None
