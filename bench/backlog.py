"""Pre-signed readings with real per-device hash chains, cached on disk, loaded into a broker.

Signing 100,000 readings costs seconds of CPU that no benchmark should pay twice, so the signed
envelopes and the device keys are cached in one CBOR file per (devices, readings) size. Each
device's chain is real: seq counts from 0 and ``prev`` is the SHA-256 of the previous envelope,
so a collector checks every reading exactly as it would in the field.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cbor2

from provenance.envelope import Envelope, sign_reading
from provenance.keys import PrivateKey, PublicKey
from provenance.reading import GENESIS_PREV, Reading
from provenance.senml import Measurement
from provenance.wire import READING_FILTER, reading_topic

__all__ = [
    "CACHE_FORMAT",
    "TOPIC_FILTER",
    "Backlog",
    "BacklogDevice",
    "build_backlog",
    "device_readings",
    "load_or_build_backlog",
    "topic_for",
    "water_reading",
]

TOPIC_FILTER = READING_FILTER
# 2: signatures in low-S form (the collector refuses high-S since format 2 of this cache).
CACHE_FORMAT = 2


def topic_for(device_id: str) -> str:
    return reading_topic(device_id)


@dataclass(frozen=True, slots=True)
class BacklogDevice:
    device_id: str
    private_pem: bytes

    @property
    def key(self) -> PrivateKey:
        return PrivateKey.from_pem(self.private_pem)

    @property
    def public(self) -> PublicKey:
        return self.key.public


@dataclass(frozen=True, slots=True)
class Backlog:
    """Devices and their envelopes in publish order (devices interleaved, each one in seq order)."""

    devices: tuple[BacklogDevice, ...]
    # (index into devices, envelope bytes)
    envelopes: tuple[tuple[int, bytes], ...]
    created_ms: int

    def __len__(self) -> int:
        return len(self.envelopes)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        """(topic, envelope) pairs in publish order."""
        topics = [topic_for(d.device_id) for d in self.devices]
        for index, envelope in self.envelopes:
            yield topics[index], envelope

    @property
    def envelope_bytes(self) -> int:
        return sum(len(e) for _, e in self.envelopes)

    def encode(self) -> bytes:
        return cbor2.dumps(
            {
                "format": CACHE_FORMAT,
                "created_ms": self.created_ms,
                "devices": [[d.device_id, d.private_pem] for d in self.devices],
                "envelopes": [list(pair) for pair in self.envelopes],
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> Backlog:
        body = cbor2.loads(data)
        if body.get("format") != CACHE_FORMAT:
            raise ValueError("backlog cache has another format")
        return cls(
            devices=tuple(BacklogDevice(d, pem) for d, pem in body["devices"]),
            envelopes=tuple((i, e) for i, e in body["envelopes"]),
            created_ms=body["created_ms"],
        )


def water_reading(device_id: str, seq: int, prev: bytes, time_ms: int) -> Reading:
    """Reading ``seq`` of a water-quality probe: five probe values, the shape of the
    water-utility readings in design.md (the backlog's and the live generators' readings)."""
    return Reading(
        device_id=device_id, seq=seq, boot=1, time_ms=time_ms, clock_synced=True, prev=prev,
        kind="water-quality",
        measurements=(
            Measurement(name="ph", value=round(7.0 + (seq % 50) / 100, 2), unit="pH"),
            Measurement(name="turbidity", value=round(0.2 + (seq % 7) / 10, 2), unit="NTU"),
            Measurement(name="chlorine", value=round(0.5 + (seq % 11) / 100, 2), unit="mg/L"),
            Measurement(name="conductivity", value=480 + seq % 40, unit="uS/cm"),
            Measurement(name="temperature", value=round(12.0 + (seq % 30) / 10, 1), unit="Cel"),
        ),
    )


def device_readings(
    device_id: str, key: PrivateKey, count: int, *, start_ms: int, period_ms: int = 1000
) -> list[bytes]:
    """Sign ``count`` chained water-quality readings for one device, seq 0..count-1."""
    envelopes: list[bytes] = []
    prev = GENESIS_PREV
    for seq in range(count):
        reading = water_reading(device_id, seq, prev, start_ms + seq * period_ms)
        envelope = sign_reading(reading, key)
        envelopes.append(envelope)
        prev = Envelope.decode(envelope).hash
    return envelopes


def _sign_devices(
    jobs: Sequence[tuple[str, bytes, int]], start_ms: int, period_ms: int
) -> list[list[bytes]]:
    return [
        device_readings(
            device_id, PrivateKey.from_pem(pem), count, start_ms=start_ms, period_ms=period_ms
        )
        for device_id, pem, count in jobs
    ]


def build_backlog(devices: int, readings: int, *, workers: int | None = None) -> Backlog:
    """Generate keys and sign ``readings`` envelopes spread evenly over ``devices`` devices.

    Device times lie in the past, one reading a second per device, ending now: a backlog is what
    accumulated while the collector was away.
    """
    if devices < 1 or readings < devices:
        raise ValueError("need at least one device and one reading per device")
    per_device = [readings // devices + (1 if i < readings % devices else 0)
                  for i in range(devices)]
    period_ms = 1000
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - max(per_device) * period_ms
    keys = [PrivateKey.generate() for _ in range(devices)]
    device_list = tuple(
        BacklogDevice(f"bench-{i:04d}", key.to_pem()) for i, key in enumerate(keys)
    )
    jobs = [(d.device_id, d.private_pem, n) for d, n in zip(device_list, per_device, strict=True)]
    workers = workers or os.cpu_count() or 1
    chunks = [jobs[i::workers] for i in range(workers)]
    chains: dict[str, list[bytes]] = {}
    # Chains are independent per device, so signing spreads over all cores.
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for chunk, result in zip(
            chunks, pool.map(_sign_devices, chunks, [start_ms] * workers, [period_ms] * workers),
            strict=True,
        ):
            for (device_id, _, _), envelopes in zip(chunk, result, strict=True):
                chains[device_id] = envelopes
    ordered: list[tuple[int, bytes]] = []
    for seq in range(max(per_device)):
        for index, device in enumerate(device_list):
            chain = chains[device.device_id]
            if seq < len(chain):
                ordered.append((index, chain[seq]))
    return Backlog(device_list, tuple(ordered), now_ms)


def load_or_build_backlog(
    cache_dir: Path, devices: int, readings: int, *, max_age_s: float = 6 * 3600
) -> tuple[Backlog, bool]:
    """The cached backlog of this size, or a freshly signed one (then cached). Returns (backlog,
    whether it came from the cache).

    A cache older than ``max_age_s`` is signed again: its device times would drift far enough
    into the past for a collector's clock-skew check to treat them differently from a fresh run.
    """
    path = cache_dir / f"backlog-d{devices}-n{readings}.cbor"
    if path.exists():
        try:
            cached = Backlog.decode(path.read_bytes())
        except (ValueError, KeyError, cbor2.CBORDecodeError):
            cached = None  # an older or broken cache: sign again
        if cached is not None and time.time() * 1000 - cached.created_ms <= max_age_s * 1000:
            return cached, True
    backlog = build_backlog(devices, readings)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(backlog.encode())
    tmp.replace(path)
    return backlog, False
