"""Serial framing for self-signing sensors: how a signed envelope crosses a UART (pure).

A UART has no message boundaries and flips bits, and the envelope inside is signed, so the
frame only has to find boundaries and catch line errors; it never touches the envelope::

    "S" "L" | version 0x01 | length (2 B, big-endian) | envelope | CRC-32 (4 B, big-endian)

The CRC is CRC-32/ISO-HDLC (zlib's ``crc32``) over version, length and envelope. Lengths run
1..4096; anything else after the magic is a false start and the hunt continues one byte on.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from .errors import ChecksumError, FrameError, ProtocolError

__all__ = ["MAGIC", "MAX_ENVELOPE", "VERSION", "EnvelopeAssembler", "encode_frame"]

MAGIC = b"SL"
VERSION = 0x01
MAX_ENVELOPE = 4096
_HEAD = len(MAGIC) + 3
_TAIL = 4


def encode_frame(envelope: bytes) -> bytes:
    if not 1 <= len(envelope) <= MAX_ENVELOPE:
        raise ValueError(f"an envelope must be 1..{MAX_ENVELOPE} bytes, got {len(envelope)}")
    body = bytes((VERSION,)) + len(envelope).to_bytes(2, "big") + envelope
    return MAGIC + body + zlib.crc32(body).to_bytes(4, "big")


@dataclass
class EnvelopeAssembler:
    """Cuts envelopes out of the byte stream; ``skipped`` counts bytes between frames."""

    _buffer: bytearray = field(default_factory=bytearray)
    skipped: int = 0

    def feed(self, data: bytes) -> list[bytes | ProtocolError]:
        out: list[bytes | ProtocolError] = []
        buf = self._buffer
        buf += data
        while True:
            start = buf.find(MAGIC)
            if start < 0:
                # Keep a trailing "S": it may be the first half of the next magic.
                keep = 1 if buf.endswith(MAGIC[:1]) else 0
                self.skipped += len(buf) - keep
                del buf[: len(buf) - keep]
                return out
            if start:
                self.skipped += start
                del buf[:start]
            if len(buf) < _HEAD:
                return out
            length = int.from_bytes(buf[3:5], "big")
            if buf[2] != VERSION or not 1 <= length <= MAX_ENVELOPE:
                out.append(FrameError(f"false frame start (version {buf[2]}, length {length})"))
                self.skipped += 1
                del buf[:1]
                continue
            total = _HEAD + length + _TAIL
            if len(buf) < total:
                # Maybe a false start claiming a long length: a complete frame behind it
                # must not wait for bytes that may never come.
                later = _next_valid_frame(buf)
                if later is None:
                    return out
                out.append(FrameError("incomplete envelope frame start skipped"))
                self.skipped += later
                del buf[:later]
                continue
            body = bytes(buf[2 : _HEAD + length])
            expected = zlib.crc32(body)
            received = int.from_bytes(buf[_HEAD + length : total], "big")
            if expected != received:
                # Skip only the magic: a false start must not swallow a real frame after it.
                out.append(ChecksumError("envelope frame CRC-32 mismatch",
                                         expected=expected, received=received))
                self.skipped += 1
                del buf[:1]
                continue
            out.append(body[3:])
            del buf[:total]


def _valid_at(buf: bytearray, index: int) -> bool:
    """A complete frame with a matching CRC starts at ``index``."""
    if not buf.startswith(MAGIC, index) or len(buf) < index + _HEAD:
        return False
    length = int.from_bytes(buf[index + 3 : index + 5], "big")
    end = index + _HEAD + length + _TAIL
    if buf[index + 2] != VERSION or not 1 <= length <= MAX_ENVELOPE or len(buf) < end:
        return False
    body = bytes(buf[index + 2 : end - _TAIL])
    return zlib.crc32(body) == int.from_bytes(buf[end - _TAIL : end], "big")


def _next_valid_frame(buf: bytearray) -> int | None:
    index = buf.find(MAGIC, 1)
    while index > 0:
        if _valid_at(buf, index):
            return index
        index = buf.find(MAGIC, index + 1)
    return None
