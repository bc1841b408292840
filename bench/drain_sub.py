"""How fast the broker alone can hand over the backlog: ``mosquitto_sub`` draining it.

mosquitto_sub is C, acknowledges each message on receipt and writes payloads to /dev/null: this
is the ceiling any consumer on this machine could reach, broker included.
"""

from __future__ import annotations

import shutil
import subprocess
import time

from .backlog import TOPIC_FILTER

__all__ = ["mosquitto_sub_drain"]


def mosquitto_sub_drain(
    host: str, port: int, client_id: str, count: int, *, timeout: float = 300.0
) -> float:
    """Drain ``count`` queued messages from ``client_id``'s persistent session; return seconds.

    The time runs from process start to exit, so it includes the connection (milliseconds).
    """
    binary = shutil.which("mosquitto_sub")
    if binary is None:
        raise RuntimeError("mosquitto_sub is not installed: `apt-get install mosquitto-clients`")
    argv = [binary, "-h", host, "-p", str(port), "-c", "-i", client_id, "-q", "1",
            "-C", str(count), "-t", TOPIC_FILTER]
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, timeout=timeout)
    return time.perf_counter() - start
