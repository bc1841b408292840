"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.broker import Broker
from tests.support.collector import CollectorProcess, Ledger
from tests.support.postgres import PostgresServer

# No per-example deadline: tests must not time anything (speed lives in bench/), and a shared
# machine can stall any example past hypothesis' default 200 ms.
settings.register_profile("sensorledger", deadline=None)
settings.load_profile("sensorledger")

REPO = Path(__file__).resolve().parents[1]
VECTORS = Path(__file__).resolve().parent / "vectors"

# A machine's own /etc/sensorledger/collector.toml must not steer the tests' collectors (and
# their subprocesses): point the default config folder at one that does not exist.
os.environ["SENSORLEDGER_CONFIG_DIR"] = str(REPO / "tests" / "no-default-config")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A private Mosquitto on a free port, with persistence, stopped after the test."""
    b = Broker(workdir=tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    """A fresh ledger (`ledger-collector init`) in the test's folder."""
    return Ledger(tmp_path / "ledger").init()


@pytest.fixture
def collector(ledger: Ledger, broker: Broker) -> Iterator[Callable[..., CollectorProcess]]:
    """Make ``ledger-collector run`` processes for this test's ledger and broker; none outlives
    the test."""
    made: list[CollectorProcess] = []

    def make(*extra: str, env: dict[str, str] | None = None) -> CollectorProcess:
        proc = CollectorProcess(ledger, broker, *extra, env=env)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL for the session (initdb + pg_ctl in a temporary folder, free
    port, its own socket folder); tests take a fresh database each with ``pg_url``."""
    server = PostgresServer().init().start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database on the session's private PostgreSQL."""
    return postgres_server.create_db()


def standard_vectors(name: str) -> Path:
    """Path of a committed standard vector file (``tests/vectors``); fail loudly if missing."""
    path = VECTORS / name
    if not path.exists():
        pytest.fail(f"test vectors {path} not found")
    return path
