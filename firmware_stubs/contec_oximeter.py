"""Contec pulse-oximeter emulator: the device end of the V7.0 or legacy stream (research §3).

    python -m firmware_stubs.contec_oximeter [--port P] [--seed 1] [--protocol v7|legacy]

V7.0: streams 0x01 real-time packets at 60 per (simulated) second after the host sends 0xA1
and stops 30 s after the last 0xA1, like a CMS50D+; answers 0xAA (device id), 0xAC (PI
support), 0xAD (user count), 0xA2 (stop → 0x0C) and refuses unknown commands with 0x0B.
Legacy: streams 5-byte packets from power-on and takes no commands. ``--speed`` multiplies
the packet rate (a pty has no baud limit), which keeps tests short.
"""

from __future__ import annotations

import argparse
import time

from hardware.contec_protocol import (
    CMD_DEVICE_ID,
    CMD_KEEP_ALIVE,
    CMD_PI_SUPPORT,
    CMD_START_REALTIME,
    CMD_STOP_REALTIME,
    TYPE_COMMAND,
    Packet,
    PacketAssembler,
    encode_legacy,
    encode_packet,
    encode_realtime,
)

from .cli import EmulatorCommand, main
from .clock import SimClock
from .faults import LineFaults
from .oximeter_model import RATE_HZ, OximeterModel
from .serial_device import SerialDevice, SerialEmulator
from .transcript import Transcript

__all__ = ["COMMAND", "ContecOximeterEmulator"]

STREAM_FOR_S = 30.0  # a CMS50D+ stops streaming this long after the last start command
MAX_BURST = 256  # packets per tick at most, so a stalled thread does not flood the line
_TYPE_DEVICE_ID, _TYPE_FEEDBACK, _TYPE_FREE, _TYPE_PI_ID, _TYPE_USERS = 0x04, 0x0B, 0x0C, 0x0E, 0x10
_CMD_USER_COUNT = 0xAD
_REASON_NOT_SUPPORTED = 0x05


class ContecOximeterEmulator(SerialEmulator):
    def __init__(self, *, seed: int = 1, protocol: str = "v7", speed: float = 1.0,
                 port: str | None = None, autostart: bool = True,
                 finger_out_every_s: float = 480.0, faults: LineFaults | None = None,
                 transcript: Transcript | None = None) -> None:
        if protocol not in ("v7", "legacy"):
            raise ValueError("protocol must be 'v7' or 'legacy'")
        self.protocol = protocol
        self.model = OximeterModel(seed, finger_out_every_s=finger_out_every_s)
        self.rate = RATE_HZ * speed
        self.faults = faults or LineFaults()
        self.transcript = transcript or Transcript()
        self.device = SerialDevice(
            port, self._on_bytes, name="contec-oximeter", on_tick=self._on_tick, tick_s=0.005,
            baudrate=115200 if protocol == "v7" else 19200,
            parity="N" if protocol == "v7" else "O",
        )
        self.sent_packets = 0
        self.commands: list[int] = []
        self._assembler = PacketAssembler()
        self._stream_from: float | None = None
        self._stream_until = 0.0
        self._sent_in_burst = 0
        # The legacy device streams from power-on; ``autostart=False`` holds it until
        # :meth:`power_on` so that a test can attach first.
        self._legacy_on = autostart

    @property
    def streaming(self) -> bool:
        if self.protocol == "legacy":
            return self._legacy_on
        return self._stream_from is not None and time.monotonic() < self._stream_until

    def power_on(self) -> None:
        self._legacy_on = True

    # --- host → device -----------------------------------------------------------------

    def _on_bytes(self, data: bytes) -> None:
        if self.protocol != "v7":
            return
        for packet in self._assembler.feed(data):
            if isinstance(packet, Packet) and packet.type == TYPE_COMMAND:
                self._on_command(packet.data[0])

    def _reply(self, packet_type: int, data: bytes = b"") -> None:
        wire, _ = self.faults.apply(encode_packet(packet_type, data))
        self.device.write(wire)

    def _on_command(self, command: int) -> None:
        self.commands.append(command)
        now = time.monotonic()
        if command == CMD_START_REALTIME:
            if not self.streaming:
                self._stream_from, self._sent_in_burst = now, 0
            self._stream_until = now + STREAM_FOR_S
        elif command == CMD_STOP_REALTIME:
            self._stream_from = None
            self._reply(_TYPE_FREE)
        elif command == CMD_DEVICE_ID:
            self._reply(_TYPE_DEVICE_ID, b"CMS50E ")
        elif command == CMD_PI_SUPPORT:
            self._reply(_TYPE_PI_ID, b"\x00")
        elif command == _CMD_USER_COUNT:
            self._reply(_TYPE_USERS, b"\x01")
        elif command != CMD_KEEP_ALIVE:  # the keep-alive gets no reply
            self._reply(_TYPE_FEEDBACK, bytes((command, _REASON_NOT_SUPPORTED)))

    # --- device → host -----------------------------------------------------------------

    def _on_tick(self) -> None:
        if not self.streaming:
            return
        now = time.monotonic()
        if self._stream_from is None:  # the legacy device's first tick after power-on
            self._stream_from, self._sent_in_burst = now, 0
        due = int((now - self._stream_from) * self.rate) - self._sent_in_burst
        for _ in range(min(due, MAX_BURST)):
            self._send_packet()
            self._sent_in_burst += 1

    def _send_packet(self) -> None:
        sample = self.model.sample(self.sent_packets)
        frame = encode_realtime(sample) if self.protocol == "v7" else encode_legacy(sample)
        wire, intact = self.faults.apply(frame)
        self.sent_packets += 1
        if wire:  # recorded before it is written: the agent may decode it at once
            self.transcript.record("realtime", {
                "packet": self.sent_packets - 1, "spo2": sample.spo2,
                "pulse_rate": sample.pulse_rate, "finger_out": sample.finger_out,
                "searching": sample.searching, "signal": sample.signal,
                "perfusion_index": sample.pi_percent if self.protocol == "v7" else None,
            }, intact=intact)
            self.device.write(wire)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=("v7", "legacy"), default="v7")
    parser.add_argument("--finger-out-every", type=float, default=480.0,
                        help="mean simulated seconds between finger-out episodes")


def _build(args: argparse.Namespace, clock: SimClock,
           transcript: Transcript) -> tuple[ContecOximeterEmulator, str]:
    # The oximeter streams in real time: it takes --speed, not a stepped clock.
    emulator = ContecOximeterEmulator(
        seed=args.seed, protocol=args.protocol, speed=args.speed, port=args.port,
        finger_out_every_s=args.finger_out_every, transcript=transcript,
    )
    return emulator, f"Contec oximeter ({args.protocol})"


COMMAND = EmulatorCommand("contec_oximeter",
                          "Emulate a Contec pulse oximeter (V7.0 or legacy stream).",
                          _options, _build)


if __name__ == "__main__":
    main(command=COMMAND)
