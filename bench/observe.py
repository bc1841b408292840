"""Watching a benchmark from outside: count what reaches the broker, sample a process's RSS/CPU.

The counter is ``mosquitto_sub`` printing one byte per message, so counting costs the machine
almost nothing next to the process being measured (a Python subscriber would take a share of
the same two cores).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field

import psutil  # type: ignore[import-untyped]

__all__ = ["MessageCounter", "ProcessSample", "sample_process"]


class MessageCounter:
    """Counts QoS 1 messages on ``topic``; records when chosen counts were reached."""

    def __init__(self, host: str, port: int, topic: str, marks: tuple[int, ...] = ()) -> None:
        binary = shutil.which("mosquitto_sub")
        if binary is None:
            raise RuntimeError("mosquitto_sub is not installed (mosquitto-clients)")
        self._proc = subprocess.Popen(
            [binary, "-h", host, "-p", str(port), "-q", "1", "-t", topic, "-N", "-F", "."],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.count = 0
        self.marks = tuple(sorted(marks))
        self.reached: dict[int, float] = {}  # mark -> time.monotonic() when reached
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        pending = list(self.marks)
        while chunk := os.read(fd, 65536):
            now = time.monotonic()
            with self._changed:
                self.count += len(chunk)
                while pending and self.count >= pending[0]:
                    self.reached[pending.pop(0)] = now
                self._changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.count >= count, timeout)

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._thread.join(timeout=5)


@dataclass
class ProcessSample:
    rss: list[int] = field(default_factory=list)
    # At the end of the window: memory only this process uses (USS), and its proportional
    # share of pages it shares with others (PSS): RSS counts shared libraries in full.
    uss: int = 0
    pss: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def sample_process(pid: int, seconds: float, every: float = 1.0) -> ProcessSample:
    """RSS every ``every`` seconds for ``seconds``, and the CPU time used meanwhile."""
    proc = psutil.Process(pid)
    out = ProcessSample()
    cpu0, start = _cpu(proc), time.monotonic()
    while True:
        out.rss.append(int(proc.memory_info().rss))
        left = start + seconds - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(every, left))
    out.cpu_seconds = _cpu(proc) - cpu0
    full = proc.memory_full_info()
    out.uss, out.pss = int(full.uss), int(getattr(full, "pss", 0))
    out.wall_seconds = time.monotonic() - start
    return out
