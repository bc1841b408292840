"""Run a pymodbus RTU server for simulated devices, in a thread, on a pty or a real port.

The device models plug into pymodbus through ``SimDevice(action=...)``: the action runs on
every request before pymodbus builds the reply, refreshes the registers from the model, and
*stages* what the reply will say. ``trace_packet`` sees the reply bytes on their way out,
applies :class:`~firmware_stubs.faults.LineFaults` and moves the staged values into the
transcript, marked intact or not.

A real RS-485 slave stays silent for requests to another address; a stock pymodbus server
answers them with an exception, so such replies are dropped here.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Self

from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import SimDevice

from .faults import LineFaults
from .lifecycle import Lifecycle
from .ptys import PtyCable
from .transcript import Transcript

__all__ = ["ModbusEmulator", "ModbusHost"]


class ModbusHost(Lifecycle):
    """The server side of one Modbus line. ``agent_path`` is the port for the agent."""

    def __init__(self, devices: Sequence[SimDevice], *, port: str | None = None,
                 baudrate: int = 9600, parity: str = "N", stopbits: int = 1,
                 faults: LineFaults | None = None, transcript: Transcript | None = None) -> None:
        self.faults = faults or LineFaults()
        self.transcript = transcript or Transcript()
        self._devices = list(devices)
        self._units = {d.id for d in self._devices}
        self._cable: PtyCable | None = None
        if port is None:
            self._cable = PtyCable()
            self._server_port = self._cable.device_path
            self.agent_path = self._cable.agent_path
        else:
            self._server_port = port
            self.agent_path = port
        self._baudrate, self._parity, self._stopbits = baudrate, parity, stopbits
        self._staged: list[tuple[str, Mapping[str, Any]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusSerialServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="modbus-host", daemon=True)

    # Called from device actions (inside the server's event loop).
    def stage(self, what: str, values: Mapping[str, Any]) -> None:
        self._staged.append((what, values))

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            return data
        staged, self._staged = self._staged, []
        if not data or data[0] not in self._units:
            return b""  # not addressed to a device on this line: RS-485 silence
        wire, intact = self.faults.apply(data)
        for what, values in staged:
            self.transcript.record(what, values, intact=intact)
        return wire

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start() instead of dying silently
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._server = ModbusSerialServer(
            self._devices, framer=FramerType.RTU, port=self._server_port,
            baudrate=self._baudrate, parity=self._parity, stopbits=self._stopbits,
            trace_packet=self._trace_packet,
        )
        await self._server.serve_forever(background=True)
        self._ready.set()
        await self._server.serving

    def start(self) -> ModbusHost:
        self._thread.start()
        if not self._ready.wait(timeout=10) or self._error is not None:
            raise RuntimeError(f"Modbus server did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                shutdown = self._server.shutdown()  # type: ignore[no-untyped-call]
                asyncio.run_coroutine_threadsafe(shutdown, self._loop).result(5)
        self._thread.join(timeout=5)
        if self._cable is not None:
            self._cable.close()
        self.transcript.close()


class ModbusEmulator(Lifecycle):
    """An emulator served by a :class:`ModbusHost` (set by the subclass as ``host``)."""

    host: ModbusHost

    @property
    def agent_path(self) -> str:
        return self.host.agent_path

    @property
    def transcript(self) -> Transcript:
        return self.host.transcript

    @property
    def faults(self) -> LineFaults:
        return self.host.faults

    def start(self) -> Self:
        self.host.start()
        return self

    def stop(self) -> None:
        self.host.stop()
