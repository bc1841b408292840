"""``ledger-collector run``: wire store, registry, workers, MQTT and pipeline together.

Start-up restores everything from the store (device states, next reading id, unsealed
readings, chain head), so a restart after a crash continues exactly where the last commit left
off; the broker re-delivers whatever was not acknowledged. One collector writes a ledger at a
time: ``run`` holds :class:`collector.ledger.lock.LedgerLock` from start to exit. On a
PostgreSQL ledger (``database`` is a ``postgresql://`` URL) any number of collectors run at
once, each with its own MQTT client id, coordinated by row locks in the database
(:mod:`collector.ingest.cluster`, :mod:`collector.ledger.pg_cluster`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import time
from typing import TYPE_CHECKING

from collector.admission.checks import DeviceChecks, KnownReading
from collector.admission.registry import RegistrySnapshot
from collector.admission.workers import WorkerPool
from collector.config import CollectorConfig
from collector.errors import ConfigError, UsageError
from collector.ingest.cluster import ClusterPipeline
from collector.ingest.mqtt import Inbox, MqttIngest
from collector.ingest.pipeline import Pipeline
from collector.ingest.presence import PresenceBoard, presence_path
from collector.ingest.receipts import ReceiptDesk
from collector.ledger.key_rotation import complete_rotation
from collector.ledger.logkeys import load_tree_log
from collector.ledger.opening import is_postgres_url, ledger_lock, local_path, open_store
from collector.ledger.pg_cluster import ClusterLedger
from collector.ledger.pg_store import PostgresStore
from collector.ledger.sealer import Sealer
from collector.ledger.statement_log import StatementLog
from collector.ledger.store import LedgerStore
from collector.logs import event
from collector.metrics import Metrics
from collector.observe.head import SharedHead
from collector.witnessing.submitter import Witnessing
from common.systemd import Notifier
from provenance.envelope import Envelope
from provenance.errors import ProvenanceError
from provenance.keyfile import load_private_key
from provenance.keys import PrivateKey

if TYPE_CHECKING:  # prometheus_client is imported only when metrics are on
    from common.exposition import Health, MetricsServer

__all__ = ["load_collector_key", "run_collector"]

log = logging.getLogger("collector.service")

#: How often a cluster member reads the shared log head while it serves metrics.
HEAD_POLL_S = 1.0


async def load_collector_key(store: LedgerStore, key_file: str) -> PrivateKey:
    """The collector's signing key, checked against the key the ledger was created with."""
    stored = await store.collector_public_key()
    if stored is None:
        raise UsageError("this ledger has no collector key; run `ledger-collector init` first")
    try:
        key = load_private_key(key_file)
    except ProvenanceError as exc:
        raise ConfigError(f"collector key: {exc.diagnostics()}") from None
    if key.kid != stored.kid:
        pending = await store.pending_key_rotation()
        hint = ""
        if pending is not None and pending.new_kid == key.kid:
            hint = "; a key rotation is pending: start the collector (`run`) once to complete it"
        elif key.kid in {r.key.kid for r in await store.key_history()}:
            hint = ("; this key was retired by a key rotation: copy the new key files (the key, "
                    "its .note and .vkey) from the machine that ran `ledger-collector key "
                    "rotate`")
        raise ConfigError(
            f"{key_file} (key id {key.kid.hex()}) is not the collector key of this ledger "
            f"({stored.kid_hex}){hint}"
        )
    return key


