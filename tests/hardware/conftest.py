"""Helpers for driver-against-emulator tests (real ptys, real pymodbus servers)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

import pytest

from hardware.base import Driver, Sample, Value
from hardware.registry import create


def poll_until(driver: Driver, count: int, *, timeout: float = 20.0,
               interval: float = 0.02) -> list[Sample]:
    """Poll a streaming driver until it produced ``count`` samples (or fail)."""
    samples: list[Sample] = []
    deadline = time.monotonic() + timeout
    while len(samples) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"{driver.name}: {len(samples)} of {count} samples after {timeout} s; "
                        f"stats {driver.stats}")
        samples += driver.poll()
        time.sleep(interval)
    return samples


def as_dict(sample: Sample) -> dict[str, object]:
    return {m.name: m.value for m in sample.measurements}


def measured(sample: Sample, name: str) -> Value | None:
    """The value of the measurement called ``name`` in ``sample``, or ``None`` when absent."""
    return next((m.value for m in sample.measurements if m.name == name), None)


MakeDriver = Callable[[str, Mapping[str, object]], Driver]


@pytest.fixture
def make_driver() -> Iterator[MakeDriver]:
    """``make_driver(name, settings)``; every driver made is closed after the test."""
    made: list[Driver] = []

    def factory(name: str, settings: Mapping[str, object]) -> Driver:
        driver = create(name, settings)
        made.append(driver)
        return driver

    yield factory
    for driver in made:
        driver.close()
