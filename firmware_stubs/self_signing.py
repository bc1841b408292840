"""A sensor that signs its own readings: a microcontroller model without OpenSSL.

    python -m firmware_stubs.self_signing --key sensor.pem --state sensor.state \\
        [--device-id wq-smart-1] [--interval 5] [--port P] [--seed 1]

Every ``--interval`` seconds it measures (the water model of
:mod:`firmware_stubs.water_model`), builds a wire-format v1 reading with
:class:`provenance.reading.Reading`, signs the COSE_Sig_structure from
:func:`provenance.envelope.to_be_signed` with the pure-Python ``ecdsa`` package (ES256, raw
r‖s in low-S form, RFC 6979 deterministic k unless ``--random-k``) and sends the envelope in
the serial frame of :mod:`hardware.envelope_framing`.

Like firmware it keeps its own chain state in a small file: the next sequence number, the
hash of the last envelope (``prev``) and a boot counter raised at every start. The state is
written and fsync'ed *before* the frame leaves, so a power cut can lose a reading but never
reuse a sequence number. The private key is created on first start (mode 0600) and its public
key written next to it as ``<key>.pub.pem`` for ``ledger-collector devices add``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import cbor2
import ecdsa
from ecdsa.util import sigencode_string

from hardware.envelope_framing import encode_frame
from provenance import cbor
from provenance.envelope import to_be_signed
from provenance.keys import key_id, low_s
from provenance.reading import GENESIS_PREV, Reading
from provenance.senml import Measurement
from provenance.wire import ALG_ES256, COSE_SIGN1_TAG, HDR_ALG, HDR_KID

from .cli import EmulatorCommand, main
from .clock import SimClock
from .faults import LineFaults
from .serial_device import SerialDevice, SerialEmulator
from .transcript import Transcript
from .water_model import WaterModel

__all__ = ["COMMAND", "ChainState", "SelfSigningSensor", "load_or_create_key"]

KIND = "water-quality"
#: (name, SenML unit, decimals) of what the smart probe measures.
QUANTITIES = (("temperature", "Cel", 2), ("ph", "pH", 2), ("turbidity", "NTU", 2),
              ("free_chlorine", "mg/l", 2))


@dataclass
class ChainState:
    """The firmware's persistent counters (a JSON file standing in for flash)."""

    next_seq: int = 0
    prev: bytes = GENESIS_PREV
    boot: int = 0

    @classmethod
    def load(cls, path: Path) -> ChainState:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(int(data["next_seq"]), bytes.fromhex(data["prev"]), int(data["boot"]))

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        payload = json.dumps({"next_seq": self.next_seq, "prev": self.prev.hex(),
                              "boot": self.boot})
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: the old state or the new one, never half of each
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def load_or_create_key(path: Path) -> ecdsa.SigningKey:
    """The device's P-256 key; created (0600, PKCS#8 PEM) when the file does not exist."""
    if path.exists():
        key = ecdsa.SigningKey.from_pem(path.read_bytes())
        if key.curve != ecdsa.NIST256p:
            raise ValueError(f"{path} is not a P-256 key")
        return key
    key = ecdsa.SigningKey.generate(curve=ecdsa.NIST256p)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.to_pem(format="pkcs8"))
    public = key.get_verifying_key()
    path.with_name(path.name + ".pub.pem").write_bytes(public.to_pem())
    return key


