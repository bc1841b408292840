"""Readings and keys used by the provenance tests."""

from __future__ import annotations

import hashlib

from provenance.keys import PrivateKey
from provenance.reading import GENESIS_PREV, Reading
from provenance.senml import Measurement

#: The documented example device key (docs/wire-format.md): scalar = SHA-256 of a fixed phrase.
EXAMPLE_DEVICE_KEY = PrivateKey.from_scalar(
    hashlib.sha256(b"sensorledger example device key").digest()
)
EXAMPLE_COLLECTOR_KEY = PrivateKey.from_scalar(
    hashlib.sha256(b"sensorledger example collector key").digest()
)


def example_reading() -> Reading:
    """The arc event shown in docs/wire-format.md."""
    return Reading(
        device_id="arc-panel-7",
        seq=42,
        boot=3,
        time_ms=1_790_000_000_123,
        clock_synced=True,
        prev=hashlib.sha256(b"envelope 41").digest(),
        kind="arc-detector",
        measurements=(
            Measurement(name="arc_intensity_ch3", value=87),
            Measurement(name="residual_current", value=12.5, unit="mA"),
        ),
        event={"type": "arc", "channel": 3, "count": 5},
    )


def reading(seq: int = 0, *, device: str = "dev-1", prev: bytes = GENESIS_PREV,
            time_ms: int = 1_790_000_000_000) -> Reading:
    return Reading(
        device_id=device,
        seq=seq,
        boot=1,
        time_ms=time_ms,
        clock_synced=True,
        prev=prev,
        kind="water-quality",
        measurements=(Measurement(name="ph", value=7.0 + seq / 100),
                      Measurement(name="temperature", value=20.5, unit="Cel")),
    )