async def run_collector(config: CollectorConfig, *, install_signals: bool = True) -> None:
    """Run until SIGTERM/SIGINT, then drain, commit, acknowledge and seal what was received.

    Refused (:class:`UsageError`) while another collector runs on the same ledger.
    """
    cluster = is_postgres_url(config.database)
    store = await open_store(config.database, collector=config.mqtt.client_id)
    try:
        lock = ledger_lock(config.database)
        lock.__enter__()  # SQLite: one writer; PostgreSQL: row locks in the database instead
    except BaseException:
        await store.close()
        raise
    pool = WorkerPool(config.worker_count)
    ingest: MqttIngest | None = None
    witnessing = Witnessing(config.witnessing, config.database)
    metrics_server: MetricsServer | None = None
    # A cluster member reads the shared log head from the database for /metrics and /health.
    head = (SharedHead(store.checkpoint, HEAD_POLL_S)
            if cluster and config.metrics.listen is not None else None)
    notifier = Notifier()
    try:
        rotated = await complete_rotation(store, config.key_file)
        key = await load_collector_key(store, config.key_file)
        if rotated:
            event(log, "key_rotated", collector_kid=key.kid.hex())
        version = await store.registry_version()
        keys = await store.device_keys()
        async with store.snapshot():  # one view of head and blocks (others may be sealing)
            tree_log = await load_tree_log(store, key, config.key_file)
        if cluster:
            # Device state is read under row locks per batch, ids are given when sealed.
            states, next_id = {}, 1
            sealer = Sealer(key, None, [], size=config.blocks.size,
                            age_ms=int(config.blocks.age * 1000))
        else:
            states = await store.device_states()
            next_id = await store.next_reading_id()
            sealer = Sealer(key, await store.last_block(), await store.pending_leaves(),
                            size=config.blocks.size, age_ms=int(config.blocks.age * 1000),
                            log=tree_log)

        async def lookup(device_id: str, seq: int) -> KnownReading | None:
            record = await store.find_reading(device_id, seq)
            if record is None:
                return None
            digest = hashlib.sha256(record.envelope).digest()
            try:
                prev = Envelope.decode(record.envelope).reading().prev
            except ProvenanceError:
                prev = b""  # a damaged stored row never vouches for a neighbour; audit names it
            return KnownReading(record.id, digest, prev, record.envelope)

        checks = DeviceChecks(states, lookup,
                              max_skew_ms=int(config.ingest.max_clock_skew * 1000))
        await pool.start()
        loop = asyncio.get_running_loop()
        inbox = Inbox(loop)
        presence = PresenceBoard(
            local_path(config.database, ".presence.json", config.mqtt.client_id) if cluster
            else presence_path(config.database))
        ingest = MqttIngest(config.mqtt, inbox, expect_session=next_id > 1 or bool(states),
                            presence=presence)
        kind = ClusterPipeline if cluster else Pipeline
        pipeline = kind(
            config=config, store=store, inbox=inbox, acker=ingest, pool=pool, sealer=sealer,
            checks=checks, registry=RegistrySnapshot.of(version, keys),
            next_reading_id=next_id, on_sealed=witnessing.sealed,
            # In a cluster, ids are given at sealing (to statements too), and the statements
            # are read again under the cluster's lock whenever the registry changes.
            statements=await StatementLog.load(
                store, key, [r.key for r in await store.key_history()]),
            metrics=Metrics(),
            receipts=(ReceiptDesk(store, key, ingest.publish) if config.mqtt.receipts
                      else None),
        )
        if isinstance(pipeline, ClusterPipeline):
            assert isinstance(store, PostgresStore)
            pipeline.configure_cluster(ClusterLedger(store), key, tree_log.origin,
                                       tree_log.signers)
        await witnessing.start()  # its own ledger connection; never in the ingest path
        if config.metrics.listen is not None:
            if head is not None:
                await head.start()
            metrics_server = await _metrics_server(config, pipeline, ingest, witnessing, head)

        stopping: list[asyncio.Task[None]] = []

        async def drain_then_stop() -> None:
            assert ingest is not None
            ingest.stop_receiving()
            # Wait until the MQTT thread has certainly stopped reading, so the pipeline's last
            # look at the inbox sees every message that will ever be in it.
            await loop.run_in_executor(None, ingest.receiving_stopped.wait, 5.0)
            pipeline.stop()

        def request_stop() -> None:
            if not stopping:
                notifier.stopping("draining received messages, then sealing")
                event(log, "stopping", detail="draining received messages, then sealing")
                stopping.append(loop.create_task(drain_then_stop()))

        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, request_stop)
        event(log, "collector_started", database=config.database, collector_kid=key.kid.hex(),
              workers=pool.workers, devices=len(states), next_reading_id=next_id,
              next_block=sealer.next_height, unsealed=len(sealer.pending),
              block_size=config.blocks.size, block_age_s=config.blocks.age)
        ingest.start()
        housekeeping = loop.create_task(_housekeeping(notifier, ingest, presence, sealer))
        try:
            await pipeline.run()
        finally:
            housekeeping.cancel()
            presence.save()
        await witnessing.drain(timeout=5.0)  # the last block's checkpoint, if they are up
        await asyncio.get_running_loop().run_in_executor(None, ingest.close)
        # Every message received was acknowledged or is known to come back (stale: received
        # on a connection that has since ended), so `unacked` ends at 0.
        event(log, "collector_stopped", next_block=sealer.next_height,
              received=ingest.received, acked=ingest.acked, stale_acks=ingest.stale_acks,
              unacked=ingest.unacked, connects=ingest.connects)
    finally:
        await witnessing.close()
        if metrics_server is not None:
            await metrics_server.close()
        if head is not None:
            await head.close()
        if ingest is not None:
            await asyncio.get_running_loop().run_in_executor(None, ingest.close)
        await pool.close()
        await store.close()
        lock.__exit__(None, None, None)
        notifier.close()


