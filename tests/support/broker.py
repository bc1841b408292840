"""The tests' private Mosquitto on a free port.

No test uses the machine's system broker: each broker here has its own port, its own
configuration file and its own persistence directory, so the tests run on a bare machine and
can stop, restart, kill and reconfigure their broker to inject faults. (The demo and the
benchmarks run their own, in demo/broker.py; the tests import nothing from demo/.)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Broker", "free_port", "mosquitto_binary", "terminate", "wait_for_port"]


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; reap and return the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def mosquitto_binary() -> str:
    # Debian installs the broker in /usr/sbin, which is not on every user's PATH.
    candidates = (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        "mosquitto is not installed: run `make test` or `make demo` (they install it) or "
        "`apt-get install mosquitto mosquitto-clients`"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


@dataclass
class Broker:
    """One private Mosquitto. ``extra_conf`` lines are appended to the generated config."""

    workdir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    extra_conf: str = ""
    persistence: bool = True
    listener_conf: str | None = None  # replaces the plain listener (e.g. a TLS listener)
    full_conf: str | None = None  # a complete configuration, used verbatim (a shipped config)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def write_conf(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.full_conf is not None:
            self.conf_path.write_text(self.full_conf)
            return
        lines = [
            f"listener {self.port} {self.host}" if self.listener_conf is None
            else self.listener_conf,
            "allow_anonymous true" if self.listener_conf is None else "",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            # Run as root, mosquitto drops to the `mosquitto` user and then cannot write the
            # test's persistence directory; keep the test's own user instead.
            "user root" if os.geteuid() == 0 else "",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "message_size_limit 0",
            "persistent_client_expiration 1d",
            self.extra_conf,
        ]
        self.conf_path.write_text("\n".join(line for line in lines if line) + "\n")

    def start(self) -> Broker:
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.write_conf()
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_port(self.host, self.port)
        except TimeoutError:
            self.stop()
            log = self.log_path.read_text() if self.log_path.exists() else ""
            raise RuntimeError(f"mosquitto did not start on port {self.port}:\n{log}") from None
        return self

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        terminate(self.proc, 10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
