"""The five emulated devices of the demo and the agent configuration for each.

Signals are seeded, and the demo compresses time where a real device is slow to show anything
(arcs come every few seconds, not every half hour).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DemoDevice:
    device_id: str        # the agent's device id (and MQTT identity)
    title: str
    emulator: str         # module under firmware_stubs
    emulator_args: tuple[str, ...]
    driver: str           # hardware driver name
    settings: dict[str, Any] = field(default_factory=dict)
    interval_s: float = 1.0
    relays_for: str | None = None  # a self-signing sensor's own device id
    subject: str | None = None  # a private sensor's subject (a patient's pseudonym)


DEVICES: tuple[DemoDevice, ...] = (
    DemoDevice("water-plant-1", "water-quality probe (Supmea pH, Modbus RTU)",
               "water_quality", ("--profile", "supmea-ph8001", "--speed", "60"),
               "modbus-water", {"profile": "supmea-ph8001"}),
    DemoDevice("ess-rack-1", "battery BMS (JBD UART)", "jbd_bms",
               ("--speed", "30", "--trip-every", "600"), "jbd-bms",
               {"counters_interval_s": 5.0}),
    DemoDevice("ward3-bed12", "pulse oximeter (Contec V7.0, 60 packets/s)", "contec_oximeter",
               ("--finger-out-every", "15",), "contec-oximeter", {"window_s": 1.0},
               subject="patient-0017"),
    DemoDevice("panel-7", "arc detector (Fonrich-style Modbus monitor)", "arc_monitor",
               ("--arc-every", "4", "--channels", "8"), "arc-monitor",
               {"channels": 8, "status_interval_s": 2.0}, interval_s=0.25),
    DemoDevice("relay-9", "self-signing sensor (firmware signs, agent relays)", "self_signing",
               ("--interval", "2",), "self-signing-serial", relays_for="smart-sensor-9"),
)


def agent_config(device: DemoDevice, *, port: str, broker_url: str, root: Path,
                 readers: tuple[Path, ...] = ()) -> str:
    """The agent's TOML, as an operator would write it (see deploy/agent.toml.example).
    The oximeter is private by default: its values are sealed for ``readers``."""
    lines = [
        f'device_id = "{device.device_id}"',
        f'key_file = "{root / "keys" / (device.device_id + ".pem")}"',
        f'state_dir = "{root / "state" / device.device_id}"',
        "heartbeat_s = 5",
        "",
        "[broker]",
        f'url = "{broker_url}"',
        "",
    ]
    if device.subject is not None:
        lines += ["[private]",
                  "readers = [" + ", ".join(f'"{r}"' for r in readers) + "]", ""]
    lines += [
        "[[sensors]]",
        f'name = "{device.driver}"',
        f'driver = "{device.driver}"',
        f"interval_s = {device.interval_s}",
        f'port = "{port}"',
    ]
    if device.subject is not None:
        lines.append(f'subject = "{device.subject}"')
    for key, value in device.settings.items():
        lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)
