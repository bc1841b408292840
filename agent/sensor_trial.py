"""``sensor-agent test``: poll the configured sensors and show what would be signed.

Like ``telegraf --test``: each enabled sensor's driver is built and polled, and for each
sample the decoded values and the draft reading (what the agent would sign, before it has a
sequence number) are printed. Nothing is signed, spooled or published; the key and the spool
are not touched, so it is safe to run beside a running agent (though a serial port can only
serve one of them at a time).
"""

from __future__ import annotations

import datetime
import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from hardware.base import Driver, Sample

from .clock import Clock
from .config import AgentConfig, SensorConfig
from .errors import ConfigError, Problem
from .preflight import build_driver, driver_problems
from .signer import Draft, draft_from_sample

__all__ = ["trial"]

Echo = Callable[[str], None]


def trial(config: AgentConfig, echo: Echo, *, once: bool) -> int:
    """Poll every enabled sensor (once, or at its interval until Ctrl-C); returns the exit
    code: 0 when every sensor gave a sample the wire format takes at each poll, else 1."""
    sensors = [s for s in config.sensors if s.enabled]
    # Ctrl-C ends the trial even when started from a shell that ignores SIGINT for its
    # background jobs (a Python started that way would inherit the ignoring).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    drivers = _build(config, sensors, echo)
    clock = Clock(config.clock)
    ok = len(drivers) == len(sensors)
    try:
        due = {s.name: time.monotonic() for s in sensors if s.name in drivers}
        while due:
            name = min(due, key=due.__getitem__)
            time.sleep(max(0.0, due[name] - time.monotonic()))
            sensor = next(s for s in sensors if s.name == name)
            ok = _poll(sensor, drivers[name], clock, config.device_id, echo) and ok
            if once:
                del due[name]
            else:
                due[name] += sensor.interval_s
    except KeyboardInterrupt:
        pass
    finally:
        for driver in drivers.values():
            driver.close()
    return 0 if ok else 1


def _build(config: AgentConfig, sensors: list[SensorConfig], echo: Echo) -> dict[str, Driver]:
    from hardware.errors import HardwareConfigError

    drivers: dict[str, Driver] = {}
    problems: list[Problem] = []
    for sensor in sensors:
        try:
            drivers[sensor.name] = build_driver(sensor)
        except HardwareConfigError as exc:
            problems += driver_problems(config, sensor, exc)
        except Exception as exc:
            echo(f"{sensor.name} ({sensor.driver}): driver could not start: {exc!r}")
    if problems:
        for driver in drivers.values():
            driver.close()
        raise ConfigError(str(config.path), problems)
    return drivers


def _poll(sensor: SensorConfig, driver: Driver, clock: Clock, device_id: str,
          echo: Echo) -> bool:
    head = f"{sensor.name} ({sensor.driver})"
    try:
        samples = driver.poll()
    except Exception as exc:
        echo(f"{head}: poll failed: {exc!r}")
        return False
    time_ms, synced = clock.now_ms(), clock.synced
    if not samples:
        echo(f"{head}: no sample{_faults(driver)}")
        return False
    ok = True
    for sample in samples:
        echo(f"{head}: {sample.kind}")
        for line in _values(sample):
            echo(f"  {line}")
        try:
            item = draft_from_sample(sensor.name, sample, time_ms, synced,
                                     own_device_id=device_id)
        except Exception as exc:  # ProvenanceError: content the wire format refuses
            echo(f"  refused: {exc}")
            ok = False
            continue
        if isinstance(item, Draft):
            echo("  draft " + json.dumps(_draft_json(item, device_id), default=str))
        else:
            echo(f"  relayed envelope of {item.device_id}, seq {item.seq}, "
                 f"{len(item.envelope)} bytes (signed by the sensor itself)")
    return ok


def _values(sample: Sample) -> list[str]:
    lines = []
    for m in sample.measurements:
        unit = f" {m.unit}" if m.unit else ""
        lines.append(f"{m.name} = {m.value!r}{unit}")
    if sample.event is not None:
        lines.append(f"event {dict(sample.event)!r}")
    if sample.refused is not None:
        lines.append(f"refused by the driver: {sample.refused}")
    return lines


def _draft_json(draft: Draft, device_id: str) -> dict[str, Any]:
    when = datetime.datetime.fromtimestamp(draft.time_ms / 1000, tz=datetime.UTC)
    return {
        "device_id": device_id, "seq": None, "boot": None, "prev": None,
        "kind": draft.kind, "time_ms": draft.time_ms,
        "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "clock_synced": draft.clock_synced,
        "measurements": [{k: v for k, v in asdict(m).items() if v is not None}
                         for m in draft.measurements],
        "event": dict(draft.event) if draft.event is not None else None,
    }


def _faults(driver: Driver) -> str:
    s = driver.stats
    counts = [f"{n} {what}" for n, what in ((s.timeouts, "timeout(s)"),
                                            (s.checksum_errors, "checksum error(s)"),
                                            (s.other_errors, "other error(s)")) if n]
    if not counts and not s.last_error:
        return ""
    return f" ({', '.join(counts) or 'driver error'}{'; ' + s.last_error if s.last_error else ''})"
