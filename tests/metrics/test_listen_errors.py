"""A listener that cannot be had: the collector refuses to start (exit 2, saying which
address), the agent refuses a malformed address before it starts."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from tests.support.agent_harness import run_cli as agent_cli
from tests.support.agent_harness import write_config
from tests.support.broker import Broker
from tests.support.collector import CollectorProcess


def test_collector_refuses_a_taken_metrics_port(
    collector: Callable[..., CollectorProcess],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        col = collector("--metrics-listen", f"127.0.0.1:{port}").start(wait_connected=False)
        assert col.proc is not None
        assert col.proc.wait(60) == 2
    text = "".join(col.lines)
    assert f"metrics.listen 127.0.0.1:{port}: cannot listen" in text


def test_collector_refuses_a_malformed_address(
    collector: Callable[..., CollectorProcess],
) -> None:
    col = collector("--metrics-listen", "9464").start(wait_connected=False)
    assert col.proc is not None
    assert col.proc.wait(60) == 2
    assert "metrics.listen" in "".join(col.lines)


def test_agent_refuses_a_malformed_address(tmp_path: Path, broker: Broker) -> None:
    config = write_config(tmp_path / "agent", broker.url)
    result = agent_cli("run", "--config", str(config), "--metrics-listen", "localhost")
    assert result.returncode == 2
    assert "--metrics-listen" in result.stderr and "HOST:PORT" in result.stderr
