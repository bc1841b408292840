"""Hunting frames in a serial byte stream: the loop every UART protocol here shares (pure).

A UART has no message boundaries: bytes arrive in chunks that cut frames anywhere, line noise
sits between frames, and a byte that looks like a frame start may be data. Each protocol says
only what is particular to it, as a :class:`FrameFormat`: where a frame may start, and what
the bytes at a position are (:func:`judge`). :class:`FrameHunter` does the rest, the same way
for every protocol:

* bytes before a possible start are skipped (and counted in ``skipped``);
* a :class:`FalseStart` drops one byte and hunts on from the next, so a false start never
  swallows a real frame behind it;
* a :class:`Damaged` frame is dropped whole, unless a valid frame starts inside it;
* an :class:`Incomplete` frame waits for more bytes, unless a complete valid frame already
  follows it (a false start claiming a long length must not hold a real frame back);
* the buffer never holds more than the format's ``max_frame`` bytes plus the last chunk: a
  start still incomplete at that size is a false start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from .errors import FrameError, ProtocolError

__all__ = [
    "INCOMPLETE",
    "Damaged",
    "FalseStart",
    "Found",
    "FrameFormat",
    "FrameHunter",
    "Incomplete",
    "Verdict",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True, slots=True)
class Found(Generic[T_co]):
    """A complete, checked frame of ``size`` bytes."""

    size: int
    frame: T_co


@dataclass(frozen=True, slots=True)
class Incomplete:
    """The bytes so far may still become a frame."""


@dataclass(frozen=True, slots=True)
class FalseStart:
    """No frame starts here after all: hunt on from the next byte (``error`` says why)."""

    error: ProtocolError


@dataclass(frozen=True, slots=True)
class Damaged:
    """A frame of ``size`` bytes is here, but broken (a checksum, a cut): drop it whole."""

    size: int
    error: ProtocolError


Verdict = Found[T] | Incomplete | FalseStart | Damaged

INCOMPLETE = Incomplete()


class FrameFormat(Protocol[T_co]):
    """What one protocol tells the hunter."""

    #: Named in messages ("incomplete JBD frame start skipped").
    name: str
    #: The longest frame the protocol allows, in bytes.
    max_frame: int

    def next_start(self, buf: bytearray, at: int) -> int:
        """The first index ``>= at`` where a frame may start, or ``len(buf)`` when none.

        A possible start cut off by the end of ``buf`` (the first byte of a two-byte magic)
        counts as a start.
        """
        ...

    def judge(self, buf: bytearray, at: int) -> Found[T_co] | Incomplete | FalseStart | Damaged:
        """What the bytes from ``at`` (a possible start) are."""
        ...


@dataclass
class FrameHunter(Generic[T]):
    """Cuts ``format``'s frames out of a byte stream; ``skipped`` counts bytes between frames.

    :meth:`feed` returns the frames and the protocol errors met, in stream order.
    """

    format: FrameFormat[T]
    skipped: int = 0
    _buffer: bytearray = field(default_factory=bytearray)

    @property
    def buffered(self) -> int:
        """Bytes held back, waiting to become a frame."""
        return len(self._buffer)

    def clear(self) -> None:
        self._buffer.clear()

    def feed(self, data: bytes) -> list[T | ProtocolError]:
        out: list[T | ProtocolError] = []
        fmt, buf = self.format, self._buffer
        buf += data
        while buf:
            start = fmt.next_start(buf, 0)
            if start:
                self.skipped += start
                del buf[:start]
                if not buf:
                    break
            verdict = fmt.judge(buf, 0)
            if isinstance(verdict, Found):
                out.append(verdict.frame)
                del buf[: verdict.size]
            elif isinstance(verdict, FalseStart):
                out.append(verdict.error)
                self.skipped += 1
                del buf[:1]
            elif isinstance(verdict, Damaged):
                out.append(verdict.error)
                later = self._next_found(verdict.size)
                del buf[: verdict.size if later is None else later]
            else:
                later = self._next_found(len(buf))
                if later is not None:
                    out.append(FrameError(f"incomplete {fmt.name} frame start skipped"))
                    self.skipped += later
                    del buf[:later]
                elif len(buf) >= fmt.max_frame:
                    out.append(FrameError(f"{fmt.name} frame start not complete after "
                                          f"{fmt.max_frame} bytes"))
                    self.skipped += 1
                    del buf[:1]
                else:
                    break
        return out

    def _next_found(self, before: int) -> int | None:
        """Offset in ``1 .. before-1`` where a complete valid frame starts, if any."""
        fmt, buf = self.format, self._buffer
        index = fmt.next_start(buf, 1)
        while index < min(before, len(buf)):
            if isinstance(fmt.judge(buf, index), Found):
                return index
            index = fmt.next_start(buf, index + 1)
        return None
