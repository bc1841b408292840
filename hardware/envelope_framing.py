"""Serial framing for self-signing sensors: how a signed envelope crosses a UART (pure).

A UART has no message boundaries and flips bits, and the envelope inside is signed, so the
frame only has to find boundaries and catch line errors; it never touches the envelope::

    "S" "L" | version 0x01 | length (2 B, big-endian) | envelope | CRC-32 (4 B, big-endian)

The CRC is CRC-32/ISO-HDLC (zlib's ``crc32``) over version, length and envelope. Lengths run
1..4096; anything else after the magic is a false start and the hunt continues one byte on.
"""

from __future__ import annotations

import zlib

from .errors import ChecksumError, FrameError
from .frame_hunt import INCOMPLETE, FalseStart, Found, FrameHunter, Verdict

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


class _EnvelopeFormat:
    name = "envelope"
    max_frame = _HEAD + MAX_ENVELOPE + _TAIL

    def next_start(self, buf: bytearray, at: int) -> int:
        start = buf.find(MAGIC, at)
        if start >= 0:
            return start
        # A trailing "S" may be the first half of the next magic.
        return len(buf) - 1 if len(buf) > at and buf.endswith(MAGIC[:1]) else len(buf)

    def judge(self, buf: bytearray, at: int) -> Verdict[bytes]:
        if len(buf) < at + _HEAD:
            return INCOMPLETE
        length = int.from_bytes(buf[at + 3 : at + 5], "big")
        if buf[at + 2] != VERSION or not 1 <= length <= MAX_ENVELOPE:
            return FalseStart(FrameError(
                f"false frame start (version {buf[at + 2]}, length {length})"))
        total = _HEAD + length + _TAIL
        if len(buf) < at + total:
            return INCOMPLETE
        body = bytes(buf[at + 2 : at + _HEAD + length])
        expected = zlib.crc32(body)
        received = int.from_bytes(buf[at + _HEAD + length : at + total], "big")
        if expected != received:
            # Hunt on from the next byte: a false start must not swallow a real frame after it.
            return FalseStart(ChecksumError("envelope frame CRC-32 mismatch",
                                            expected=expected, received=received))
        return Found(total, body[3:])


class EnvelopeAssembler(FrameHunter[bytes]):
    """Cuts envelopes out of the byte stream; ``skipped`` counts bytes between frames."""

    def __init__(self) -> None:
        super().__init__(_EnvelopeFormat())
