"""The demo's private Mosquitto on a free port (also what the benchmarks run against).

It does not use the machine's system broker: it has its own port, configuration file and
persistence directory, so the demo runs on a bare machine. ``full_conf`` replaces the generated
configuration (bench/broker.py writes one like the shipped broker's).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .processes import terminate

__all__ = ["Broker", "free_port"]


def mosquitto_binary() -> str:
    # Debian installs the broker in /usr/sbin, which is not on every user's PATH.
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("mosquitto is not installed: `make demo` installs it, or "
                       "`apt-get install mosquitto`")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    workdir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    full_conf: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def _conf(self) -> str:
        if self.full_conf is not None:
            return self.full_conf
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.workdir}/",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
            # As root, mosquitto would drop to the `mosquitto` user and lose the workdir.
            "user root" if os.geteuid() == 0 else "",
            "max_queued_messages 0",
            "max_inflight_messages 0",
        ]
        return "\n".join(line for line in lines if line) + "\n"

    def start(self) -> Broker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self._conf())
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not start on port {self.port} "
                           f"(see {self.workdir / 'mosquitto.log'})")

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 10)
            self.proc = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
