"""The driver interface the agent polls.

A driver turns one device into :class:`Sample` objects. Each :class:`Measurement` is the
core's SenML record (:class:`provenance.senml.Measurement`, re-exported here), so a driver
builds what the agent signs and nothing converts in between. Build it with keywords,
``Measurement(name=..., value=..., unit=...)``: its field order is (name, value, unit).
``unit`` is a SenML unit symbol from the IANA registry (primary or secondary, e.g. ``"Cel"``,
``"V"``, ``"mV"``, ``"Ah"``, ``"NTU"``, ``"beat/min"``) or ``None`` when no registered symbol
fits. The record checks itself: a name or unit of 1-64 characters, a finite value of a
supported type, or :class:`provenance.errors.MalformedError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from provenance.senml import Measurement, Value

__all__ = ["Driver", "DriverStats", "Measurement", "Sample", "Value"]


@dataclass(frozen=True, slots=True)
class Sample:
    """What one poll produced for one sensor.

    ``event`` carries a discrete occurrence (an arc, a protection trip) that the agent
    publishes at once. ``envelope`` carries a COSE_Sign1 made inside a self-signing sensor,
    which the agent relays byte for byte instead of signing. ``refused`` is the reason, when
    the device answered with something no reading can carry (a float register holding NaN
    makes :class:`Measurement` raise): the agent counts such a sample as refused at its
    sensor and publishes none of it, not even the measurements it holds.
    """

    kind: str
    measurements: tuple[Measurement, ...] = ()
    event: Mapping[str, Value] | None = None
    envelope: bytes | None = None
    refused: str | None = None


@dataclass
class DriverStats:
    """Counters a driver keeps about its device; the agent reports them as health."""

    polls: int = 0
    samples: int = 0
    frames_ok: int = 0
    checksum_errors: int = 0
    timeouts: int = 0
    resyncs: int = 0
    other_errors: int = 0
    last_error: str | None = None


@runtime_checkable
class Driver(Protocol):
    """A device driver as the agent sees it.

    ``poll`` blocks (the agent runs it in a worker thread), returns ``[]`` when there is
    nothing new and never raises for device faults: a bad checksum, a timeout, garbage on
    the line or an absent device is counted in ``stats``. Anything else it raises (a bug) is
    caught by the one guard around every driver, :class:`~hardware.running.RunningDriver`,
    and counted as a fault of that sensor; a driver needs no crash guard of its own.
    Construction raises :class:`~hardware.errors.HardwareConfigError` for settings a person
    must fix.
    """

    name: str
    kind: str
    stats: DriverStats

    def poll(self) -> list[Sample]: ...

    def close(self) -> None: ...
