"""Each assumption :mod:`hardware.pymodbus_adapter` makes about pymodbus, on the real library.

When a pymodbus upgrade breaks one, the test named after it fails here: fix the adapter (and
its pin), not the drivers.
"""

from __future__ import annotations

import ast
import logging
import re
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from firmware_stubs.clock import SimClock
from firmware_stubs.water_quality import WaterProbeEmulator
from hardware import modbus_rtu, pymodbus_adapter
from hardware.pymodbus_adapter import NoReply, PortLost, Refused, RtuClient
from hardware.settings import SerialLine
from hardware.water_profiles import BUILTIN_PROFILES

REPO = Path(__file__).resolve().parents[2]
PROFILE = BUILTIN_PROFILES["supmea-ph8001"]
FIELD = PROFILE.fields[0]


@pytest.fixture(autouse=True)
def _quiet_pymodbus() -> Iterator[None]:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the faults are on purpose
    yield
    logging.getLogger("pymodbus").setLevel(logging.NOTSET)


@pytest.fixture
def probe() -> Iterator[WaterProbeEmulator]:
    with WaterProbeEmulator(PROFILE, seed=4, clock=SimClock(step=60.0)) as emulator:
        yield emulator


@pytest.fixture
def client(probe: WaterProbeEmulator) -> Iterator[RtuClient]:
    line = SerialLine(probe.agent_path, PROFILE.baudrate, PROFILE.parity, PROFILE.stopbits,
                      0.3)
    rtu = RtuClient(line)
    assert rtu.connect() and rtu.connected
    yield rtu
    rtu.close()


def _read(client: RtuClient) -> tuple[int, ...] | Refused:
    return client.read_registers(PROFILE.default_unit, PROFILE.function, FIELD.address,
                                 FIELD.size)


def test_the_installed_pymodbus_is_the_one_the_adapter_states() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (pin,) = [r for r in map(Requirement, project["dependencies"]) if r.name == "pymodbus"]
    doc = ast.get_docstring(ast.parse(Path(pymodbus_adapter.__file__).read_text())) or ""
    stated = re.search(r"Pinned: ``(pymodbus[^`]+)``", doc)
    assert stated is not None, "the adapter's docstring must state its pin"
    assert Requirement(stated.group(1)).specifier == pin.specifier, (stated.group(1), pin)
    assert metadata.version("pymodbus") in pin.specifier


def test_every_received_byte_passes_through_recv(client: RtuClient) -> None:
    registers = _read(client)
    assert isinstance(registers, tuple) and len(registers) == FIELD.size
    assert client.received == modbus_rtu.encode_read_reply(
        PROFILE.default_unit, PROFILE.function, list(registers))


def test_a_silent_device_raises_and_nothing_was_received(probe: WaterProbeEmulator,
                                                         client: RtuClient) -> None:
    probe.faults.mute()
    with pytest.raises(NoReply):
        _read(client)
    assert client.received == b""


def test_a_damaged_or_late_reply_raises_and_its_bytes_are_kept(probe: WaterProbeEmulator,
                                                               client: RtuClient) -> None:
    unit, function = PROFILE.default_unit, PROFILE.function
    probe.faults.corrupt_next()
    with pytest.raises(NoReply):
        _read(client)
    assert modbus_rtu.diagnose(client.received, unit, function, FIELD.size) == "checksum"
    # Junk before a good reply: pymodbus' framer may drop it; the raw bytes still hold it.
    probe.faults.inject_garbage(b"\x55\xaa\x07")
    try:
        outcome: object = _read(client)
    except NoReply as exc:
        outcome = exc
    assert client.received.startswith(b"\x55\xaa\x07")
    found = modbus_rtu.find_read_reply(client.received, unit, function, FIELD.size)
    assert found is not None and found[0] == 3
    if not isinstance(outcome, NoReply):
        assert outcome == found[1].registers  # type: ignore[union-attr]


def test_a_refusal_is_a_reply_with_its_exception_code(client: RtuClient) -> None:
    refused = client.read_registers(PROFILE.default_unit, PROFILE.function, 0x0B, 1)
    assert refused == Refused(2)  # illegal data address
    assert client.write_registers(PROFILE.default_unit, 0x0B, [1]) == Refused(2)


def test_the_unit_is_passed_as_the_device_id(client: RtuClient) -> None:
    other = PROFILE.default_unit + 1  # nobody on the line answers it: RS-485 silence
    with pytest.raises(NoReply):
        client.read_registers(other, PROFILE.function, FIELD.address, FIELD.size)


def test_a_port_that_vanishes_is_a_lost_port() -> None:
    probe = WaterProbeEmulator(PROFILE, seed=4).start()
    line = SerialLine(probe.agent_path, PROFILE.baudrate, PROFILE.parity, PROFILE.stopbits,
                      0.3)
    client = RtuClient(line)
    try:
        assert isinstance(_read(client), tuple)
        probe.stop()  # the pty disappears, like a USB adapter pulled out
        with pytest.raises((PortLost, NoReply)):
            _read(client)
        with pytest.raises(PortLost):
            _read(client)
        assert not client.connected
    finally:
        client.close()
        probe.stop()
