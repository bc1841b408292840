"""Witness processes for the tests: ``python -m witness serve`` on a free loopback port, each
with its own key, config and state file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.broker import free_port, wait_for_port
from tests.support.collector import REPO

__all__ = ["WitnessProcess", "post"]


def witness_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "witness", *args], cwd=REPO, text=True,
                            capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                            timeout=60)
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


@dataclass
class WitnessProcess:
    root: Path
    name: str
    origin: str
    log_vkeys: list[str]

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.vkey = witness_cli("init", self.name, "--key", str(self.key_file)).stdout.strip()
        keys = ", ".join(f'"{k}"' for k in self.log_vkeys)
        self.config.write_text(
            f'key_file = "witness.key"\ndatabase = "state.db"\nlisten = "127.0.0.1:{self.port}"\n'
            f'\n[[log]]\norigin = "{self.origin}"\nvkeys = [{keys}]\n')

    @property
    def key_file(self) -> Path:
        return self.root / "witness.key"

    @property
    def config(self) -> Path:
        return self.root / "witness.toml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WitnessProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "witness", "serve", "-c", str(self.config)], cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
            stdout=subprocess.DEVNULL, stderr=open(self.root / "stderr.log", "a"))  # noqa: SIM115
        wait_for_port("127.0.0.1", self.port, timeout=30)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def post(url: str, body: bytes, timeout: float = 10) -> tuple[int, str, bytes]:
    """POST to ``url``/add-checkpoint: (status, content type, body)."""
    request = urllib.request.Request(url + "/add-checkpoint", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()
