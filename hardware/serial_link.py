"""A serial port that may come and go: the thin pyserial layer under the UART drivers.

USB-serial adapters get unplugged and re-enumerated; a driver keeps running through that.
The port opens lazily, a failed open is counted and retried no sooner than ``reopen_s``
later, and an I/O error closes the port so that the next use reopens it.
"""

from __future__ import annotations

import contextlib
import select
import termios
import time

import serial

from .base import DriverStats
from .settings import SerialLine

__all__ = ["SerialLink"]

# What a port that vanished under us raises: pyserial's own error, the OS error, and the
# termios error from a flush on a pty whose other end is gone (a pulled USB adapter).
_PORT_ERRORS = (serial.SerialException, OSError, termios.error)


class SerialLink:
    def __init__(self, line: SerialLine, stats: DriverStats, *, reopen_s: float = 1.0) -> None:
        self.line = line
        self.stats = stats
        self._reopen_s = reopen_s
        self._port: serial.Serial | None = None
        self._next_open = 0.0

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def _open(self, *, count_wait: bool = False) -> serial.Serial | None:
        if self._port is not None:
            return self._port
        now = time.monotonic()
        if now < self._next_open:
            if count_wait:  # a request that cannot go out is a fault of this poll
                self._error(f"serial port {self.line.port} unavailable")
            return None
        self._next_open = now + self._reopen_s
        try:
            port = serial.Serial(
                self.line.port,
                baudrate=self.line.baudrate,
                parity=self.line.parity,
                stopbits=self.line.stopbits,
                bytesize=serial.EIGHTBITS,
                timeout=0,
                write_timeout=self.line.timeout_s,
                exclusive=True,
            )
        except (*_PORT_ERRORS, ValueError) as exc:
            self._error(f"cannot open serial port {self.line.port}: {exc}")
            return None
        try:
            port.reset_input_buffer()  # bytes from before we listened belong to nobody
        except _PORT_ERRORS as exc:
            self._error(f"cannot open serial port {self.line.port}: {exc}")
            with contextlib.suppress(*_PORT_ERRORS):
                port.close()
            return None
        self._port = port
        return port

    def _error(self, message: str) -> None:
        self.stats.other_errors += 1
        self.stats.last_error = message

    def _lost(self, exc: Exception) -> None:
        self._error(f"serial port {self.line.port} failed: {exc}")
        self.close()

    def ensure_open(self) -> bool:
        return self._open() is not None

    def discard_input(self) -> None:
        port = self._open()
        if port is None:
            return
        try:
            port.reset_input_buffer()
        except _PORT_ERRORS as exc:
            self._lost(exc)

    def write(self, data: bytes) -> bool:
        port = self._open(count_wait=True)
        if port is None:
            return False
        try:
            port.write(data)
            port.flush()
        except _PORT_ERRORS as exc:
            self._lost(exc)
            return False
        return True

    def read(self, timeout: float) -> bytes:
        """Whatever arrives within ``timeout`` seconds (returns as soon as bytes come)."""
        port = self._open()
        if port is None:
            time.sleep(min(timeout, self._reopen_s))  # keep a dead port from busy-looping
            return b""
        try:
            # select() instead of pyserial's per-read timeout: changing the timeout reapplies
            # every termios setting, which some drivers (ptys with parity) reject.
            ready, _, _ = select.select([port.fileno()], [], [], timeout)
            if not ready:
                return b""
            data: bytes = port.read(port.in_waiting or 1)
            return data
        except (*_PORT_ERRORS, TypeError, ValueError) as exc:
            # pyserial raises TypeError / ValueError from a port closed under it
            self._lost(exc)
            return b""

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(*_PORT_ERRORS):
                port.close()
