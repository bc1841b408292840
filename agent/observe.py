"""The agent's Prometheus metrics (``metrics_listen``; off by default), read at scrape time.

The same objects feed the heartbeat, ``status.json`` and ``/metrics``: the spool's counters
(totals since the spool was created; they survive restarts, as they are stored in the spool),
each sensor's health, the link to the broker and the publisher's count of sends. Nothing is
counted twice and nothing on the sampling path knows about Prometheus.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hardware.running import SensorHealth

from .intake.recorder import Recorder
from .outbox.link import LinkState
from .outbox.publisher import Publisher
from .poller import SensorRunner
from .spool import Spool
from .spool.schema import SpoolCounters

__all__ = ["AgentExporter", "AgentView", "families"]


@dataclass(frozen=True, slots=True)
class AgentView:
    """The numbers one scrape shows, copied from the live objects."""

    counters: SpoolCounters
    sensors: Sequence[SensorHealth]
    sent: int  # readings handed to the broker by this process
    write_failures: int
    depth: int
    limit: int
    open_gap: tuple[int, int] | None
    connected: bool
    connects: int
    failures: int


class AgentExporter(Collector):
    def __init__(self, spool: Spool, link: LinkState, runners: Sequence[SensorRunner],
                 recorder: Recorder, publisher: Publisher,
                 clock: Callable[[], float] = time.time) -> None:
        self._spool = spool
        self._link = link
        self._runners = runners
        self._recorder = recorder
        self._publisher = publisher
        self._clock = clock

    def view(self) -> AgentView:
        spool, link = self._spool, self._link
        return AgentView(
            counters=replace(spool.counters), sensors=[r.health for r in self._runners],
            sent=self._publisher.sent, write_failures=self._recorder.write_failures,
            depth=spool.depth, limit=spool.max_readings, open_gap=spool.gap,
            connected=link.connected, connects=link.connects, failures=link.failures)

    def collect(self) -> Iterator[Metric]:
        return families(self.view(), self._clock())


def families(view: AgentView, now_s: float) -> Iterator[Metric]:
    """The agent's metric families for ``view`` (pure)."""
    c = view.counters
    for name, doc, attr in (
        ("sensorledger_agent_readings_read_total",
         "Samples a sensor's driver returned (each becomes a reading).", "samples"),
        ("sensorledger_agent_polls_total", "Polls of a sensor's driver.", "polls"),
        ("sensorledger_agent_sensor_faults_total",
         "Sensor faults: failed polls, samples the wire format refused, driver errors "
         "(CRC, timeouts, ...).", "errors"),
    ):
        family = CounterMetricFamily(name, doc, labels=["sensor"])
        for h in view.sensors:
            family.add_metric([h.name], getattr(h, attr))
        yield family
    yield CounterMetricFamily("sensorledger_agent_readings_signed_total",
                              "Readings signed by this device for the spool (gap records "
                              "counted apart).", value=c.signed)
    yield CounterMetricFamily("sensorledger_agent_readings_relayed_total",
                              "Envelopes signed by a self-signing sensor, spooled as they "
                              "came.", value=c.relayed)
    yield CounterMetricFamily("sensorledger_agent_readings_spooled_total",
                              "Readings put in the spool: signed plus relayed (overflow may "
                              "drop them later).",
                              value=c.signed + c.relayed)
    dropped = CounterMetricFamily(
        "sensorledger_agent_readings_dropped_total",
        "Readings pushed out of a full spool before delivery, by origin.", labels=["origin"])
    dropped.add_metric(["own"], c.dropped)
    dropped.add_metric(["relayed"], c.dropped_relayed)
    yield dropped
    yield CounterMetricFamily("sensorledger_agent_readings_published_total",
                              "Readings sent to the broker by this process (re-sends after "
                              "a reconnect included).", value=view.sent)
    yield CounterMetricFamily("sensorledger_agent_readings_acknowledged_total",
                              "Readings the broker acknowledged (PUBACK); in receipts mode "
                              "they stay in the spool until a receipt covers them.",
                              value=c.published)
    yield CounterMetricFamily("sensorledger_agent_gap_records_total",
                              "Gap records signed, one per overflow episode.",
                              value=c.gap_records)
    yield CounterMetricFamily("sensorledger_agent_spool_write_failures_total",
                              "Spool transactions that failed (the batch is retried).",
                              value=view.write_failures)
    yield GaugeMetricFamily("sensorledger_agent_spool_depth",
                            "Readings in the spool, waiting for a PUBACK (or, in receipts "
                            "mode, for a receipt).", value=view.depth)
    yield GaugeMetricFamily("sensorledger_agent_spool_limit",
                            "Readings the spool keeps at most (spool.max_readings).",
                            value=view.limit)
    gap = view.open_gap
    yield GaugeMetricFamily("sensorledger_agent_open_gap_readings",
                            "Readings dropped in the overflow episode still open (its gap "
                            "record is signed once the spool has room).",
                            value=gap[1] - gap[0] + 1 if gap else 0)
    yield GaugeMetricFamily("sensorledger_agent_broker_connected",
                            "1 while the agent is connected to the broker.",
                            value=1 if view.connected else 0)
    yield CounterMetricFamily("sensorledger_agent_broker_connects_total",
                              "Connections made to the broker.", value=view.connects)
    yield CounterMetricFamily("sensorledger_agent_broker_failures_total",
                              "Connection attempts that failed or connections lost.",
                              value=view.failures)
    if c.last_puback_ms is not None:
        yield GaugeMetricFamily("sensorledger_agent_last_puback_age_seconds",
                                "Seconds since the broker last acknowledged a reading.",
                                value=max(0.0, now_s - c.last_puback_ms / 1000))