async def _metrics_server(config: CollectorConfig, pipeline: Pipeline, ingest: MqttIngest,
                          witnessing: Witnessing, head: SharedHead | None) -> MetricsServer:
    """Serve ``/metrics`` and ``/health`` on ``metrics.listen`` (ConfigError if it cannot bind)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.process_collector import ProcessCollector

    from collector.observe.exporter import LedgerExporter, broker_source, witness_source
    from collector.observe.health import assess
    from common.exposition import MetricsServer

    assert config.metrics.listen is not None
    registry = CollectorRegistry(auto_describe=False)
    live = pipeline.live if head is None else lambda: head.apply(pipeline.live())
    exporter = LedgerExporter(pipeline.metrics, live)
    exporter.add_source(broker_source(ingest))
    exporter.add_source(witness_source(witnessing.progress))
    registry.register(exporter)
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, resident memory, fds
    started_ms = time.time_ns() // 1_000_000

    def health() -> Health:
        return assess(live(), now_ms=time.time_ns() // 1_000_000,
                      started_ms=started_ms, block_age_s=config.blocks.age)

    server = MetricsServer(config.metrics.listen, registry, health)
    try:
        host, port = await server.start()
    except OSError as exc:
        raise ConfigError(f"metrics.listen {config.metrics.listen}: cannot listen: "
                          f"{exc.strerror or exc}") from None
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    event(log, "metrics_listening", address=where, url=f"http://{where}/metrics")
    return server


async def _housekeeping(notifier: Notifier, ingest: MqttIngest, presence: PresenceBoard,
                        sealer: Sealer) -> None:
    """systemd readiness, watchdog and status (``Type=notify``), and the presence board.

    The watchdog is fed only while the event loop runs this task *and* the MQTT thread is
    alive, so systemd restarts a collector whose loop hangs or whose MQTT thread died. (A broker
    that is down is not a reason: the collector waits for it, with backoff, and says so.)
    """
    notifier.ready("started; connecting to the broker")
    interval = notifier.watchdog_interval_s
    tick = min(interval, 2.0) if interval else 2.0
    since_save = 0.0
    while True:
        if interval and ingest.running:
            notifier.watchdog()
        notifier.status(f"broker {'connected' if ingest.connected.is_set() else 'not connected'}"
                        f"; {ingest.acked} readings acknowledged; next block {sealer.next_height}")
        since_save += tick
        if since_save >= 2.0:
            since_save = 0.0
            presence.save()
        await asyncio.sleep(tick)
