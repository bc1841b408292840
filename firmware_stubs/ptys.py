"""Pseudo-terminals standing in for the serial cable between a device and the agent.

Two shapes are needed:

* :class:`PtyPort` — one pty pair. The emulator speaks on the master side; the agent opens the
  slave path like any ``/dev/ttyUSB0``. Used by the UART emulators (JBD, Contec, self-signing).
* :class:`PtyCable` — two pty pairs whose masters are bridged by a thread, i.e. a virtual
  null-modem cable with a device path at each end. pymodbus' server insists on opening a
  port by *path*, and so does the agent, so a Modbus emulator needs a path on both ends.

Both keep their own slave descriptor open: on Linux, reading a master whose slave has no
open descriptor fails with EIO, which would make every driver reconnect look like a crash.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import tty
from collections.abc import Callable

__all__ = ["PtyCable", "PtyPort"]


def _open_raw_pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    # Raw mode on the slave: no echo, no CR/LF translation, no signals from 0x03 bytes.
    # pyserial sets the same when the agent opens the path; this covers the time before.
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


class PtyPort:
    """The device end of one pseudo-terminal; :attr:`path` is what the agent opens."""

    def __init__(self) -> None:
        self._master, self._slave, self.path = _open_raw_pty()
        self._closed = False

    def read(self, timeout: float) -> bytes:
        """Return the bytes the agent has written, or ``b""`` after ``timeout`` seconds."""
        if self._closed:
            return b""
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self._master, 4096)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise

    def write(self, data: bytes) -> int:
        """Write as much of ``data`` as the line takes; return the count written.

        A UART transmits whether or not anybody listens, so a full pty buffer (no reader)
        drops the rest instead of blocking the device model.
        """
        if self._closed or not data:
            return 0
        try:
            return os.write(self._master, data)
        except (BlockingIOError, OSError):
            return 0

    def discard_input(self) -> None:
        """Drop whatever the agent sent and nobody has read yet."""
        while self.read(0):
            pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


Tap = Callable[[bytes], bytes]


class PtyCable:
    """A null-modem cable made of two pty pairs bridged by a relay thread.

    ``device_path`` is opened by the emulator (e.g. a pymodbus server), ``agent_path`` by
    the agent. ``to_agent_tap`` may rewrite each chunk travelling device → agent, which is
    how tests inject line faults without touching the device model.
    """

    def __init__(self, to_agent_tap: Tap | None = None) -> None:
        self._dev_master, self._dev_slave, self.device_path = _open_raw_pty()
        self._agent_master, self._agent_slave, self.agent_path = _open_raw_pty()
        self.to_agent_tap = to_agent_tap
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._relay, name="pty-cable", daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        peers = {self._dev_master: self._agent_master, self._agent_master: self._dev_master}
        while True:
            ready, _, _ = select.select([*peers, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            for src in ready:
                try:
                    chunk = os.read(src, 4096)
                except (BlockingIOError, OSError):
                    continue
                if src == self._dev_master and self.to_agent_tap is not None:
                    chunk = self.to_agent_tap(chunk)
                self._forward(peers[src], chunk)

    @staticmethod
    def _forward(dst: int, chunk: bytes) -> None:
        # A wire does not wait for a reader: after a short stall the rest is dropped.
        stalls = 0
        while chunk and stalls < 10:
            try:
                chunk = chunk[os.write(dst, chunk) :]
            except BlockingIOError:
                stalls += 1
                select.select([], [dst], [], 0.02)
            except OSError:
                return

    def close(self) -> None:
        if self._stop_w < 0:
            return
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=2)
        for fd in (
            self._dev_master,
            self._dev_slave,
            self._agent_master,
            self._agent_slave,
            self._stop_r,
            self._stop_w,
        ):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._stop_w = -1
