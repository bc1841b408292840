"""The running agent: wires pollers, recorder, spool, publisher, status and systemd together.

Start-up refuses (ConfigError, exit 2) anything a person must fix: an unreadable or too-open
key file, TLS files that do not load, driver settings a driver rejects. Everything after
start-up is survivable: a sensor that fails is counted and retried, a broker that is away is
retried with backoff while readings pile up in the spool, a spool write that fails is retried
with the batch kept in memory.

Stopping (SIGTERM from systemd, or SIGINT): pollers stop, queued drafts are signed and
spooled, the publisher delivers what it can until ``shutdown_timeout_s``, publishes a
retained "offline" and disconnects. Whatever is not delivered stays in the spool for the
next start.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from common.systemd import Notifier
from hardware.base import Driver

from .clock import Clock
from .config import AgentConfig, SensorConfig
from .data_keys import DataKeys, ValueSealer, load_readers
from .errors import ConfigError, Problem
from .intake.recorder import Recorder
from .outbox.link import LinkState
from .outbox.publisher import Publisher
from .poller import SensorRunner
from .preflight import (
    build_driver,
    driver_problems,
    load_device_key,
    load_receipt_key,
    read_password,
    tls_context,
)
from .sensor_faults import FaultReport
from .signer import ChainSigner
from .spool import Spool
from .status import Heartbeat, status_line, write_status_file

if TYPE_CHECKING:  # prometheus_client is imported only when metrics are on
    from common.exposition import MetricsServer

__all__ = ["Agent", "run_agent"]

log = logging.getLogger("agent")

#: How long pollers get to finish a blocking poll when the agent stops.
POLLER_GRACE_S = 2.0


async def run_agent(config: AgentConfig, *, notifier: Notifier | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    agent = await Agent.start(config, notifier or Notifier())
    return await agent.serve()


class Agent:
    def __init__(
        self, config: AgentConfig, spool: Spool, recorder: Recorder, publisher: Publisher,
        runners: list[SensorRunner], heartbeat: Heartbeat, executor: ThreadPoolExecutor,
        notifier: Notifier,
    ) -> None:
        self.config = config
        self.spool = spool
        self.recorder = recorder
        self.publisher = publisher
        self.runners = runners
        self.heartbeat = heartbeat
        self.executor = executor
        self.notifier = notifier
        self.stop_event = asyncio.Event()
        self._poll_stop = asyncio.Event()
        self._faults = FaultReport()
        self._metrics: MetricsServer | None = None

    @classmethod
    async def start(cls, config: AgentConfig, notifier: Notifier) -> Agent:
        key = load_device_key(config.key_file, config)
        tls = tls_context(config.broker.tls, config) if config.broker.tls is not None else None
        password = read_password(config)
        receipt_key = load_receipt_key(config)
        drivers = _build_drivers(config)
        spool = None
        try:
            spool = await Spool.open(config.spool.path, config.device_id,
                                     config.spool.max_readings, config.delivery)
            clock = Clock(config.clock)
            # The flow, built in order: intake (pollers -> recorder -> signer + spool), then
            # the outbox's publisher, which reports the link the recorder paces by.
            sealer = ValueSealer(DataKeys(config.data_keys_file),
                                 load_readers(config.privacy.readers))
            for sensor in config.sensors:  # a key-file problem shows at start, not mid-batch
                if sensor.private and sensor.enabled:
                    sealer.keys.current(sensor.subject or config.device_id)
            signer = ChainSigner(config.device_id, key, spool.boot, spool.head, clock,
                                 sealer=sealer)
            link = LinkState()
            recorder = Recorder(spool, signer, link,
                                pace_backlog=max(1_000, 4 * config.broker.in_flight))
            executor = ThreadPoolExecutor(max_workers=len(config.sensors) + 2,
                                          thread_name_prefix="poll")
            runners = [SensorRunner(sensor, drivers.pop(sensor.name, None), _builder(sensor),
                                    recorder.put, clock, executor, device_id=config.device_id)
                       for sensor in config.sensors if sensor.enabled]
            heartbeat = Heartbeat(spool, link, runners, recorder)
            publisher = Publisher(config.device_id, config.broker, spool, tls=tls,
                                  password=password, heartbeat_s=config.heartbeat_s,
                                  heartbeat=heartbeat, link=link,
                                  receipts=config.delivery == "receipts",
                                  receipt_timeout_s=config.receipt_timeout_s,
                                  receipt_key=receipt_key)
        except BaseException:
            for driver in drivers.values():
                driver.close()
            if spool is not None:
                await spool.close()
            raise
        agent = cls(config, spool, recorder, publisher, runners, heartbeat, executor, notifier)
        log.info("device %s, key %s, boot %d, next seq %d, %d reading(s) spooled; delivery: %s",
                 config.device_id, key.public.kid_hex[:16], spool.boot, spool.head.next_seq,
                 spool.depth, config.delivery)
        return agent

    def snapshot(self) -> dict[str, Any]:
        return self.heartbeat()

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        recorder = asyncio.create_task(self.recorder.run(), name="recorder")
        publisher = asyncio.create_task(self.publisher.run(), name="publisher")
        pollers = [asyncio.create_task(r.run(self._poll_stop), name=f"sensor {r.sensor.name}")
                   for r in self.runners]
        housekeeping = [asyncio.create_task(self._status_loop(), name="status")]
        if self.notifier.watchdog_interval_s is not None:
            housekeeping.append(asyncio.create_task(self._watchdog_loop(), name="watchdog"))
        self.notifier.ready(status_line(self.snapshot()))
        log.info("running: %d sensor(s), broker %s", len(self.runners), self.config.broker.url)
        if self.config.metrics_listen is not None:
            self._metrics = await self._serve_metrics(self.config.metrics_listen)
        critical = [recorder, publisher, *pollers, *housekeeping]
        stop_wait = asyncio.create_task(self.stop_event.wait())
        done, _ = await asyncio.wait([stop_wait, *critical], return_when=asyncio.FIRST_COMPLETED)
        exit_code = 0
        for task in done:
            if task is not stop_wait:
                # A task of ours ended on its own: that is a bug, not a condition to live with.
                error = task.exception() if not task.cancelled() else None
                log.error("%s stopped unexpectedly: %r", task.get_name(), error)
                exit_code = 1
        stop_wait.cancel()
        try:
            await self._shutdown(recorder, publisher, pollers, housekeeping)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if self._metrics is not None:
                await self._metrics.close()
            # Always: an open spool keeps aiosqlite's worker thread, and so the process, alive.
            await self.spool.close()
        return exit_code

    async def _serve_metrics(self, listen: str) -> MetricsServer | None:
        """``/metrics`` on ``listen``, served by the event loop. A listener that cannot bind
        is logged and left out: the agent's job is the readings, not its metrics."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.process_collector import ProcessCollector

        from common.exposition import MetricsServer

        from .observe import AgentExporter

        registry = CollectorRegistry(auto_describe=False)
        registry.register(AgentExporter(self.spool, self.publisher.link, self.runners,
                                        self.recorder, self.publisher))
        ProcessCollector(registry=registry)
        server = MetricsServer(listen, registry)
        try:
            host, port = await server.start()
        except OSError as exc:
            log.error("metrics: cannot listen on %s: %s; running without /metrics", listen,
                      exc.strerror or exc)
            return None
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        log.info("metrics: serving http://%s/metrics", where)
        return server

    async def _shutdown(
        self, recorder: asyncio.Task[None], publisher: asyncio.Task[None],
        pollers: list[asyncio.Task[None]], housekeeping: list[asyncio.Task[None]],
    ) -> None:
        deadline = time.monotonic() + self.config.shutdown_timeout_s
        self.notifier.stopping("stopping: flushing the spool")
        log.info("stopping: flushing readings (up to %.1f s)", self.config.shutdown_timeout_s)
        self._poll_stop.set()
        if pollers:
            _, late = await asyncio.wait(pollers, timeout=POLLER_GRACE_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*pollers, return_exceptions=True)
        try:
            # Cancelling the recorder mid-batch would lose drafts it already took from the
            # queue; let it spool everything first, then cancel it while it idles.
            if not recorder.done():
                await asyncio.wait_for(self.recorder.drained(),
                                       timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            log.error("stopping: could not spool %d queued reading(s) in time",
                      self.recorder.queue.qsize())
        recorder.cancel()
        await asyncio.gather(recorder, return_exceptions=True)
        self.publisher.stop(deadline)
        try:
            await asyncio.wait_for(publisher, timeout=max(0.1, deadline - time.monotonic()) + 2)
        except TimeoutError:
            log.warning("stopping: publisher did not finish in time")
        for task in housekeeping:
            task.cancel()
        await asyncio.gather(*housekeeping, return_exceptions=True)
        for runner in self.runners:
            runner.close()
        self._write_status()
        log.info("stopped: %d reading(s) left in the spool for the next start", self.spool.depth)
        await self.spool.close()
        # Do not wait for a poll stuck in a device read: its thread ends with its timeout.
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.notifier.close()

    async def _status_loop(self) -> None:
        while True:
            self._write_status()
            self._faults.review(r.health for r in self.runners)
            await asyncio.sleep(self.config.status_interval_s)

    def _write_status(self) -> None:
        snap = self.snapshot()
        self.notifier.status(status_line(snap))
        try:
            self.config.state_dir.mkdir(parents=True, exist_ok=True)
            write_status_file(self.config.status_file, snap)
        except OSError as exc:
            log.debug("cannot write %s: %s", self.config.status_file, exc)

    async def _watchdog_loop(self) -> None:
        interval = self.notifier.watchdog_interval_s
        assert interval is not None
        while True:
            # Sent from the event loop itself: if the loop hangs, systemd stops hearing from
            # us and restarts the agent.
            self.notifier.watchdog()
            await asyncio.sleep(interval)


def _builder(sensor: SensorConfig) -> Callable[[], Driver]:
    return lambda: build_driver(sensor)


def _build_drivers(config: AgentConfig) -> dict[str, Driver]:
    """Build every enabled sensor's driver; settings errors stop the start (exit 2).

    Any other failure leaves the sensor without a driver; its runner retries and counts.
    """
    from hardware.errors import HardwareConfigError

    drivers: dict[str, Driver] = {}
    problems: list[Problem] = []
    for sensor in config.sensors:
        if not sensor.enabled:
            continue
        try:
            drivers[sensor.name] = build_driver(sensor)
        except HardwareConfigError as exc:
            problems += driver_problems(config, sensor, exc)
        except Exception as exc:
            log.warning("sensor %s: driver could not start (%r); retrying while running",
                        sensor.name, exc)
    if problems:
        for driver in drivers.values():
            driver.close()
        raise ConfigError(str(config.path), problems)
    return drivers
