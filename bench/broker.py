"""The private Mosquitto a benchmark runs against, configured like the shipped broker.

The process handling is ``demo.broker.Broker`` (the demo's broker); this module
only writes the configuration. It follows `deploy/mosquitto/sensorledger.conf` where that affects
throughput (the in-flight window, unbounded queues for offline persistent sessions, saving the
queue every second); TLS and the ACL are left out, so the figures measure our code and the
broker's message handling, not TLS.
"""

from __future__ import annotations

import os
from pathlib import Path

from demo.broker import Broker, free_port

__all__ = ["SHIPPED_MAX_INFLIGHT", "Broker", "bench_broker"]

# deploy/mosquitto/sensorledger.conf: the window the collector's delayed acks run in.
SHIPPED_MAX_INFLIGHT = 1000


def bench_broker(workdir: Path, *, max_inflight: int = SHIPPED_MAX_INFLIGHT) -> Broker:
    """A not-yet-started broker with its own port and persistence directory in ``workdir``."""
    port = free_port()
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        # Persistence as shipped: the queue is saved every second, so a broker crash loses
        # little of what waits for a collector that is down.
        "persistence true",
        "autosave_interval 1",
        "autosave_on_changes false",
        f"persistence_location {workdir}/",
        f"log_dest file {workdir / 'mosquitto.log'}",
        "log_type error",
        "log_type warning",
        # As root, mosquitto would drop to the `mosquitto` user and lose the workdir.
        "user root" if os.geteuid() == 0 else "",
        f"max_inflight_messages {max_inflight}",
        "max_queued_messages 0",
        "max_queued_bytes 0",
        "persistent_client_expiration 1d",
    ]
    conf = "\n".join(line for line in lines if line) + "\n"
    workdir.mkdir(parents=True, exist_ok=True)
    return Broker(workdir=workdir, port=port, full_conf=conf)
