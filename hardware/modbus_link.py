"""One Modbus RTU line through pymodbus' serial client, with our error accounting.

pymodbus does the framing on the wire, behind :mod:`hardware.pymodbus_adapter` (the only
module that touches pymodbus). What pymodbus does not do is say *why* a request failed: a
reply with a bad CRC, a reply cut short and a silent device all surface as the same timeout.
The adapter keeps the raw bytes received for the current request, and
:func:`hardware.modbus_rtu.diagnose` sorts a failure into the right counter.
"""

from __future__ import annotations

import logging
import time

from .base import DriverStats
from .modbus_rtu import ExceptionReply, ReadReply, diagnose, find_read_reply
from .pymodbus_adapter import NoReply, PortLost, Refused, RtuClient
from .settings import SerialLine

__all__ = ["ModbusLink"]

log = logging.getLogger(__name__)


class ModbusLink:
    """Register reads and writes on one RS-485 line; failures are counted, never raised."""

    def __init__(self, line: SerialLine, stats: DriverStats, *, reopen_s: float = 1.0) -> None:
        self.line = line
        self.stats = stats
        self._client = RtuClient(line)
        self._reopen_s = reopen_s
        self._next_open = 0.0

    def _connect(self) -> bool:
        if self._client.connected:
            return True
        now = time.monotonic()
        if now < self._next_open:
            self._fail("other", f"serial port {self.line.port} unavailable")
            return False
        self._next_open = now + self._reopen_s  # an unplugged adapter: retry once a second
        if self._client.connect():
            return True
        self._fail("other", f"cannot open serial port {self.line.port}")
        return False

    def _fail(self, counter: str, message: str) -> None:
        if counter == "checksum":
            self.stats.checksum_errors += 1
        elif counter == "timeout":
            self.stats.timeouts += 1
        elif counter == "resync":
            self.stats.resyncs += 1
        else:
            self.stats.other_errors += 1
        self.stats.last_error = message
        log.debug("%s: %s", self.line.port, message)

    def read(self, unit: int, function: int, address: int, count: int) -> tuple[int, ...] | None:
        """Registers ``address .. address+count-1`` of ``unit``, or ``None`` (counted)."""
        if not self._connect():
            return None
        what = f"unit {unit} FC{function:02d} 0x{address:04X}+{count}"
        try:
            reply = self._client.read_registers(unit, function, address, count)
        except PortLost as exc:
            self._fail("other", f"{what}: serial port lost: {exc}")
            return None
        except NoReply:
            return self._recover(unit, function, count, what)
        if isinstance(reply, Refused):
            self._fail("other", f"{what}: device refused the request (exception code "
                       f"{reply.code})")
            return None
        if len(reply) != count:
            self._fail("other", f"{what}: got {len(reply)} registers")
            return None
        if not self._client.received.startswith(bytes((unit, function))):
            self._fail("resync", f"{what}: skipped bytes before the reply")
        self.stats.frames_ok += 1
        return reply

    def _recover(self, unit: int, function: int, count: int, what: str) -> tuple[int, ...] | None:
        """pymodbus gave up; look at the raw bytes: resynchronise, or count why it failed."""
        received = self._client.received
        found = find_read_reply(received, unit, function, count)
        offset, reply = found if found is not None else (0, None)
        if isinstance(reply, ReadReply):
            # pymodbus' RTU framer discards a whole buffer when junk precedes the reply;
            # the reply is intact, so take it.
            self._fail("resync", f"{what}: reply found after {offset} bytes of junk")
            self.stats.frames_ok += 1
            return reply.registers
        if isinstance(reply, ExceptionReply):
            self._fail("other", f"{what}: device refused the request (exception code "
                       f"{reply.code})")
            return None
        verdict = diagnose(received, unit, function, count)
        if verdict == "silent":
            self._fail("timeout", f"{what}: no reply within {self.line.timeout_s} s")
        elif verdict == "checksum":
            self._fail("checksum", f"{what}: reply failed its CRC check")
        elif verdict == "truncated":
            self._fail("timeout", f"{what}: reply truncated")
        else:
            self._fail("resync", f"{what}: only garbage on the line")
        return None

    def write_registers(self, unit: int, address: int, values: list[int]) -> bool:
        """FC16 write; ``False`` (counted) when the device did not acknowledge it."""
        if not self._connect():
            return False
        what = f"unit {unit} FC16 0x{address:04X}"
        try:
            refused = self._client.write_registers(unit, address, values)
        except PortLost as exc:
            self._fail("other", f"{what}: serial port lost: {exc}")
            return False
        except NoReply:
            if self._client.received:
                self._fail("checksum", f"{what}: acknowledgement unreadable")
            else:
                self._fail("timeout", f"{what}: no acknowledgement within {self.line.timeout_s} s")
            return False
        if refused is not None:
            self._fail("other", f"{what}: device refused the write")
            return False
        self.stats.frames_ok += 1
        return True

    def close(self) -> None:
        self._client.close()
