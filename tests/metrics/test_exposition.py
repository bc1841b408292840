"""The pieces behind /metrics: the latency histogram, the exporter's families (every reason
at zero, the witness hook), the listen address, the config keys and the HTTP server."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric

from agent.config import parse_config as parse_agent_config
from collector.admission.reasons import REASONS
from collector.config import load_config
from collector.errors import ConfigError
from collector.metrics import LatencyHistogram, LiveState, Metrics
from collector.observe.exporter import LedgerExporter
from common.exposition import Health, MetricsServer
from provenance.listen import parse_listen
from tests.support.scrape import health, scrape


def test_histogram_buckets_are_upper_bounds_inclusive() -> None:
    h = LatencyHistogram(bounds=(0.1, 1.0))
    for value in (0.0, 0.1, 0.10001, 1.0, 5.0, -3.0):
        h.observe(value)
    h.observe(0.5, n=4)
    assert h.cumulative() == [(0.1, 3), (1.0, 9), (float("inf"), 10)]
    assert (h.total, round(h.sum_s, 5)) == (10, round(0.1 + 0.10001 + 1.0 + 5.0 + 2.0, 5))
    assert (h.quantile(0.3), h.quantile(0.5), h.quantile(1.0)) == (0.1, 1.0, float("inf"))
    assert LatencyHistogram().quantile(0.5) is None


def _live(**changes: int | None) -> LiveState:
    base: dict[str, int | None] = dict(inbox=1, verifying=2, committing=3, unsealed=4,
                                       tree_size=99, last_checkpoint_ms=None,
                                       oldest_waiting_ms=None)
    base.update(changes)
    return LiveState(**base)  # type: ignore[arg-type]


def test_exporter_families_from_the_counters() -> None:
    m = Metrics(received=10, accepted=7, duplicates=1, quarantined=Counter({"not_cbor": 2}))
    m.receive_to_commit.observe(0.02, n=7)
    registry = CollectorRegistry(auto_describe=False)
    exporter = LedgerExporter(m, lambda: _live(), clock=lambda: 100.0)
    registry.register(exporter)
    text = generate_latest(registry).decode()
    assert "sensorledger_readings_received_total 10.0" in text
    assert 'sensorledger_readings_quarantined_total{reason="not_cbor"} 2.0' in text
    # Every known reason is exported, at 0 until it happens, so rate() works from the start.
    for reason in REASONS:
        assert f'sensorledger_readings_quarantined_total{{reason="{reason}"}}' in text
    assert 'sensorledger_backlog{stage="commit"} 3.0' in text
    assert 'sensorledger_receive_to_commit_seconds_bucket{le="0.025"} 7.0' in text
    assert 'sensorledger_receive_to_commit_seconds_bucket{le="+Inf"} 7.0' in text
    assert "sensorledger_tree_size 99.0" in text
    # Only what exists: no checkpoint yet, nothing waiting, no witnesses.
    assert "checkpoint_age" not in text and "oldest_waiting" not in text
    assert "witness" not in text

    def witnesses() -> Iterator[Metric]:
        family = CounterMetricFamily("sensorledger_witness_cosignatures_total", "x",
                                     labels=["witness"])
        family.add_metric(["w1"], 3)
        yield family

    exporter.add_source(witnesses)
    m.accepted += 1  # the next scrape sees the counters as they are now
    text = generate_latest(registry).decode()
    assert 'sensorledger_witness_cosignatures_total{witness="w1"} 3.0' in text
    assert "sensorledger_readings_accepted_total 8.0" in text
    late = LedgerExporter(m, lambda: _live(last_checkpoint_ms=97_500), clock=lambda: 100.0)
    ages = [f for f in late.collect() if f.name == "sensorledger_checkpoint_age_seconds"]
    assert [s.value for s in ages[0].samples] == [2.5]


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen(":9464") == ("0.0.0.0", 9464)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("9464", "host:", "::1:9464", "[nope]:1", "a:70000"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_config_keys(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('database = "l.db"\n[metrics]\nlisten = "127.0.0.1:9464"\n')
    assert load_config(good).metrics.listen == "127.0.0.1:9464"
    assert load_config(None, {"database": "l.db"}).metrics.listen is None  # off by default
    bad = tmp_path / "bad.toml"
    bad.write_text('database = "l.db"\n[metrics]\nlisten = "9464"\n')
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "metrics.listen" in str(err.value) and ":3" in str(err.value)
    agent = ('device_id = "d"\nkey_file = "k"\nmetrics_listen = "{}"\n'
             '[broker]\nurl = "mqtt://h"\n'
             '[[sensors]]\nname = "c"\ndriver = "modbus-rtu"\ninterval_s = 1\n')
    draft = parse_agent_config(agent.format("127.0.0.1:0"), tmp_path / "a.toml")
    assert draft.config is not None and draft.config.metrics_listen == "127.0.0.1:0"
    draft = parse_agent_config(agent.format("nope"), tmp_path / "a.toml")
    assert [(p.key, p.line) for p in draft.problems] == [("metrics_listen", 3)]


async def test_server_routes() -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerExporter(Metrics(received=3), lambda: _live()))
    state = {"ok": True}
    server = MetricsServer("127.0.0.1:0", registry,
                           lambda: Health(state["ok"], {"reason": "because"}))
    host, port = await server.start()
    base = f"http://{host}:{port}"
    try:
        got = await asyncio.to_thread(scrape, base)
        assert got.value("sensorledger_readings_received_total") == 3
        assert await asyncio.to_thread(health, base) == (200, {"status": "ok",
                                                               "reason": "because"})
        state["ok"] = False
        assert await asyncio.to_thread(health, base) == (503, {"status": "failing",
                                                               "reason": "because"})
        for path, code in (("/", 404), ("/metrics/../etc/passwd", 404), ("/healthz", 404)):
            assert await asyncio.to_thread(_status, base + path) == code
        assert await asyncio.to_thread(_status, base + "/metrics", "POST") == 405
        # A request head that never ends, or is too long, gets no answer and no hold on us.
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10_000)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"nonsense\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 400 ")
        writer.close()
    finally:
        await server.close()


def _status(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method),
                                    timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
