"""Contec pulse oximeters (research §3): one reading per window of the 60 Hz stream.

Driver name ``contec-oximeter``. Settings: ``port`` (required), ``protocol`` (``"v7"``, the
V7.0 protocol at 115200 8N1, or ``"legacy"``, the 5-byte stream at 19200 8O1), ``baudrate``
and ``parity`` (the protocol's), ``window_s`` (1.0: seconds of stream per reading, counted
in packets at the protocol's 60 packets/s, so the window does not drift with scheduling),
``timeout_s`` (2.0: silence after which the stream is declared lost and, for V7.0, the
start command is sent again).

For V7.0 the driver sends 0xA1 (start real-time) when the port opens, again every 15 s
(a CMS50D+ stops streaming about 30 s after a request) and 0xAF (host keep-alive) every 5 s.
"""

from __future__ import annotations

import time

from .base import DriverStats, Sample
from .contec_protocol import (
    CMD_KEEP_ALIVE,
    CMD_START_REALTIME,
    TYPE_REALTIME,
    LegacyAssembler,
    PacketAssembler,
    RealTime,
    decode_legacy,
    decode_realtime,
    encode_command,
)
from .errors import ProtocolError
from .oximetry import OximetryWindow
from .registry import register
from .serial_link import SerialLink
from .settings import Settings
from .stream import Pending, StreamReader

__all__ = ["KIND", "PACKETS_PER_SECOND", "ContecOximeterDriver"]

KIND = "pulse-oximeter"
PACKETS_PER_SECOND = 60
RESTART_EVERY_S = 15.0
KEEP_ALIVE_EVERY_S = 5.0
MAX_PENDING = 3600  # windows kept for a slow poller before the oldest are dropped


class ContecOximeterDriver:
    kind = KIND

    def __init__(self, *, link: SerialLink, protocol: str, window_packets: int,
                 silence_s: float) -> None:
        self.name = "contec-oximeter"
        self.stats = link.stats
        self.protocol = protocol
        self._link = link
        self._window = OximetryWindow(window_packets)
        self._silence_s = silence_s
        self._v7 = PacketAssembler()
        self._legacy = LegacyAssembler()
        self._skipped = 0
        self._pending = Pending(self.stats, limit=MAX_PENDING, what="oximeter window")
        self._last_packet = time.monotonic()
        self._silent = False
        self._next_start = 0.0
        self._next_keep_alive = 0.0
        self._reader = StreamReader(link, name="contec-oximeter", on_bytes=self._on_bytes,
                                    on_tick=self._on_tick)

    # --- reader thread -----------------------------------------------------------------

    def _on_bytes(self, chunk: bytes) -> None:
        if self.protocol == "v7":
            items: list[RealTime | ProtocolError] = []
            for packet in self._v7.feed(chunk):
                if isinstance(packet, ProtocolError):
                    items.append(packet)
                elif packet.type == TYPE_REALTIME:
                    items.append(decode_realtime(packet.data))
                else:
                    self.stats.frames_ok += 1  # a reply (device id, PI support, …)
            skipped = self._v7.skipped
        else:
            items = []
            for raw in self._legacy.feed(chunk):
                items.append(raw if isinstance(raw, ProtocolError) else decode_legacy(raw))
            skipped = self._legacy.skipped
        if skipped != self._skipped:
            self._skipped = skipped
            self.stats.resyncs += 1
            self.stats.last_error = "skipped bytes that start no packet"
        for item in items:
            if isinstance(item, ProtocolError):
                self.stats.resyncs += 1
                self.stats.last_error = str(item)
            else:
                self._on_sample(item)

    def _on_sample(self, sample: RealTime) -> None:
        self.stats.frames_ok += 1
        self._last_packet = time.monotonic()
        self._silent = False
        summary = self._window.add(sample)
        if summary is not None:
            self._pending.put(Sample(KIND, summary))

    def _on_tick(self) -> None:
        now = time.monotonic()
        if not self._link.is_open:
            self._next_start = 0.0  # send the start command as soon as the port is back
        if now - self._last_packet > self._silence_s and not self._silent:
            self._silent = True
            self._window.discard()
            self.stats.timeouts += 1
            self.stats.last_error = f"no packet for {self._silence_s} s"
            self._next_start = 0.0
        if self.protocol != "v7":
            return
        if now >= self._next_start and self._link.ensure_open():
            self._link.write(encode_command(CMD_START_REALTIME))
            # While silent, ask again each silence period; while streaming, every 15 s.
            self._next_start = now + (self._silence_s if self._silent else RESTART_EVERY_S)
            self._next_keep_alive = now + KEEP_ALIVE_EVERY_S
            if self._silent:
                self._last_packet = now  # measure the next silence from this request
                self._silent = False
        elif now >= self._next_keep_alive and self._link.is_open:
            self._link.write(encode_command(CMD_KEEP_ALIVE))
            self._next_keep_alive = now + KEEP_ALIVE_EVERY_S

    # --- agent side ----------------------------------------------------------------------

    def poll(self) -> list[Sample]:
        self.stats.polls += 1
        if not self._reader.running:
            self._last_packet = time.monotonic()
            self._reader.start()
        return self._pending.take()

    def close(self) -> None:
        self._reader.stop()


@register("contec-oximeter")
def create_contec_oximeter(settings: Settings) -> ContecOximeterDriver:
    protocol = settings.choice("protocol", ("v7", "legacy"), "v7")
    if protocol == "v7":
        line = settings.serial_line(baudrate=115200, timeout_s=2.0)
    else:
        line = settings.serial_line(baudrate=19200, parity="O", timeout_s=2.0)
    window_s = settings.number("window_s", 1.0, low=1 / PACKETS_PER_SECOND, high=3600.0)
    return ContecOximeterDriver(
        link=SerialLink(line, DriverStats()), protocol=protocol,
        window_packets=max(1, round(window_s * PACKETS_PER_SECOND)), silence_s=line.timeout_s,
    )