class SelfSigningSensor(SerialEmulator):
    def __init__(self, *, key_path: str | Path, state_path: str | Path,
                 device_id: str = "wq-smart-1", seed: int = 1, interval_s: float = 5.0,
                 random_k: bool = False, clock_synced: bool = True, port: str | None = None,
                 faults: LineFaults | None = None, transcript: Transcript | None = None) -> None:
        self.device_id = device_id
        self.key = load_or_create_key(Path(key_path))
        public_der: bytes = self.key.get_verifying_key().to_der()
        self.public_der = public_der
        self.kid = key_id(public_der)
        self.state_path = Path(state_path)
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        self.state = ChainState.load(self.state_path)
        self.state.boot += 1  # a start is a boot; persisted before anything is signed
        self.state.save(self.state_path)
        self.model = WaterModel(seed, start_hour=0.0)  # driven by UTC time of day
        self.interval_s = interval_s
        self.random_k = random_k
        self.clock_synced = clock_synced
        self.faults = faults or LineFaults()
        self.transcript = transcript or Transcript()
        self.device = SerialDevice(port, lambda _data: None, name="self-signing",
                                   on_tick=self._on_tick, tick_s=0.01, baudrate=115200)
        self._started = time.monotonic()
        # A sensor measures for one interval before its first report, as real ones do; it also
        # gives a host that has just been told the port time to open it.
        self._next_emit = self.interval_s

    @property
    def agent_path(self) -> str:
        return self.device.path

    def _sign(self, message: bytes) -> bytes:
        """ES256, raw r || s, in the low-S form a collector requires (``ecdsa`` leaves s as
        the curve arithmetic gives it: high half the time)."""
        if self.random_k:
            signature: bytes = self.key.sign(message, hashfunc=hashlib.sha256,
                                             sigencode=sigencode_string)
        else:  # RFC 6979: no random source needed, as on a small microcontroller
            signature = self.key.sign_deterministic(message, hashfunc=hashlib.sha256,
                                                    sigencode=sigencode_string)
        return low_s(signature)

    def make_envelope(self, time_ms: int) -> tuple[Reading, bytes]:
        """Measure, build and sign the next reading; advances and persists the chain state."""
        t = (time_ms / 1000.0) % 86_400.0
        measurements = tuple(
            Measurement(name=name, value=round(self.model.value(name, t), decimals), unit=unit)
            for name, unit, decimals in QUANTITIES
        )
        reading = Reading(
            device_id=self.device_id, seq=self.state.next_seq, boot=self.state.boot,
            time_ms=time_ms, clock_synced=self.clock_synced, prev=self.state.prev,
            kind=KIND, measurements=measurements,
        )
        payload = reading.to_payload()
        protected = cbor.encode({HDR_ALG: ALG_ES256, HDR_KID: self.kid})
        signature = self._sign(to_be_signed(protected, payload))
        envelope = cbor.encode(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload,
                                                               signature]))
        self.state.next_seq += 1
        self.state.prev = hashlib.sha256(envelope).digest()
        self.state.save(self.state_path)
        return reading, envelope

    def emit(self) -> bytes:
        """Sign one reading and send it; returns the envelope."""
        reading, envelope = self.make_envelope(int(time.time() * 1000))
        wire, intact = self.faults.apply(encode_frame(envelope))
        self.transcript.record("envelope", {"seq": reading.seq, "boot": reading.boot,
                                            "envelope": envelope.hex()}, intact=intact)
        self.device.write(wire)
        return envelope

    def _on_tick(self) -> None:
        now = time.monotonic() - self._started
        if now >= self._next_emit:
            self._next_emit = now + self.interval_s
            self.emit()

    def start(self) -> Self:
        self._started = time.monotonic()
        return super().start()


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", required=True, help="device key (PEM); created when absent")
    parser.add_argument("--state", required=True, help="chain state file (seq, prev, boot)")
    parser.add_argument("--device-id", default="wq-smart-1")
    parser.add_argument("--interval", type=float, default=5.0,
                        help="seconds between readings (divided by --speed)")
    parser.add_argument("--random-k", action="store_true",
                        help="random ECDSA nonces instead of RFC 6979 deterministic ones")
    parser.add_argument("--unsynced", action="store_true",
                        help="mark readings as taken with an unsynchronised clock")


def _build(args: argparse.Namespace, clock: SimClock,
           transcript: Transcript) -> tuple[SelfSigningSensor, str]:
    # The sensor signs on its own timer (--interval / --speed), not on a simulated clock.
    sensor = SelfSigningSensor(
        key_path=args.key, state_path=args.state, device_id=args.device_id, seed=args.seed,
        interval_s=args.interval / args.speed, random_k=args.random_k,
        clock_synced=not args.unsynced, port=args.port, transcript=transcript,
    )
    return sensor, (f"self-signing sensor {args.device_id} "
                    f"(kid {sensor.kid.hex()[:16]}…, boot {sensor.state.boot})")


COMMAND = EmulatorCommand(
    "self_signing", "Emulate a sensor that signs its own readings (ES256, pure Python).",
    _options, _build)


if __name__ == "__main__":
    main(command=COMMAND)
