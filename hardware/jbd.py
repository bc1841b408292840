"""JBD smart BMS over its UART protocol (research §2.1): pack, cells, protections.

Driver name ``jbd-bms``. Settings: ``port`` (required), ``baudrate`` (9600), ``timeout_s``
(0.3; esphome waits 150 ms for a frame), ``retries`` (2: a sleeping BMS ignores the first
request after idle), ``counters_interval_s`` (60: how often to read the 0xAA protection
counters; 0 reads them at every poll).

Each poll reads basic info (0x03) and cell voltages (0x04) and returns one ``battery``
sample. A protection that was not active at the previous poll also yields an event sample
``{"type": "protection", "cause": <name>, ...}`` so the trip is published at once.
"""

from __future__ import annotations

import time

from .base import DriverStats, Measurement, Sample, Value
from .errors import ChecksumError, ProtocolError
from .jbd_protocol import (
    REG_BASIC_INFO,
    REG_CELL_VOLTAGES,
    REG_PROTECTION_COUNTERS,
    STATUS_OK,
    BasicInfo,
    FrameAssembler,
    decode_basic_info,
    decode_cell_voltages,
    decode_protection_counters,
    encode_read,
)
from .registry import register
from .serial_link import SerialLink
from .settings import Settings

__all__ = ["KIND", "JbdBmsDriver", "battery_measurements"]

KIND = "battery"


def battery_measurements(info: BasicInfo, cells_mv: tuple[int, ...] | None,
                         counters: dict[str, int] | None) -> tuple[Measurement, ...]:
    """The SenML-ready view of one BMS read-out."""
    out = [
        Measurement(name="pack_voltage", value=info.pack_voltage_v, unit="V"),
        Measurement(name="pack_current", value=info.pack_current_a, unit="A"),
        Measurement(name="remaining_capacity", value=info.remaining_capacity_ah, unit="Ah"),
        Measurement(name="nominal_capacity", value=info.nominal_capacity_ah, unit="Ah"),
        Measurement(name="state_of_charge", value=info.soc_percent, unit="%EL"),
        Measurement(name="cycle_count", value=info.cycles, unit="count"),
        Measurement(name="charge_fet", value=info.charge_fet_on, unit=None),
        Measurement(name="discharge_fet", value=info.discharge_fet_on, unit=None),
        Measurement(name="balance_bitmap", value=info.balance_bits, unit=None),
        Measurement(name="protection_bitmap", value=info.protection_bits, unit=None),
    ]
    out += [Measurement(name=f"temperature_{i}", value=t, unit="Cel")
            for i, t in enumerate(info.temperatures_c, 1)]
    if cells_mv is not None:
        out += [Measurement(name=f"cell_voltage_{i}", value=mv / 1000, unit="V")
                for i, mv in enumerate(cells_mv, 1)]
    if counters is not None:
        out += [Measurement(name=f"protection_count_{name}", value=n, unit="count")
                for name, n in counters.items()]
    return tuple(out)


class JbdBmsDriver:
    kind = KIND

    def __init__(self, *, link: SerialLink, retries: int, counters_interval_s: float) -> None:
        self.name = "jbd-bms"
        self.stats = link.stats
        self._link = link
        self._retries = retries
        self._counters_interval_s = counters_interval_s
        self._counters_due = 0.0
        self._counters: dict[str, int] | None = None
        self._active: set[str] = set()
        self._assembler = FrameAssembler()

    def poll(self) -> list[Sample]:
        self.stats.polls += 1
        basic = self._request(REG_BASIC_INFO)
        if basic is None:
            return []
        try:
            info = decode_basic_info(basic)
        except ProtocolError as exc:
            self._count(exc)
            return []
        cells: tuple[int, ...] | None = None
        payload = self._request(REG_CELL_VOLTAGES)
        if payload is not None:
            try:
                cells = decode_cell_voltages(payload)
            except ProtocolError as exc:
                self._count(exc)
        counters = None
        now = time.monotonic()
        if now >= self._counters_due:
            payload = self._request(REG_PROTECTION_COUNTERS)
            if payload is not None:
                try:
                    counters = self._counters = decode_protection_counters(payload)
                    self._counters_due = now + self._counters_interval_s
                except ProtocolError as exc:
                    self._count(exc)
        samples = [Sample(KIND, battery_measurements(info, cells, counters))]
        samples += self._protection_events(info)
        self.stats.samples += len(samples)
        return samples

    def _protection_events(self, info: BasicInfo) -> list[Sample]:
        active = set(info.active_protections)
        events = []
        for cause in info.active_protections:
            if cause in self._active:
                continue
            event: dict[str, Value] = {
                "type": "protection",
                "cause": cause,
                "pack_voltage": info.pack_voltage_v,
                "pack_current": info.pack_current_a,
            }
            if self._counters is not None and cause in self._counters:
                event["count"] = self._counters[cause]
            events.append(Sample(KIND, event=event))
        self._active = active
        return events

    def _count(self, error: ProtocolError) -> None:
        if isinstance(error, ChecksumError):
            self.stats.checksum_errors += 1
        else:
            self.stats.resyncs += 1
        self.stats.last_error = str(error)

    def _request(self, register: int) -> bytes | None:
        """Send a read and wait for its reply; retry a silent BMS (it may be asleep)."""
        request = encode_read(register)
        for _attempt in range(1 + self._retries):
            self._assembler.clear()
            self._link.discard_input()
            if not self._link.write(request):
                return None
            reply = self._await_reply(register)
            if reply is not None:
                return reply
        return None

    def _await_reply(self, register: int) -> bytes | None:
        timeout = self._link.line.timeout_s
        deadline = time.monotonic() + timeout
        skipped_before = self._assembler.skipped
        while (left := deadline - time.monotonic()) > 0:
            chunk = self._link.read(left)
            if not chunk:
                if not self._link.is_open:
                    return None  # the port vanished; already counted by the link
                continue
            damaged = False
            for item in self._assembler.feed(chunk):
                if isinstance(item, ProtocolError):
                    self._count(item)
                    damaged |= isinstance(item, ChecksumError)
                    continue
                if item.is_request or item.first != register:
                    continue  # an echo or a stale reply: not ours
                if self._assembler.skipped != skipped_before:
                    self.stats.resyncs += 1
                    self.stats.last_error = "skipped bytes before a reply"
                if item.second != STATUS_OK:
                    self.stats.other_errors += 1
                    self.stats.last_error = f"BMS refused register 0x{register:02X}"
                    return None
                self.stats.frames_ok += 1
                return item.data
            if damaged:
                return None  # the reply came, damaged; the BMS will not send it again
        self.stats.timeouts += 1
        self.stats.last_error = f"no reply to register 0x{register:02X} within {timeout} s"
        return None

    def close(self) -> None:
        self._link.close()


@register("jbd-bms")
def create_jbd_bms(settings: Settings) -> JbdBmsDriver:
    line = settings.serial_line(baudrate=9600, timeout_s=0.3)
    retries = settings.integer("retries", 2, low=0, high=10)
    interval = settings.number("counters_interval_s", 60.0, low=0.0)
    return JbdBmsDriver(link=SerialLink(line, DriverStats()), retries=retries,
                        counters_interval_s=interval)
