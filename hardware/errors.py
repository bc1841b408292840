"""One error family for the hardware layer, on the project's error base.

Only :class:`HardwareConfigError` ever leaves a driver (at construction, for settings a person
must fix). The protocol errors are raised by the pure codecs and caught by the transports,
which count them in :class:`~hardware.base.DriverStats`: a sick sensor must never stop the
agent's poll loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from provenance.configfile import Problem
from provenance.errors import SensorLedgerError

__all__ = [
    "ChecksumError",
    "FrameError",
    "HardwareConfigError",
    "HardwareError",
    "ProtocolError",
]


class HardwareError(SensorLedgerError):
    """Base of every error raised by :mod:`hardware`."""

    code = "hardware"


class HardwareConfigError(HardwareError):
    """A driver name or setting is wrong; the message says which and what is expected.

    ``problems`` holds one entry per setting at fault (its key is the setting's name), so the
    agent can place each on its line of the config file; the message lists them all.
    """

    code = "hardware_config"

    def __init__(self, message: str, *, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)

    @classmethod
    def listing(cls, driver: str, problems: Sequence[Problem]) -> HardwareConfigError:
        """One error for every problem with ``driver``'s settings, one line each."""
        return cls("\n".join(f"{driver}: {p.message}" for p in problems), problems=problems)


class ProtocolError(HardwareError):
    """Bytes from a device that do not form a valid frame of its protocol."""

    code = "protocol"


class ChecksumError(ProtocolError):
    """A frame is complete but its checksum / CRC does not match its content."""

    def __init__(self, message: str, *, expected: int, received: int) -> None:
        super().__init__(f"{message}: expected 0x{expected:04X}, received 0x{received:04X}")
        self.expected = expected
        self.received = received


class FrameError(ProtocolError):
    """A frame is malformed: wrong markers, impossible length, unexpected command."""
