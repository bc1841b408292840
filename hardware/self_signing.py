"""Sensors that sign their own readings: relay their COSE_Sign1 envelopes unchanged.

Driver name ``self-signing-serial``. Settings: ``port`` (required), ``baudrate`` (115200),
``timeout_s`` (30: silence after which the sensor counts as not answering).

The sensor pushes frames (:mod:`hardware.envelope_framing`) whenever it has signed a reading.
The driver checks only the frame's CRC: the envelope is evidence and must reach the collector
byte for byte, so it is never decoded, re-encoded or filtered here.
"""

from __future__ import annotations

import time

from .base import DriverStats, Sample
from .envelope_framing import EnvelopeAssembler
from .errors import ChecksumError, ProtocolError
from .registry import register
from .serial_link import SerialLink
from .settings import Settings
from .stream import Pending, StreamReader

__all__ = ["KIND", "SelfSigningSerialDriver"]

KIND = "self-signed"
MAX_PENDING = 10_000


class SelfSigningSerialDriver:
    kind = KIND

    def __init__(self, *, link: SerialLink, silence_s: float) -> None:
        self.name = "self-signing-serial"
        self.stats = link.stats
        self._silence_s = silence_s
        self._assembler = EnvelopeAssembler()
        self._skipped = 0
        self._pending = Pending(self.stats, limit=MAX_PENDING, what="envelope")
        self._last_frame = time.monotonic()
        self._silent = False
        self._reader = StreamReader(link, name="self-signing-serial",
                                    on_bytes=self._on_bytes, on_tick=self._on_tick)

    def _on_bytes(self, chunk: bytes) -> None:
        for item in self._assembler.feed(chunk):
            if isinstance(item, ChecksumError):
                self.stats.checksum_errors += 1
                self.stats.last_error = str(item)
            elif isinstance(item, ProtocolError):
                self.stats.resyncs += 1
                self.stats.last_error = str(item)
            else:
                self.stats.frames_ok += 1
                self._last_frame = time.monotonic()
                self._silent = False
                self._pending.put(Sample(KIND, envelope=item))
        if self._assembler.skipped != self._skipped:
            self._skipped = self._assembler.skipped
            self.stats.resyncs += 1

    def _on_tick(self) -> None:
        if not self._silent and time.monotonic() - self._last_frame > self._silence_s:
            self._silent = True
            self.stats.timeouts += 1
            self.stats.last_error = f"no envelope for {self._silence_s} s"

    def poll(self) -> list[Sample]:
        self.stats.polls += 1
        if not self._reader.running:
            self._last_frame = time.monotonic()
            self._reader.start()
        return self._pending.take()

    def close(self) -> None:
        self._reader.stop()


@register("self-signing-serial")
def create_self_signing_serial(settings: Settings) -> SelfSigningSerialDriver:
    line = settings.serial_line(baudrate=115200, timeout_s=30.0)
    return SelfSigningSerialDriver(link=SerialLink(line, DriverStats()), silence_s=line.timeout_s)
