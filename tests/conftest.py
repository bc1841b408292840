"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.broker import Broker

# No per-example deadline: tests must not time anything (speed lives in bench/), and a shared
# machine can stall any example past hypothesis' default 200 ms.
settings.register_profile("sensorledger", deadline=None)
settings.load_profile("sensorledger")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A private Mosquitto on a free port, with persistence, stopped after the test."""
    b = Broker(workdir=tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def shared_vectors(name: str) -> Path:
    """Path of a standard vector file; fail loudly (never skip) when the vectors are missing."""
    path = SHARED / "vectors" / name
    if not path.exists():
        pytest.fail(f"test vectors {path} not found: shared/ must sit beside the checkout")
    return path
