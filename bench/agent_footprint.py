"""Issue item 5: the agent's footprint at 1 Hz on four emulated devices, and its maximum rate.

Steady state: ``sensor-agent run`` with four drivers (Modbus water probe, JBD BMS, Contec
oximeter, arc monitor), each talking to its emulator from ``firmware_stubs`` over a
pseudo-terminal and polled once a second. After a warm-up, the agent's RSS is sampled every
second and its CPU time taken over the window; emulators and broker are not counted.

Maximum rate: the same agent runtime with one ``bench-synthetic`` driver (bench.agent_synthetic)
polled back to back, so the sign + spool + publish path is the only limit. Throughput is counted
where it matters, at the broker, and RSS is compared between the end of a warm-up and 100,000
readings later.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from demo.processes import terminate
from provenance.keyfile import save_private_key
from provenance.keys import PrivateKey
from provenance.wire import reading_topic

from .broker import bench_broker
from .context import RunContext
from .diagnostics import memory_by_mapping
from .ledger import installed_cli
from .observe import MessageCounter, sample_process
from .results import BenchResult, Target

__all__ = ["run_agent"]

TARGET_RSS_MB = 40.0
TARGET_CPU_PCT = 2.0
TARGET_MAX_PER_S = 2000.0
TARGET_RSS_GROWTH_MB = 2.0
_DEVICE = "bench-agent"
_TOPIC = reading_topic(_DEVICE)
_MB = 1024 * 1024

# (sensor name, driver, emulator module, emulator args, driver settings besides the port)
_SENSORS: tuple[tuple[str, str, str, tuple[str, ...], dict[str, object]], ...] = (
    ("water", "modbus-water", "water_quality", ("--profile", "supmea-ph8001"),
     {"profile": "supmea-ph8001"}),
    ("bms", "jbd-bms", "jbd_bms", (), {}),
    ("oximeter", "contec-oximeter", "contec_oximeter", (), {}),
    ("arc", "arc-monitor", "arc_monitor", ("--channels", "8"), {"channels": 8}),
)


def _toml(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _config(workdir: Path, broker_url: str, sensors: Sequence[dict[str, object]]) -> Path:
    key = workdir / "device-key.pem"
    if not key.exists():
        save_private_key(PrivateKey.generate(), key)
    # No collector runs here, so no receipts come: the agent alone, PUBACK-only delivery.
    lines = [f'device_id = "{_DEVICE}"', f'key_file = "{key}"',
             f'state_dir = "{workdir / "state"}"', 'delivery = "puback"', "", "[broker]",
             f'url = "{broker_url}"']
    for sensor in sensors:
        lines += ["", "[[sensors]]", *(f"{k} = {_toml(v)}" for k, v in sensor.items())]
    path = workdir / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def _emulators(workdir: Path) -> Iterator[list[str]]:
    """Start the four emulators; yield the serial port each one printed."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = []
        for name, _, module, args, _ in _SENSORS:
            log = (workdir / f"emulator-{name}.log").open("wb")
            proc = subprocess.Popen([sys.executable, "-m", f"firmware_stubs.{module}", *args],
                                    stdout=subprocess.PIPE, stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            procs.append(proc)
            assert proc.stdout is not None
            port = proc.stdout.readline().decode().strip()
            if not port:
                raise RuntimeError(f"emulator {module} printed no port")
            ports.append(port)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def _agent(argv: Sequence[str], log_path: Path,
           env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("wb") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env or {**os.environ})
        try:
            yield proc
        finally:
            terminate(proc, 30)


# The agent's own packages; every other module it imports is a library under its RSS.
_OWN_PACKAGES = frozenset({"agent", "hardware", "provenance", "bench", "__main__"})
_IMPORT_LINE = "import time:"


def _imported_modules(log: Path) -> list[str]:
    """Module names, in import order, from a ``python -X importtime`` log."""
    names = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith(_IMPORT_LINE) and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "imported package":
                names.append(name)
    return names


def _library_floor_rss(modules: Sequence[str]) -> tuple[int, list[str]]:
    """RSS in bytes of a fresh interpreter that has imported the agent's library modules, and
    the modules it imported.

    ``modules`` is what a running agent imported (from ``-X importtime``): every module
    outside SensorLedger's own packages, stdlib included, lazily imported ones included. The
    log also names optional imports that failed (a library probing for another); those are
    skipped here too.
    """
    libraries = [m for m in modules if m.split(".")[0] not in _OWN_PACKAGES]
    script = ("import importlib, json, sys\n"
              "loaded = []\n"
              "for name in sys.argv[1:]:\n"
              "    try:\n"
              "        importlib.import_module(name)\n"
              "        loaded.append(name)\n"
              "    except Exception:\n"
              "        pass\n"
              "rss = next(l.split()[1] for l in open('/proc/self/status') "
              "if l.startswith('VmRSS:'))\n"
              "print(json.dumps([int(rss) * 1024, loaded]))")
    out = subprocess.run([sys.executable, "-c", script, *libraries], capture_output=True,
                         text=True, check=True, timeout=60)
    rss, loaded = json.loads(out.stdout)
    return rss, loaded


def _modules_of_a_running_agent(argv: Sequence[str], workdir: Path, seconds: float) -> list[str]:
    """Run the agent for ``seconds`` under ``-X importtime`` (a run of its own, so the measured
    one is untouched) and return what it imported, drivers' lazy imports included."""
    log = workdir / "agent-importtime.log"
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    with _agent(argv, log, env=env) as agent:
        time.sleep(seconds)
        if agent.poll() is not None:
            raise RuntimeError(f"agent exited {agent.returncode}; see {log}")
    return _imported_modules(log)


def _steady(ctx: RunContext, result: BenchResult) -> None:
    workdir = ctx.scratch("agent-steady")
    warmup = min(10.0, ctx.sizes.agent_idle_seconds)
    with bench_broker(workdir / "broker") as broker, _emulators(workdir) as ports:
        sensors = [{"name": name, "driver": driver, "interval_s": 1.0, "port": port, **extra}
                   for (name, driver, _, _, extra), port in zip(_SENSORS, ports, strict=True)]
        conf = _config(workdir, broker.url, sensors)
        counter = MessageCounter(broker.host, broker.port, _TOPIC)
        try:
            argv = [*installed_cli("sensor-agent", "agent.cli"), "run", "-c", str(conf)]
            with _agent(argv, workdir / "agent.log") as agent:
                time.sleep(warmup)
                if agent.poll() is not None:
                    raise RuntimeError(f"agent exited {agent.returncode}; see {workdir}")
                before = counter.count
                sample = sample_process(agent.pid, ctx.sizes.agent_idle_seconds)
                published = counter.count - before
                mappings = memory_by_mapping(agent.pid)
            modules = _modules_of_a_running_agent(argv, workdir, warmup)
        finally:
            counter.close()
    if published == 0:
        raise RuntimeError(f"the agent published nothing in the window; see {workdir}")
    result.add("steady_rss_mb", "1 Hz × 4 drivers: RSS, max in window", max(sample.rss) / _MB,
               "MB", Target("<=", TARGET_RSS_MB))
    floor, libraries = _library_floor_rss(modules)
    result.add("library_floor_rss_mb", "RSS of Python with only the agent's libraries imported",
               floor / _MB, "MB")
    result.add("steady_cpu_pct", "1 Hz × 4 drivers: CPU, % of one core",
               100 * sample.cpu_seconds / sample.wall_seconds, "%", Target("<=", TARGET_CPU_PCT))
    result.add("steady_per_s", "1 Hz × 4 drivers: readings/s published",
               published / sample.wall_seconds, "/s")
    result.params["steady"] = {"warmup_s": warmup, "window_s": round(sample.wall_seconds, 1),
                               "published": published,
                               "rss_mb_first": round(sample.rss[0] / _MB, 1),
                               "uss_mb_end": round(sample.uss / _MB, 1),
                               "pss_mb_end": round(sample.pss / _MB, 1),
                               "rss_kb_by_mapping_end": mappings,
                               "modules_imported": len(modules),
                               "library_modules": len(libraries),
                               "third_party_packages": sorted(
                                   {m.split(".")[0] for m in libraries
                                    if not m.startswith(("_", "sitecustomize"))}
                                   - set(sys.stdlib_module_names))}


def _max_rate(ctx: RunContext, result: BenchResult) -> None:
    workdir = ctx.scratch("agent-max")
    count = ctx.sizes.agent_readings
    warm = max(1000, count // 20)
    with bench_broker(workdir / "broker") as broker:
        conf = _config(workdir, broker.url, [{"name": "synthetic", "driver": "bench-synthetic",
                                              "interval_s": 0, "batch": 100}])
        # RSS at every tenth of the run: a curve tells a cache that fills from a leak.
        marks = tuple(warm + count * k // 10 for k in range(11))
        counter = MessageCounter(broker.host, broker.port, _TOPIC, marks=marks)
        argv = [sys.executable, "-m", "bench.agent_synthetic", "run", "-c", str(conf)]
        rss: list[int] = []
        try:
            with _agent(argv, workdir / "agent.log") as agent:
                proc = psutil.Process(agent.pid)
                for mark in marks:
                    if not counter.wait_for(mark, timeout=600):
                        raise RuntimeError(f"agent published {counter.count} of {mark} "
                                           f"readings; see {workdir}")
                    rss.append(proc.memory_info().rss)
                    if mark == warm:
                        cpu0 = sum(proc.cpu_times()[:2])
                cpu1 = sum(proc.cpu_times()[:2])
        finally:
            counter.close()
    rss0, rss1 = rss[0], rss[-1]
    seconds = counter.reached[warm + count] - counter.reached[warm]
    result.add("max_rate.per_s", "max rate: sign+spool+publish readings/s", count / seconds,
               "/s", Target(">=", TARGET_MAX_PER_S))
    result.add("max_rate.rss_growth_mb", f"max rate: RSS growth over {count:,} readings",
               (rss1 - rss0) / _MB, "MB", Target("<=", TARGET_RSS_GROWTH_MB))
    result.params["max_rate"] = {
        "warmup_readings": warm, "readings": count, "seconds": round(seconds, 2),
        "rss_mb_start": round(rss0 / _MB, 1), "rss_mb_end": round(rss1 / _MB, 1),
        "rss_mb_every_tenth": [round(r / _MB, 2) for r in rss],
        "cpu_pct_of_one_core": round(100 * (cpu1 - cpu0) / seconds, 1),
    }


def run_agent(ctx: RunContext) -> BenchResult:
    result = BenchResult("agent", "sensor-agent footprint and maximum rate")
    _steady(ctx, result)
    _max_rate(ctx, result)
    return result
