"""A background reader for devices that talk without being asked.

An oximeter streams 60 packets a second whether or not the agent is polling; left unread, a
pty or USB-serial buffer overflows within seconds and the oldest packets vanish. The reader
thread drains the port continuously and hands the bytes to the driver's decoder; ``poll``
then only collects what the decoder finished. Only the reader thread touches the port:
commands the device needs (keep-alives) are sent from ``on_tick``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from .base import DriverStats, Sample
from .serial_link import SerialLink

__all__ = ["Pending", "StreamReader"]


class Pending:
    """Samples the reader thread finished, waiting for the next ``poll``; at most ``limit``.

    A poller too slow to keep up loses the oldest, never silently: each one dropped is
    counted as an error of the driver (the collector sees the gap too).
    """

    def __init__(self, stats: DriverStats, *, limit: int, what: str) -> None:
        self._stats = stats
        self._what = what
        self._samples: deque[Sample] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def put(self, sample: Sample) -> None:
        with self._lock:
            if len(self._samples) == self._samples.maxlen:
                self._stats.other_errors += 1
                self._stats.last_error = f"poll too slow: oldest {self._what} dropped"
            self._samples.append(sample)

    def take(self) -> list[Sample]:
        """Everything pending, oldest first; counted as the driver's samples."""
        with self._lock:
            samples = list(self._samples)
            self._samples.clear()
        self._stats.samples += len(samples)
        return samples


class StreamReader:
    def __init__(self, link: SerialLink, *, name: str, on_bytes: Callable[[bytes], None],
                 on_tick: Callable[[], None], tick_s: float = 0.05) -> None:
        self._link = link
        self._on_bytes = on_bytes
        self._on_tick = on_tick
        self._tick_s = tick_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def _run(self) -> None:
        stats = self._link.stats
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                chunk = self._link.read(self._tick_s)
                if chunk:
                    self._on_bytes(chunk)
                self._on_tick()
                if chunk:
                    # A streaming device sends a few bytes at a time; reading each burst as
                    # it lands wakes this thread for every packet (60+ times a second for an
                    # oximeter). Reading at most once a tick lets them gather in the port's
                    # buffer, which holds seconds of such a stream (docs/drivers.md).
                    self._stop.wait(self._tick_s - (time.monotonic() - started))
            except Exception as exc:  # the thread must outlive any decoding surprise
                stats.other_errors += 1
                stats.last_error = f"stream reader: {type(exc).__name__}: {exc}"
                self._stop.wait(self._tick_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._link.close()
