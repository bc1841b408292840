"""The device end of a UART: a pty the emulator creates, or a real port it is given.

One thread per device reads what the agent sends and hands it to the device model, and
calls ``on_tick`` between reads so a streaming device can transmit on its own schedule.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Callable
from typing import Self

import serial

from .faults import LineFaults
from .lifecycle import Lifecycle
from .ptys import PtyPort
from .transcript import Transcript

__all__ = ["SerialDevice", "SerialEmulator"]


class _RealPort:
    def __init__(self, path: str, baudrate: int, parity: str) -> None:
        self.path = path
        self._serial = serial.Serial(path, baudrate=baudrate, parity=parity, timeout=0)

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self._serial.fileno()], [], [], timeout)
        if not ready:
            return b""
        data: bytes = self._serial.read(self._serial.in_waiting or 1)
        return data

    def write(self, data: bytes) -> int:
        written: int | None = self._serial.write(data)
        return written or 0

    def close(self) -> None:
        self._serial.close()


class SerialDevice:
    def __init__(self, port: str | None, on_bytes: Callable[[bytes], None], *, name: str,
                 on_tick: Callable[[], None] | None = None, tick_s: float = 0.02,
                 baudrate: int = 9600, parity: str = "N") -> None:
        self._port: PtyPort | _RealPort = (
            PtyPort() if port is None else _RealPort(port, baudrate, parity)
        )
        self.path = self._port.path
        self._on_bytes = on_bytes
        self._on_tick = on_tick
        self._tick_s = tick_s
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"{name}-device", daemon=True)

    def write(self, data: bytes) -> int:
        if not data:
            return 0
        with self._write_lock:
            return self._port.write(data)

    def _run(self) -> None:
        while not self._stop.is_set():
            data = self._port.read(self._tick_s)
            if data:
                self._on_bytes(data)
            if self._on_tick is not None:
                self._on_tick()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._port.close()


class SerialEmulator(Lifecycle):
    """An emulator at the device end of a UART: its ``device``, line ``faults`` and
    ``transcript`` are set by the subclass; starting and stopping are the same for all."""

    device: SerialDevice
    faults: LineFaults
    transcript: Transcript

    @property
    def agent_path(self) -> str:
        return self.device.path

    def start(self) -> Self:
        self.device.start()
        return self

    def stop(self) -> None:
        self.device.stop()
        self.transcript.close()
