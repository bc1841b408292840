"""The Grafana dashboard (deploy/grafana/sensorledger.json) asks only for metrics that the
collector or the agent really exports, with labels they really carry."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector

from agent.observe import AgentView, families
from agent.spool.schema import SpoolCounters
from collector.metrics import LiveState, Metrics
from collector.observe.exporter import LedgerExporter, broker_source
from hardware.running import SensorHealth
from tests.support.collector import REPO

DASHBOARD = REPO / "deploy" / "grafana" / "sensorledger.json"
NAME = re.compile(r"\b((?:sensorledger|process)_[a-z0-9_]+)\b")
BY = re.compile(r"\bby\s*\(([^)]*)\)")
#: Labels Prometheus adds to every series it scrapes, and the histogram bucket label.
TARGET_LABELS = {"instance", "job", "le"}


@dataclass
class _Link:
    connects: int = 1
    connected: threading.Event = field(default_factory=threading.Event)
    unacked: int = 0


def _every_family() -> Iterator[Metric]:
    """Every family the collector and the agent export, optional ones included."""
    live = LiveState(inbox=1, verifying=2, committing=3, unsealed=4, tree_size=5,
                     last_checkpoint_ms=1, oldest_waiting_ms=1)
    exporter = LedgerExporter(Metrics(), lambda: live)
    exporter.add_source(broker_source(_Link()))
    yield from exporter.collect()
    yield from ProcessCollector(registry=None).collect()
    view = AgentView(SpoolCounters(last_puback_ms=1), [SensorHealth("probe", "driver")], sent=0,
                     write_failures=0, depth=0, limit=10, open_gap=(1, 2), connected=True,
                     connects=1, failures=0)
    yield from families(view, 10.0)


def exported() -> dict[str, set[str]]:
    """Series name -> its label names, as a scrape shows them."""
    names: dict[str, set[str]] = {}
    for family in _every_family():
        suffixes = {"counter": ["_total"], "gauge": [""],
                    "histogram": ["_bucket", "_count", "_sum"]}[family.type]
        labels = {k for s in family.samples for k in s.labels} - {"le"}
        for suffix in suffixes:
            names[family.name + suffix] = labels | TARGET_LABELS
    return names


def queries(node: Any) -> Iterator[str]:
    """Every PromQL text in the dashboard: panel targets and template variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            # A template variable's query is PromQL when it calls label_values(...); the data
            # source variable's query is a plugin name.
            if isinstance(value, str) and (key == "expr" or (key == "query" and "(" in value)):
                yield value
            else:
                yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


def problems(exprs: Iterable[str], known: dict[str, set[str]]) -> list[str]:
    out = []
    for expr in exprs:
        used = NAME.findall(expr)
        if not used:
            out.append(f"{expr!r} names no SensorLedger or process metric")
        for name in used:
            if name not in known:
                out.append(f"{expr!r}: {name} is not exported")
        for group in BY.findall(expr):
            for label in (x.strip() for x in group.split(",") if x.strip()):
                if not any(label in known.get(name, set()) for name in used):
                    out.append(f"{expr!r}: no metric it uses has a label {label!r}")
    return out


def test_every_dashboard_query_uses_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = list(queries(dashboard))
    assert len(exprs) >= 20
    known = exported()
    assert problems(exprs, known) == []
    # The panels cover the collector's and the agent's headline metrics.
    used = {name for e in exprs for name in NAME.findall(e)}
    for name in ("sensorledger_readings_received_total", "sensorledger_tree_size",
                 "sensorledger_checkpoint_age_seconds", "sensorledger_backlog",
                 "sensorledger_receive_to_commit_seconds_bucket",
                 "sensorledger_commit_to_seal_seconds_bucket",
                 "sensorledger_readings_quarantined_total", "sensorledger_agent_spool_depth"):
        assert name in used, name


def test_the_check_catches_a_wrong_name_or_label() -> None:
    known = exported()
    assert problems(["rate(sensorledger_readings_recieved_total[1m])"], known) == [
        "'rate(sensorledger_readings_recieved_total[1m])': "
        "sensorledger_readings_recieved_total is not exported"]
    assert problems(["sum by (stage) (sensorledger_tree_size)"], known)
    assert problems(["sum by (stage) (sensorledger_backlog)"], known) == []
    assert problems(["vector(1)"], known)
