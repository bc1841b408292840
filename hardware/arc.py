"""Arc-fault monitor over Modbus RTU (research §4): events at once, status periodically.

Driver name ``arc-monitor``. Settings: ``port`` (required), ``unit`` (1: the arc monitor),
``channels`` (8: strings wired, 1-24), ``residual_unit`` (the slave id of a residual-current
relay on the same line; absent = none), ``status_interval_s`` (60), ``baudrate`` (9600),
``parity`` (N), ``stopbits`` (1), ``timeout_s`` (0.5).

Every poll reads the arc alarm block and the arc intensities (two requests; poll often,
e.g. every 0.5 s). A new channel alarm or a counter increase becomes an event sample
``{"type": "arc", "channel", "intensity", "peak_intensity", "count", "new_arcs", "alarm"}``
returned by that poll; bus arcs give ``{"type": "bus-arc", …}`` and a residual-current
warning or alarm gives ``{"type": "residual-current", …}``. A status sample (currents,
voltages, temperatures, counters, intensities, residual current) follows every
``status_interval_s``.
"""

from __future__ import annotations

import time

from .arc_protocol import (
    ALARM_BLOCK,
    INTENSITY_REALTIME,
    MAX_CHANNELS,
    RESIDUAL_ALARM_STATUS,
    RESIDUAL_CURRENT,
    STATUS_BLOCK,
    ArcEventDetector,
    ArcState,
    MonitorStatus,
    ResidualStatus,
    alarm_block_count,
    decode_alarm_block,
    decode_residual,
    decode_status_block,
    intensity_block_count,
    status_block_count,
)
from .base import DriverStats, Measurement, Sample, Value
from .errors import ProtocolError
from .modbus_link import ModbusLink
from .modbus_rtu import READ_HOLDING, READ_INPUT
from .registry import register
from .settings import Settings

__all__ = ["KIND", "ArcMonitorDriver", "status_measurements"]

KIND = "arc-detector"


def status_measurements(arcs: ArcState, status: MonitorStatus | None,
                        residual: ResidualStatus | None) -> tuple[Measurement, ...]:
    bitmap = sum(1 << (c - 1) for c in arcs.alarm_channels)
    out = [
        Measurement(name="arc_alarm_bitmap", value=bitmap, unit=None),
        Measurement(name="bus_arc", value=arcs.bus_arc, unit=None),
        Measurement(name="bus_arc_count", value=arcs.bus_arc_count, unit="count"),
    ]
    out += [Measurement(name=f"arc_count_{i}", value=n, unit="count")
            for i, n in enumerate(arcs.channel_counts, 1)]
    out += [Measurement(name=f"arc_intensity_{i}", value=v, unit=None)
            for i, v in enumerate(arcs.intensity, 1)]
    out += [Measurement(name=f"arc_peak_intensity_{i}", value=v, unit=None)
            for i, v in enumerate(arcs.intensity_10min, 1)]
    if status is not None:
        out.append(Measurement(name="bus_voltage", value=status.bus_voltage_v, unit="V"))
        out += [Measurement(name=f"temperature_{i}", value=t, unit="Cel")
                for i, t in enumerate(status.temperatures_c, 1) if t is not None]
        out.append(Measurement(name="total_current", value=status.total_current_a, unit="A"))
        out += [Measurement(name=f"channel_current_{i}", value=a, unit="A")
                for i, a in enumerate(status.channel_currents_a, 1)]
    if residual is not None:
        out += [
            Measurement(name="residual_current", value=residual.current_ma, unit="mA"),
            Measurement(name="residual_warning", value=residual.warning, unit=None),
            Measurement(name="residual_alarm", value=residual.alarm, unit=None),
        ]
    return tuple(out)


class ArcMonitorDriver:
    kind = KIND

    def __init__(self, *, link: ModbusLink, unit: int, channels: int,
                 residual_unit: int | None, status_interval_s: float) -> None:
        self.name = "arc-monitor"
        self.stats = link.stats
        self._link = link
        self._unit = unit
        self._channels = channels
        self._residual_unit = residual_unit
        self._status_interval_s = status_interval_s
        self._status_due = 0.0
        self._detector = ArcEventDetector()
        self._residual_level = "normal"

    def poll(self) -> list[Sample]:
        self.stats.polls += 1
        block = self._link.read(self._unit, READ_INPUT, ALARM_BLOCK,
                                alarm_block_count(self._channels))
        if block is None:
            return []
        intensity = self._link.read(self._unit, READ_INPUT, INTENSITY_REALTIME,
                                    intensity_block_count(self._channels))
        if intensity is None:
            return []
        try:
            arcs = decode_alarm_block(block, intensity)
        except ProtocolError as exc:
            self.stats.other_errors += 1
            self.stats.last_error = str(exc)
            return []
        samples = [Sample(KIND, event=event) for event in self._detector.update(arcs)]
        residual = self._read_residual()
        if residual is not None:
            samples += self._residual_events(residual)
        now = time.monotonic()
        if now >= self._status_due:
            status_regs = self._link.read(self._unit, READ_INPUT, STATUS_BLOCK,
                                     status_block_count(self._channels))
            status = decode_status_block(status_regs) if status_regs is not None else None
            samples.append(Sample(KIND, status_measurements(arcs, status, residual)))
            self._status_due = now + self._status_interval_s
        self.stats.samples += len(samples)
        return samples

    def _read_residual(self) -> ResidualStatus | None:
        if self._residual_unit is None:
            return None
        current = self._link.read(self._residual_unit, READ_HOLDING, RESIDUAL_CURRENT, 1)
        if current is None:
            return None
        status = self._link.read(self._residual_unit, READ_HOLDING, RESIDUAL_ALARM_STATUS, 1)
        if status is None:
            return None
        return decode_residual(current, status)

    def _residual_events(self, residual: ResidualStatus) -> list[Sample]:
        level = "alarm" if residual.alarm else "warning" if residual.warning else "normal"
        previous, self._residual_level = self._residual_level, level
        rank = {"normal": 0, "warning": 1, "alarm": 2}
        if rank[level] <= rank[previous]:
            return []
        event: dict[str, Value] = {"type": "residual-current", "level": level,
                                   "current_ma": residual.current_ma}
        return [Sample(KIND, event=event)]

    def close(self) -> None:
        self._link.close()


@register("arc-monitor")
def create_arc_monitor(settings: Settings) -> ArcMonitorDriver:
    line = settings.serial_line(baudrate=9600)
    unit = settings.integer("unit", 1, low=1, high=247)
    channels = settings.integer("channels", 8, low=1, high=MAX_CHANNELS)
    residual_unit: int | None = None
    if settings.has("residual_unit"):
        residual_unit = settings.integer("residual_unit", low=1, high=247)
    interval = settings.number("status_interval_s", 60.0, low=0.0)
    return ArcMonitorDriver(link=ModbusLink(line, DriverStats()), unit=unit, channels=channels,
                            residual_unit=residual_unit, status_interval_s=interval)
