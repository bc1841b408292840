"""Emulators are deterministic under a seed, and each starts from the command line so that a
person can attach a real agent to it."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import serial

from firmware_stubs.arc_model import ArcModel
from firmware_stubs.battery_model import BatteryPack
from firmware_stubs.cli import EMULATORS, EmulatorCommand
from firmware_stubs.clock import SimClock
from firmware_stubs.contec_oximeter import ContecOximeterEmulator
from firmware_stubs.jbd_bms import JbdBmsEmulator
from firmware_stubs.oximeter_model import OximeterModel
from firmware_stubs.water_model import WaterModel
from firmware_stubs.water_quality import WaterProbeEmulator
from hardware import contec_protocol, jbd_protocol, modbus_rtu
from hardware.water_profiles import BUILTIN_PROFILES
from provenance.keys import PublicKey
from tests.support.signed import SignedReading

from .conftest import MakeDriver, as_dict, measured, poll_until

REPO = Path(__file__).resolve().parents[2]

# --- seeded models --------------------------------------------------------------------------


def test_water_model_is_a_function_of_seed_and_time() -> None:
    names = ("temperature", "ph", "turbidity", "free_chlorine", "orp", "dissolved_oxygen")
    grid = [t * 317.0 for t in range(300)]

    def trace(seed: int) -> list[float]:
        model = WaterModel(seed)
        return [model.value(n, t) for t in grid for n in names]

    assert trace(1) == trace(1)
    assert trace(1) != trace(2)
    # Asked out of order, a fresh model still gives the same values.
    model = WaterModel(1)
    assert [model.value(n, t) for t in reversed(grid) for n in names][::-1] == [
        WaterModel(1).value(n, t) for t in grid for n in reversed(names)]


def test_battery_pack_is_deterministic() -> None:
    def run(seed: int) -> list[object]:
        pack = BatteryPack(seed)
        out: list[object] = []
        for hour in range(0, 12):
            pack.advance_to(hour * 3600)
            out += [pack.basic_info(), pack.cell_millivolts(), dict(pack.counters)]
        return out

    first = run(5)
    assert first == run(5)
    assert first != run(6)


def test_oximeter_and_arc_models_are_deterministic() -> None:
    assert [OximeterModel(3).sample(n) for n in range(3000)] == [
        OximeterModel(3).sample(n) for n in range(3000)]
    assert [OximeterModel(3).sample(n) for n in range(600)] != [
        OximeterModel(4).sample(n) for n in range(600)]

    def arcs(seed: int) -> list[object]:
        model = ArcModel(seed, arc_every_s=60)
        out: list[object] = []
        for t in range(0, 7200, 30):
            model.advance_to(t)
            out.append((sorted(model.alarm_channels()), list(model.counts), model.leak_ma))
        return out

    assert arcs(1) == arcs(1)
    assert arcs(1) != arcs(2)


# --- byte-level determinism over real ptys ----------------------------------------------------


def exchange(path: str, requests: list[bytes], complete: Callable[[bytes], bool]) -> list[bytes]:
    """Send each request on a raw serial port and collect its (complete) reply."""
    replies = []
    with serial.Serial(path, 115200, timeout=0) as port:
        for request in requests:
            port.write(request)
            deadline, reply = time.monotonic() + 1.0, b""
            while not complete(reply) and time.monotonic() < deadline:
                select.select([port.fileno()], [], [], 0.05)
                reply += port.read(port.in_waiting or 1)
            replies.append(reply)
    return replies


def jbd_complete(reply: bytes) -> bool:
    return len(reply) >= 4 and len(reply) >= 7 + reply[3]


def test_jbd_emulator_bytes_depend_only_on_seed_and_requests() -> None:
    requests = [jbd_protocol.encode_read(r) for r in (0x03, 0x04, 0xAA)] * 20

    def run(seed: int) -> list[bytes]:
        with JbdBmsEmulator(seed=seed, clock=SimClock(step=600.0), sleep_after_s=0) as bms:
            return exchange(bms.agent_path, requests, jbd_complete)

    first = run(4)
    assert all(first) and first == run(4)
    assert first != run(5)


def test_modbus_emulator_bytes_depend_only_on_seed_and_requests() -> None:
    profile = BUILTIN_PROFILES["yosemitech-y4000"]
    (block,) = profile.blocks()
    request = modbus_rtu.encode_read_request(1, 3, block.address, block.count)

    def run(seed: int) -> list[bytes]:
        with WaterProbeEmulator(profile, seed=seed, clock=SimClock(step=600.0)) as probe:
            return exchange(probe.agent_path, [request] * 30,
                            lambda reply: len(reply) >= 5 + 2 * block.count)

    first = run(4)
    assert all(len(r) == 37 for r in first) and first == run(4)
    assert first != run(5)


def test_contec_stream_bytes_depend_only_on_seed() -> None:
    def run(seed: int) -> bytes:
        with ContecOximeterEmulator(seed=seed, speed=20.0) as oximeter, serial.Serial(
            oximeter.agent_path, 115200, timeout=0
        ) as port:
            port.write(contec_protocol.encode_command(contec_protocol.CMD_START_REALTIME))
            data, deadline = b"", time.monotonic() + 5
            while len(data) < 9 * 300 and time.monotonic() < deadline:
                select.select([port.fileno()], [], [], 0.05)
                data += port.read(port.in_waiting or 1)
            return data[: 9 * 300]

    first = run(2)
    assert len(first) == 9 * 300 and first == run(2)
    assert first != run(3)


# --- command line ----------------------------------------------------------------------------


@contextmanager
def emulator_process(module: str, *args: str, one_command: bool = False) -> Iterator[str]:
    """Start ``python -m firmware_stubs.<module>`` (or ``python -m firmware_stubs <module>``);
    yield the port it prints; stop it."""
    command = ["firmware_stubs", module] if one_command else [f"firmware_stubs.{module}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", *command, *args], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        if not ready:
            pytest.fail(f"{module} printed no port within 20 s")
        path = proc.stdout.readline().strip()
        if not path.startswith("/dev/"):
            proc.kill()
            pytest.fail(f"{module} did not start: {path!r} {proc.communicate()[1]}")
        yield path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, proc.communicate()[1]


def read_log(path: Path, what: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [line for line in lines if line["what"] == what]


def test_cli_jbd_bms(tmp_path: Path, make_driver: MakeDriver) -> None:
    log = tmp_path / "bms.jsonl"
    with emulator_process("jbd_bms", "--seed", "3", "--step", "600", "--sleep-after", "0",
                          "--log", str(log)) as port:
        driver = make_driver("jbd-bms", {"port": port, "timeout_s": 0.5})
        statuses = [driver.poll()[0] for _ in range(5)]
    logged = read_log(log, "basic_info")
    assert len(logged) == 5
    for status, line in zip(statuses, logged, strict=True):
        assert measured(status, "pack_voltage") == line["pack_voltage"]
        assert measured(status, "state_of_charge") == line["state_of_charge"]


@pytest.mark.parametrize("profile", ["supmea-ph8001", "aqualabo-pheht"])
def test_cli_water_quality(profile: str, tmp_path: Path, make_driver: MakeDriver) -> None:
    log = tmp_path / "probe.jsonl"
    with emulator_process("water_quality", "--profile", profile, "--seed", "3", "--step", "60",
                          "--log", str(log)) as port:
        driver = make_driver("modbus-water", {"port": port, "profile": profile,
                                              "timeout_s": 1.0, "trigger_wait_s": 0.0})
        samples = [driver.poll()[0] for _ in range(5)]
    logged = read_log(log, "read")
    assert len(logged) == 5
    for sample, line in zip(samples, logged, strict=True):
        assert {k: v for k, v in line.items() if k not in ("index", "what", "intact")} == (
            as_dict(sample))


def test_cli_arc_monitor(make_driver: MakeDriver) -> None:
    with emulator_process("arc_monitor", "--seed", "3", "--step", "30",
                          "--arc-every", "30") as port:
        driver = make_driver("arc-monitor", {"port": port, "residual_unit": 2,
                                             "timeout_s": 1.0, "status_interval_s": 0})
        samples = [s for _ in range(15) for s in driver.poll()]
    assert any(s.event is not None and s.event["type"] == "arc" for s in samples)
    assert sum(s.event is None for s in samples) == 15


def test_cli_contec_oximeter(make_driver: MakeDriver) -> None:
    with emulator_process("contec_oximeter", "--seed", "3", "--speed", "10") as port:
        driver = make_driver("contec-oximeter", {"port": port, "window_s": 0.5})
        samples = poll_until(driver, 5)
    assert all(measured(s, "samples") == 30 for s in samples)


def test_cli_self_signing_sensor_survives_a_restart(tmp_path: Path,
                                                     make_driver: MakeDriver) -> None:
    key, state = tmp_path / "firmware" / "sensor.pem", tmp_path / "flash" / "sensor.state"
    envelopes: list[bytes] = []
    for _boot in (1, 2):
        with emulator_process("self_signing", "--key", str(key), "--state", str(state),
                              "--interval", "0.05", "--device-id", "wq-cli-1") as port:
            driver = make_driver("self-signing-serial", {"port": port})
            envelopes += [s.envelope for s in poll_until(driver, 5) if s.envelope]
            driver.close()
    assert key.stat().st_mode & 0o077 == 0
    public = PublicKey.from_pem(key.with_name(key.name + ".pub.pem").read_bytes())
    readings = [SignedReading.open(e, public).reading for e in envelopes]
    assert {r.device_id for r in readings} == {"wq-cli-1"}
    assert {r.boot for r in readings} == {1, 2}
    seqs = [r.seq for r in readings]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # never reused across boots
    # Within a boot the chain links; the driver attached after the first frames, so check
    # consecutive pairs it saw.
    for earlier, later, envelope in zip(readings, readings[1:], envelopes, strict=False):
        if later.seq == earlier.seq + 1:
            assert later.prev == hashlib.sha256(envelope).digest()


def test_one_command_runs_every_emulator(make_driver: MakeDriver) -> None:
    modules = {path.stem for path in (REPO / "firmware_stubs").glob("*.py")
               if "COMMAND = EmulatorCommand(" in path.read_text()}
    assert modules == set(EMULATORS)
    for name, module in EMULATORS.items():
        command = importlib.import_module(module).COMMAND
        assert isinstance(command, EmulatorCommand) and command.name == name
        assert "def main(" not in (REPO / "firmware_stubs" / f"{name}.py").read_text()
    usage = subprocess.run([sys.executable, "-m", "firmware_stubs", "-h"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout
    assert all(name in usage for name in EMULATORS)
    with emulator_process("jbd_bms", "--step", "600", "--sleep-after", "0",
                          one_command=True) as port:
        driver = make_driver("jbd-bms", {"port": port, "timeout_s": 0.5})
        (status,) = driver.poll()
    assert status.kind == "battery"
