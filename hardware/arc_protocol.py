"""Arc-fault monitor register map and event detection, as pure functions (research §4).

The map is the Fonrich FR-DCMG-MMPS DC system monitor's (§4.1): per-channel arc alarm
bitmaps, arc history counters, arc intensity, bus arc, string currents. FC03 and FC04 share
one map. Residual (leakage) current comes from a separate Acrel ASJ residual-current relay
on the same RS-485 line (§4.2): the MMPS itself has no residual-current register.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .base import Value
from .errors import FrameError

__all__ = [
    "ALARM_BLOCK",
    "ARC_BITMAP",
    "INTENSITY_10MIN",
    "INTENSITY_MAX",
    "INTENSITY_REALTIME",
    "MAX_CHANNELS",
    "NO_SENSOR",
    "RESIDUAL_ALARM_STATUS",
    "RESIDUAL_CURRENT",
    "STATUS_BLOCK",
    "ArcEventDetector",
    "ArcState",
    "ArcWords",
    "MonitorStatus",
    "ResidualStatus",
    "alarm_block_count",
    "decode_alarm_block",
    "decode_arc_words",
    "decode_residual",
    "decode_status_block",
    "encode_alarm_bitmaps",
    "intensity_block_count",
    "status_block_count",
]

MAX_CHANNELS = 24
STATUS_BLOCK = 0x0104  # bus voltage … channel 24 current (0x0123)
ALARM_BLOCK = 0x012A  # shunt-trip status 1 … channel 24 arc count (0x014A)
ARC_BITMAP = 0x0130
INTENSITY_REALTIME = 0x0250
INTENSITY_MAX = 0x0268
INTENSITY_10MIN = 0x0280
NO_SENSOR = -424  # temperature register value when no sensor is fitted

RESIDUAL_CURRENT = 0x0000  # ASJ: residual current, mA
RESIDUAL_ALARM_STATUS = 0x001B  # ASJ: bit0 warning, bit1 alarm, bit2 break line

TRIP_BUS_ARC = 1 << 0
TRIP_CHANNEL_ARC = 1 << 1


def status_block_count(channels: int) -> int:
    return 8 + channels


def alarm_block_count(channels: int) -> int:
    return (ARC_BITMAP + 3 - ALARM_BLOCK) + channels


def _signed(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


@dataclass(frozen=True, slots=True)
class ArcWords:
    """Registers 0x0130 onward: which channels alarm, and the history counters."""

    alarm_channels: frozenset[int]
    bus_arc_count: int
    channel_counts: tuple[int, ...]


def decode_arc_words(registers: Sequence[int]) -> ArcWords:
    """Decode registers read from 0x0130: bitmap ch 1-16, bitmap ch 17-24, bus arc count,
    then one history count per channel (as many as were read)."""
    if len(registers) < 3:
        raise FrameError("the arc alarm words need at least 3 registers from 0x0130")
    low, high, bus_count, *counts = registers
    bitmap = low | (high & 0xFF) << 16
    alarms = frozenset(bit + 1 for bit in range(MAX_CHANNELS) if bitmap >> bit & 1)
    return ArcWords(alarms, bus_count, tuple(counts))


def encode_alarm_bitmaps(channels: frozenset[int] | set[int]) -> tuple[int, int]:
    bitmap = 0
    for channel in channels:
        bitmap |= 1 << (channel - 1)
    return bitmap & 0xFFFF, bitmap >> 16


@dataclass(frozen=True, slots=True)
class ArcState:
    """Everything one poll learns about arcs."""

    trip_status: int
    alarm_channels: frozenset[int]
    bus_arc_count: int
    channel_counts: tuple[int, ...]
    intensity: tuple[int, ...]  # real time
    intensity_10min: tuple[int, ...]  # peak of the current 10-minute window
    intensity_max: tuple[int, ...]  # historical maximum

    @property
    def bus_arc(self) -> bool:
        return bool(self.trip_status & TRIP_BUS_ARC)


def intensity_block_count(channels: int) -> int:
    """Registers from 0x0250 covering real-time, historical-max and 10-minute intensities."""
    return INTENSITY_10MIN - INTENSITY_REALTIME + channels


def decode_alarm_block(registers: Sequence[int], intensities: Sequence[int]) -> ArcState:
    """Decode the FC04 read from 0x012A and the intensity read from 0x0250
    (:func:`intensity_block_count` registers: three series of 24, the last one cut short)."""
    offset = ARC_BITMAP - ALARM_BLOCK
    if len(registers) < offset + 3:
        raise FrameError("the alarm block read is too short")
    words = decode_arc_words(registers[offset:])
    channels = len(words.channel_counts)
    if len(intensities) != intensity_block_count(channels):
        raise FrameError("intensity and counter reads cover different channel counts")

    def series(base: int) -> tuple[int, ...]:
        start = base - INTENSITY_REALTIME
        return tuple(_signed(w) for w in intensities[start : start + channels])

    return ArcState(registers[0], words.alarm_channels, words.bus_arc_count,
                    words.channel_counts, series(INTENSITY_REALTIME), series(INTENSITY_10MIN),
                    series(INTENSITY_MAX))


@dataclass(frozen=True, slots=True)
class MonitorStatus:
    """Registers 0x0104 onward: the context around the arc data."""

    bus_voltage_v: int
    temperatures_c: tuple[float | None, float | None]
    di_bits: int
    hall_channels_online: int
    total_reverse_current_a: float
    total_current_a: float
    average_current_a: float
    channel_currents_a: tuple[float, ...]


def decode_status_block(registers: Sequence[int]) -> MonitorStatus:
    if len(registers) < 8:
        raise FrameError("the status block needs at least 8 registers from 0x0104")
    raw = [_signed(w) for w in registers]
    temps = tuple(None if t == NO_SENSOR else t / 10 for t in raw[1:3])
    return MonitorStatus(
        bus_voltage_v=registers[0],
        temperatures_c=(temps[0], temps[1]),
        di_bits=registers[3],
        hall_channels_online=registers[4],
        total_reverse_current_a=raw[5] / 100,  # 10 mA units
        total_current_a=raw[6] / 100,
        average_current_a=raw[7] / 1000,  # mA
        channel_currents_a=tuple(mA / 1000 for mA in raw[8:]),
    )


@dataclass(frozen=True, slots=True)
class ResidualStatus:
    current_ma: int
    warning: bool
    alarm: bool
    break_line: bool


def decode_residual(current: Sequence[int], status: Sequence[int]) -> ResidualStatus:
    if len(current) != 1 or len(status) != 1:
        raise FrameError("residual current and alarm status are one register each")
    bits = status[0]
    return ResidualStatus(current[0], bool(bits & 1), bool(bits & 2), bool(bits & 4))


class ArcEventDetector:
    """Compares each poll with the last and names what is new.

    ``intensity`` is the real-time value at the poll; an arc may be over by then, so
    ``peak_intensity`` (the device's 10-minute peak) carries how strong it was.

    A channel raises an event when its alarm bit sets or its history counter increases (a
    short arc can start and clear between two polls; the counter still shows it). The first
    poll only reports alarms already active: historical counts are the baseline. A counter
    that goes *down* is reported too, because a reset would otherwise hide arcs.
    """

    def __init__(self) -> None:
        self._previous: ArcState | None = None

    def update(self, state: ArcState) -> list[dict[str, Value]]:
        before = self._previous
        self._previous = state
        events: list[dict[str, Value]] = []
        for index, count in enumerate(state.channel_counts):
            channel = index + 1
            alarm = channel in state.alarm_channels
            was_alarm = before is not None and channel in before.alarm_channels
            previous_count = count if before is None else before.channel_counts[index]
            if count < previous_count:
                events.append({"type": "arc-counter-reset", "channel": channel, "count": count,
                               "previous_count": previous_count})
                continue
            if count > previous_count or (alarm and not was_alarm):
                events.append({
                    "type": "arc", "channel": channel, "intensity": state.intensity[index],
                    "peak_intensity": state.intensity_10min[index], "count": count,
                    "new_arcs": count - previous_count, "alarm": alarm,
                })  # fmt: skip
        previous_bus = state.bus_arc_count if before is None else before.bus_arc_count
        was_bus = before is not None and before.bus_arc
        if state.bus_arc_count < previous_bus:
            events.append({"type": "arc-counter-reset", "channel": 0,
                           "count": state.bus_arc_count, "previous_count": previous_bus})
        elif state.bus_arc_count > previous_bus or (state.bus_arc and not was_bus):
            events.append({"type": "bus-arc", "count": state.bus_arc_count,
                           "new_arcs": state.bus_arc_count - previous_bus,
                           "alarm": state.bus_arc})
        return events
