"""Fixtures for the metrics tests: a fresh ledger, and collectors that never outlive a test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.collector import CollectorProcess, Ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger").init()


@pytest.fixture
def collector(ledger: Ledger, broker: Broker) -> Iterator[Callable[..., CollectorProcess]]:
    made: list[CollectorProcess] = []

    def make(*extra: str, env: dict[str, str] | None = None) -> CollectorProcess:
        proc = CollectorProcess(ledger, broker, *extra, env=env)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.kill()
