"""The collector's Prometheus metrics, built at scrape time from the pipeline's own counters.

A custom collector (``prometheus_client``'s documented "custom collector" pattern) rather than
``Counter``/``Gauge`` objects updated in the hot path: the pipeline already counts into
:class:`collector.metrics.Metrics` (the ``stats`` log line reads the same object), so a scrape
and a log line can never disagree, and ingest pays nothing for metrics nobody scrapes. All
counting happens in the main process; verification workers only return outcomes.

Other parts of the collector add their own families with :meth:`LedgerExporter.add_source`
(for example witness cosignature counts, once the collector gathers them): a source is a
function returning the families it has *now*, and exports nothing for what does not exist.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from collector.admission.reasons import REASONS
from collector.metrics import LatencyHistogram, LiveState, Metrics

__all__ = ["STAGES", "BrokerLink", "LedgerExporter", "MetricSource", "broker_source"]

#: A function giving metric families at scrape time.
MetricSource = Callable[[], Iterable[Metric]]

#: Backlog stages, in pipeline order (the ``stage`` label of ``sensorledger_backlog``).
STAGES = ("inbox", "verify", "commit", "seal")


class LedgerExporter(Collector):
    def __init__(self, metrics: Metrics, live: Callable[[], LiveState],
                 clock: Callable[[], float] = time.time) -> None:
        self._metrics = metrics
        self._live = live
        self._clock = clock
        self._sources: list[MetricSource] = []

    def add_source(self, source: MetricSource) -> None:
        """Export ``source``'s families too, at every scrape."""
        self._sources.append(source)

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        yield _counter("sensorledger_readings_received_total",
                       "Messages taken from the broker's reading topics.", m.received)
        yield _counter("sensorledger_readings_accepted_total",
                       "Readings verified and admitted to the ledger (committed or being "
                       "committed).", m.accepted)
        yield _counter("sensorledger_readings_duplicate_total",
                       "Re-deliveries of a stored reading (same bytes), dropped.", m.duplicates)
        quarantined = CounterMetricFamily(
            "sensorledger_readings_quarantined_total",
            "Messages kept out of the ledger, by reason code.", labels=["reason"])
        for reason in sorted(set(REASONS) | set(m.quarantined)):
            quarantined.add_metric([reason], m.quarantined.get(reason, 0))
        yield quarantined
        events = CounterMetricFamily(
            "sensorledger_device_events_total",
            "Accepted readings that showed a device event.", labels=["event"])
        for name, value in (("gap", m.gaps), ("chain_restart", m.chain_restarts),
                            ("reboot", m.reboots), ("boot_reset", m.boot_resets),
                            ("late", m.late)):
            events.add_metric([name], value)
        yield events
        yield _counter("sensorledger_blocks_sealed_total", "Blocks sealed and committed.",
                       m.blocks_sealed)
        yield _counter("sensorledger_commits_total",
                       "Commit transactions (each one fsync) of ingest batches.", m.commits)
        live = self._live()
        yield GaugeMetricFamily("sensorledger_tree_size",
                                "Leaves in the sealed log tree (the latest checkpoint's size).",
                                value=live.tree_size)
        if live.last_checkpoint_ms is not None:
            age = max(0.0, self._clock() - live.last_checkpoint_ms / 1000)
            yield GaugeMetricFamily("sensorledger_checkpoint_age_seconds",
                                    "Seconds since the newest checkpoint was signed.",
                                    value=age)
        backlog = GaugeMetricFamily(
            "sensorledger_backlog",
            "Messages the collector holds, by pipeline stage: inbox (received, not yet "
            "verifying), verify, commit (in the batch being written), seal (committed, "
            "not yet in a block).", labels=["stage"])
        for stage, value in zip(STAGES, (live.inbox, live.verifying, live.committing,
                                         live.unsealed), strict=True):
            backlog.add_metric([stage], value)
        yield backlog
        if live.oldest_waiting_ms is not None:
            yield GaugeMetricFamily(
                "sensorledger_oldest_waiting_seconds",
                "Age of the oldest reading received and not yet sealed.",
                value=max(0.0, self._clock() - live.oldest_waiting_ms / 1000))
        yield _histogram("sensorledger_receive_to_commit_seconds",
                         "From a reading's arrival to the commit that made it durable.",
                         m.receive_to_commit)
        yield _histogram("sensorledger_commit_to_seal_seconds",
                         "From a reading's commit to the commit of the block holding it.",
                         m.commit_to_seal)
        for source in self._sources:
            yield from source()


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _histogram(name: str, doc: str, hist: LatencyHistogram) -> HistogramMetricFamily:
    buckets = [(_le(bound), float(count)) for bound, count in hist.cumulative()]
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist.sum_s)


class BrokerLink(Protocol):
    """What the MQTT side tells about its link (:class:`collector.ingest.mqtt.MqttIngest`)."""

    connects: int
    connected: threading.Event

    @property
    def unacked(self) -> int: ...


def broker_source(link: BrokerLink) -> MetricSource:
    """Families for the broker link: connected, connections made, messages not yet acked."""

    def families() -> Iterator[Metric]:
        yield GaugeMetricFamily("sensorledger_broker_connected",
                                "1 while the collector is connected to the broker.",
                                value=1 if link.connected.is_set() else 0)
        yield _counter("sensorledger_broker_connects_total",
                       "Connections made to the broker (a reconnect adds one).", link.connects)
        yield GaugeMetricFamily(
            "sensorledger_broker_unacked_messages",
            "Messages received from the broker and not yet acknowledged to it.",
            value=link.unacked)

    return families


def _le(bound: float) -> str:
    """A bucket bound as Prometheus writes it: ``0.005``, ``1.0``, ``+Inf``."""
    return "+Inf" if bound == float("inf") else repr(float(bound))
