"""The demo's witnesses: two ``ledger-witness`` services, each with its own key and state, as
two other parties would run them; the collector config that names them, and the verifier's
policy (the log's keys, both witnesses, quorum 2)."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .broker import free_port
from .processes import Processes

NAMES = ("witness.agency.example/demo", "witness.owner.example/demo")


@dataclass
class DemoWitnesses:
    root: Path
    bin_dir: Path
    vkeys: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    @property
    def collector_config(self) -> Path:
        return self.root / "collector.toml"

    @property
    def policy(self) -> Path:
        return self.root / "witnessed.policy"

    def start(self, procs: Processes, log_vkey_file: Path) -> None:
        log_vkeys = log_vkey_file.read_text().split()
        origin = log_vkeys[0].split("+", 1)[0]
        keys = ", ".join(f'"{k}"' for k in log_vkeys)
        for n, name in enumerate(NAMES, start=1):
            home = self.root / f"witness-{n}"
            home.mkdir(parents=True, exist_ok=True)
            vkey = subprocess.run([str(self.bin_dir / "ledger-witness"), "init", name, "--key",
                                   str(home / "witness.key")], check=True, text=True,
                                  capture_output=True).stdout.strip()
            port = free_port()
            (home / "witness.toml").write_text(
                f'key_file = "witness.key"\ndatabase = "state.db"\n'
                f'listen = "127.0.0.1:{port}"\n\n[[log]]\norigin = "{origin}"\n'
                f"vkeys = [{keys}]\n")
            child = procs.start(f"witness-{n}", [str(self.bin_dir / "ledger-witness"), "serve",
                                                 "-c", str(home / "witness.toml")])
            _wait_port(port, child.running)
            self.vkeys.append(vkey)
            self.urls.append(f"http://127.0.0.1:{port}")
        self.collector_config.write_text("[witnessing]\nquorum = 2\n" + "".join(
            f'\n[[witnessing.witness]]\nurl = "{u}"\nvkey = "{v}"\n'
            for u, v in zip(self.urls, self.vkeys, strict=True)))
        self.policy.write_text("".join(f"log {k}\n" for k in log_vkeys) + "".join(
            f"witness {name.split('.')[1]} {v}\n" for name, v in zip(NAMES, self.vkeys,
                                                                     strict=True))
            + "group both 2 agency owner\nquorum both\n")


def _wait_port(port: int, running: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    from .run import DemoError

    raise DemoError(f"a witness did not start listening on port {port}")
