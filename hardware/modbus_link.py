"""One Modbus RTU line through pymodbus' serial client, with our error accounting.

pymodbus does the framing on the wire. What it does not do is say *why* a request failed: a
reply with a bad CRC, a reply cut short and a silent device all surface as the same timeout.
The client below keeps the raw bytes it received for the current request, and
:func:`hardware.modbus_rtu.diagnose` sorts a failure into the right counter.
"""

from __future__ import annotations

import logging
import time

from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException

from .base import DriverStats
from .modbus_rtu import (
    READ_HOLDING,
    READ_INPUT,
    ExceptionReply,
    ReadReply,
    diagnose,
    find_read_reply,
)
from .settings import SerialLine

__all__ = ["ModbusLink"]

log = logging.getLogger(__name__)


class _RecordingClient(ModbusSerialClient):
    """pymodbus' serial client, remembering every byte received since :meth:`begin`."""

    def __init__(self, line: SerialLine) -> None:
        super().__init__(
            line.port,
            framer=FramerType.RTU,
            baudrate=line.baudrate,
            parity=line.parity,
            stopbits=line.stopbits,
            bytesize=8,
            timeout=line.timeout_s,
            # Retries are the driver's decision, counted in its stats.
            retries=0,
        )
        self.received = bytearray()

    def begin(self) -> None:
        self.received.clear()

    def close(self) -> None:
        super().close()  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated

    def recv(self, size: int | None) -> bytes:
        data: bytes = super().recv(size)
        self.received += data
        return data


class ModbusLink:
    """Register reads and writes on one RS-485 line; failures are counted, never raised."""

    def __init__(self, line: SerialLine, stats: DriverStats, *, reopen_s: float = 1.0) -> None:
        self.line = line
        self.stats = stats
        self._client = _RecordingClient(line)
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
        self._client.begin()
        what = f"unit {unit} FC{function:02d} 0x{address:04X}+{count}"
        try:
            if function == READ_HOLDING:
                reply = self._client.read_holding_registers(address, count=count, device_id=unit)
            elif function == READ_INPUT:
                reply = self._client.read_input_registers(address, count=count, device_id=unit)
            else:
                raise ValueError(f"unsupported read function {function}")
        except ConnectionException as exc:
            self._client.close()  # reopened at the next request: the adapter may come back
            self._fail("other", f"{what}: serial port lost: {exc}")
            return None
        except ModbusException:
            return self._recover(unit, function, count, what)
        if reply.isError():
            code = getattr(reply, "exception_code", "?")
            self._fail("other", f"{what}: device refused the request (exception code {code})")
            return None
        registers = tuple(reply.registers)
        if len(registers) != count:
            self._fail("other", f"{what}: got {len(registers)} registers")
            return None
        if not bytes(self._client.received).startswith(bytes((unit, function))):
            self._fail("resync", f"{what}: skipped bytes before the reply")
        self.stats.frames_ok += 1
        return registers

    def _recover(self, unit: int, function: int, count: int, what: str) -> tuple[int, ...] | None:
        """pymodbus gave up; look at the raw bytes: resynchronise, or count why it failed."""
        received = bytes(self._client.received)
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
        self._client.begin()
        what = f"unit {unit} FC16 0x{address:04X}"
        try:
            reply = self._client.write_registers(address, values, device_id=unit)
        except ConnectionException as exc:
            self._client.close()
            self._fail("other", f"{what}: serial port lost: {exc}")
            return False
        except ModbusException:
            received = bytes(self._client.received)
            if received:
                self._fail("checksum", f"{what}: acknowledgement unreadable")
            else:
                self._fail("timeout", f"{what}: no acknowledgement within {self.line.timeout_s} s")
            return False
        if reply.isError():
            self._fail("other", f"{what}: device refused the write")
            return False
        self.stats.frames_ok += 1
        return True

    def close(self) -> None:
        self._client.close()
