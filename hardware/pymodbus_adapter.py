"""Everything :mod:`hardware` relies on in pymodbus beyond its documented calls, in one place.

Pinned: ``pymodbus>=3.16.1,<4`` (``pyproject.toml``). pymodbus changes its API in minor
versions, and 4.0 is to bring a new client. 3.16.1 is the oldest release the test suite
passes on: 3.16.0 was withdrawn for a regression; up to 3.15 the framer treats junk before a
reply differently, so the drivers count resyncs differently; up to 3.12 the simulator the
emulators in ``firmware_stubs`` serve with lacks ``DataType``; 3.10 renamed the unit
argument ``slave=`` to ``device_id=``.

This module is the only one in :mod:`hardware` that imports pymodbus; nothing outside it
sees a pymodbus type or exception. ``tests/hardware/test_pymodbus_adapter.py`` checks every
assumption below against the installed library and a real pymodbus server, so an upgrade
that breaks one fails there, by name, before any driver test.

What we rely on, and why:

1. **Every received byte passes through** ``ModbusSerialClient.recv(size)`` (the transaction
   manager calls it in a loop until a frame decodes or the timeout passes). We override it
   to keep a copy of the raw bytes of the current request: pymodbus reports a reply with a
   bad CRC, a reply cut short and a silent device alike, as "no response", and only the
   raw bytes tell them apart (:func:`hardware.modbus_rtu.diagnose`). They also hold a good
   reply that pymodbus' RTU framer threw away because junk came before it.
2. **Failures are exceptions**: a port that went away raises ``ConnectionException`` (up to
   3.15 pyserial's ``OSError`` may come through instead); a request without a valid reply
   raises another ``ModbusException``; a device's refusal is a reply whose ``isError()`` is
   true, carrying ``exception_code``.
3. **The unit is** ``device_id=`` on the read and write calls (pymodbus 3.10 and later).
4. ``retries=0`` makes one request one attempt: retries are the driver's decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException

from .modbus_rtu import READ_HOLDING, READ_INPUT
from .settings import SerialLine

__all__ = ["NoReply", "PortLost", "Refused", "RtuClient"]


class PortLost(Exception):
    """The serial port went away under a request (an unplugged adapter)."""


class NoReply(Exception):
    """No valid reply within the timeout; :attr:`RtuClient.received` holds what came."""


@dataclass(frozen=True, slots=True)
class Refused:
    """The device answered with a Modbus exception reply."""

    code: int | str


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
            retries=0,
        )
        self.received = bytearray()

    def begin(self) -> None:
        self.received.clear()

    def recv(self, size: int | None) -> bytes:
        data: bytes = super().recv(size)
        self.received += data
        return data


class RtuClient:
    """One Modbus RTU line as :class:`hardware.modbus_link.ModbusLink` needs it."""

    def __init__(self, line: SerialLine) -> None:
        self._client = _RecordingClient(line)

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    @property
    def received(self) -> bytes:
        """The raw bytes received for the last request."""
        return bytes(self._client.received)

    def connect(self) -> bool:
        return bool(self._client.connect())

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated

    def read_registers(self, unit: int, function: int, address: int,
                       count: int) -> tuple[int, ...] | Refused:
        """FC03 / FC04; raises :class:`PortLost` or :class:`NoReply`."""
        self._client.begin()
        try:
            if function == READ_HOLDING:
                reply = self._client.read_holding_registers(address, count=count,
                                                            device_id=unit)
            elif function == READ_INPUT:
                reply = self._client.read_input_registers(address, count=count, device_id=unit)
            else:
                raise ValueError(f"unsupported read function {function}")
        except (ConnectionException, OSError) as exc:
            self._client.close()  # type: ignore[no-untyped-call]  # reopened at the next use
            raise PortLost(str(exc)) from exc
        except ModbusException as exc:
            raise NoReply(str(exc)) from exc
        if reply.isError():
            return Refused(getattr(reply, "exception_code", "?"))
        return tuple(reply.registers)

    def write_registers(self, unit: int, address: int, values: list[int]) -> Refused | None:
        """FC16; ``None`` when acknowledged. Raises :class:`PortLost` or :class:`NoReply`."""
        self._client.begin()
        try:
            reply = self._client.write_registers(address, values, device_id=unit)
        except (ConnectionException, OSError) as exc:
            self._client.close()  # type: ignore[no-untyped-call]
            raise PortLost(str(exc)) from exc
        except ModbusException as exc:
            raise NoReply(str(exc)) from exc
        if reply.isError():
            return Refused(getattr(reply, "exception_code", "?"))
        return None
