"""What a process costs, read from Linux /proc: CPU seconds and resident memory.

For tests that bound a process's appetite (a loop that spins while its broker or database is
away burns a core without failing any functional check).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.collector import child_pids

__all__ = ["Usage", "cpu_seconds", "measure", "rss_bytes"]

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (its own threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After "pid (comm)": state is field 3, utime 14 and stime 15 (proc(5)), so 11 and 12 here.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` now."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and of its live children (a collector's verification workers)."""
    total = cpu_seconds(pid)
    for child in child_pids(pid):
        with contextlib.suppress(OSError, IndexError):  # ended meanwhile
            total += cpu_seconds(child)
    return total


@dataclass(frozen=True)
class Usage:
    """A process (and its children) over a window of wall-clock time."""

    seconds: float  # wall clock
    cpu: float  # CPU seconds used in the window
    rss_start: int
    rss_peak: int

    @property
    def cpu_share(self) -> float:
        """Average share of one core over the window (0.05: 5 %)."""
        return self.cpu / self.seconds

    @property
    def rss_growth(self) -> int:
        return self.rss_peak - self.rss_start

    def __str__(self) -> str:
        return (f"{self.cpu:.2f} CPU s in {self.seconds:.1f} s ({100 * self.cpu_share:.1f} % of "
                f"a core), RSS {self.rss_start / 2**20:.1f} MiB, peak "
                f"{self.rss_peak / 2**20:.1f} MiB")


def measure(pid: int, seconds: float, interval: float = 0.5) -> Usage:
    """Watch ``pid`` for ``seconds``: its CPU time used and its resident memory's peak."""
    start = time.monotonic()
    cpu0 = _tree_cpu(pid)
    rss0 = peak = rss_bytes(pid)
    while (elapsed := time.monotonic() - start) < seconds:
        time.sleep(min(interval, seconds - elapsed))
        peak = max(peak, rss_bytes(pid))
    cpu = _tree_cpu(pid) - cpu0
    return Usage(time.monotonic() - start, cpu, rss0, peak)
