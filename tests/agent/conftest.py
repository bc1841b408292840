"""Fixtures for the agent tests: agent processes and subscribers that are always cleaned up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.agent_harness import AgentProcess, Subscriber
from tests.support.broker import Broker


@pytest.fixture
def agents() -> Iterator[Callable[..., AgentProcess]]:
    """Start agent processes; any still running at the end are killed."""
    started: list[AgentProcess] = []

    def start(config: Path, env: dict[str, str] | None = None,
              options: tuple[str, ...] = ()) -> AgentProcess:
        process = AgentProcess(config, env=env or {}, options=options).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.cleanup()


@pytest.fixture
def subscriber(broker: Broker) -> Iterator[Subscriber]:
    """A persistent-session subscriber to everything under sensorledger/v1/."""
    sub = Subscriber(broker.host, broker.port)
    yield sub
    sub.close()
