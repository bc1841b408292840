"""Device time and whether it can be trusted.

A Raspberry Pi has no real-time clock: until NTP synchronises it, its wall time may be 1970 or
hours behind. Every reading says whether the clock was synchronised when it was taken, so a
verifier can weigh the timestamp. The kernel knows: ``adjtimex(2)`` returns ``TIME_ERROR``
while the ``STA_UNSYNC`` flag is set, which is the same test ``timedatectl`` makes for
"System clock synchronized". The answer is cached briefly because readings may come by the
thousand per second.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable

from .config import ClockMode

__all__ = ["Clock", "kernel_clock_synced"]

_TIME_ERROR = 5
# struct timex is 208 bytes on 64-bit Linux; a larger zeroed buffer (modes = 0: read only)
# keeps this independent of the exact layout on 32-bit boards.
_TIMEX_SIZE = 512
_CACHE_S = 10.0


def kernel_clock_synced() -> bool | None:
    """True/False from the kernel, or None where adjtimex is unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError):
        return None
    buf = ctypes.create_string_buffer(_TIMEX_SIZE)
    state = adjtimex(buf)
    if state < 0:
        return None
    return bool(state != _TIME_ERROR)


class Clock:
    """Wall time in ms since the epoch, and the synchronised flag per ``clock_synced``."""

    def __init__(
        self, mode: ClockMode = "auto", *,
        probe: Callable[[], bool | None] = kernel_clock_synced,
    ) -> None:
        self._mode = mode
        self._probe = probe
        self._synced = mode == "synced"
        self._checked = -_CACHE_S

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    @property
    def synced(self) -> bool:
        if self._mode != "auto":
            return self._mode == "synced"
        now = time.monotonic()
        if now - self._checked >= _CACHE_S:
            self._checked = now
            self._synced = bool(self._probe())
        return self._synced
