"""One error family for the hardware layer.

Only :class:`HardwareConfigError` ever leaves a driver (at construction, for settings a person
must fix). The protocol errors are raised by the pure codecs and caught by the transports,
which count them in :class:`~hardware.base.DriverStats`: a sick sensor must never stop the
agent's poll loop.
"""

from __future__ import annotations

__all__ = [
    "ChecksumError",
    "FrameError",
    "HardwareConfigError",
    "HardwareError",
    "ProtocolError",
]


class HardwareError(Exception):
    """Base of every error raised by :mod:`hardware`."""


class HardwareConfigError(HardwareError):
    """A driver name or setting is wrong; the message says which and what is expected."""


class ProtocolError(HardwareError):
    """Bytes from a device that do not form a valid frame of its protocol."""


class ChecksumError(ProtocolError):
    """A frame is complete but its checksum / CRC does not match its content."""

    def __init__(self, message: str, *, expected: int, received: int) -> None:
        super().__init__(f"{message}: expected 0x{expected:04X}, received 0x{received:04X}")
        self.expected = expected
        self.received = received


class FrameError(ProtocolError):
    """A frame is malformed: wrong markers, impossible length, unexpected command."""
