"""The demo's side of the collector: the `ledger-collector` commands a user would type."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .processes import Processes

COLLECTOR = "collector"


LOG_NAME = "sensorledger.example/demo"


@dataclass
class LedgerCli:
    root: Path
    bin_dir: Path

    @property
    def db(self) -> Path:
        return self.root / "ledger.db"

    @property
    def key(self) -> Path:
        return self.root / "collector-key.pem"

    @property
    def public_key(self) -> Path:
        return self.root / "collector-key.pub.pem"

    @property
    def vkey(self) -> Path:
        """The log's note verifier keys (Ed25519 and P-256), written by `init`."""
        return self.root / "collector-key.vkey"

    @property
    def location(self) -> str:
        """The ledger as `--db` takes it."""
        return str(self.db)

    def _argv(self, *args: object) -> list[str]:
        return [str(self.bin_dir / "ledger-collector"), *map(str, args)]

    def _run(self, *args: object, stdin: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self._argv(*args), input=stdin, capture_output=True, text=True)
        if check and result.returncode != 0:
            from .run import DemoError

            raise DemoError(f"`ledger-collector {' '.join(map(str, args))}` failed "
                            f"({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    # -- set-up and service ------------------------------------------------------------------
    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._run("init", "--db", self.db, "--key", self.key, "--log-name", LOG_NAME)

    def add_device(self, device_id: str, pem: str) -> None:
        self._run("devices", "add", "--db", self.db, device_id, "-", stdin=pem)

    def start(self, procs: Processes, broker_url: str, timeout: float = 15.0) -> None:
        child = procs.start(COLLECTOR, self._argv(
            "run", "--db", self.db, "--key", self.key, "--broker", broker_url,
            "--client-id", "sensorledger-demo-collector", "--block-age", "1"))
        deadline = time.monotonic() + timeout
        while '"event":"broker_connected"' not in child.tail(50):
            if not child.running() or time.monotonic() > deadline:
                from .run import DemoError

                raise DemoError(f"the collector did not connect to the broker:\n{child.tail()}")
            time.sleep(0.1)
        time.sleep(0.3)  # its QoS 1 subscription follows the connection

    def stop(self, procs: Processes) -> None:
        procs.stop(COLLECTOR, timeout=20)

    # -- observation -----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        result = self._run("stats", "--db", self.db, "--json", check=False)
        if result.returncode != 0:
            return {}
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def progress_line(self) -> str:
        stats = self.stats()
        if not stats:
            return "collector: starting"
        per_device = "  ".join(
            f"{device} {info.get('accepted', 0)}"
            for device, info in sorted(stats.get("devices", {}).items())
        )
        return (f"{stats.get('readings', 0):>5} readings, {stats.get('blocks', 0):>3} blocks "
                f"sealed, {stats.get('quarantined', 0)} quarantined | {per_device}")

    def wait_until_settled(self, timeout: float = 20.0) -> None:
        """Wait until the reading count stops moving and everything is sealed."""
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            stats = self.stats()
            count = int(stats.get("readings", 0))
            if count == last and stats.get("unsealed", 1) == 0:
                return
            last = count
            time.sleep(1.5)

    def report(self) -> str:
        return self._run("stats", "--db", self.db).stdout.rstrip()

    # -- the auditor's checks ------------------------------------------------------------------
    def save_checkpoint(self, path: Path, out: IO[str]) -> None:
        """The log's latest signed checkpoint, kept where an auditor can hold the log to it."""
        note = self._run("checkpoint", "--db", self.db).stdout
        path.write_text(note)
        out.write(_indent(note))

    def audit(self, out: IO[str], checkpoint: Path) -> bool:
        result = self._run("audit", "--db", self.db, "--collector-key", self.public_key,
                           "--checkpoint", checkpoint, "--no-progress", check=False)
        out.write(_indent(result.stdout + result.stderr))
        return result.returncode == 0

    def prove_one_arc_event(self, device_id: str, path: Path, out: IO[str]) -> bool:
        rows = self._run("readings", "--db", self.db, "--device", device_id,
                         "--format", "jsonl").stdout.splitlines()
        events = [r for r in map(json.loads, rows)
                  if r.get("event", {}).get("type") == "arc" and r.get("block") is not None]
        if not events:
            out.write("    no sealed arc event to prove (run the demo longer)\n")
            return False
        event = events[-1]
        out.write(f"    arc on channel {event['event'].get('channel')} at {event['time_utc']}: "
                  f"device {device_id} seq {event['seq']}, block {event['block']}\n")
        rendered = self._run("proof", "--db", self.db, device_id, event["seq"], "-o", path,
                             "--json").stdout
        path.with_name(path.name + ".json").write_text(rendered)
        # The auditor's check needs no database: only the file and the log's verifier keys.
        result = self._run("verify-proof", path, "--policy", self.vkey, check=False)
        out.write(_indent(result.stdout + result.stderr))
        return result.returncode == 0


    def show_private_reading(self, device_id: str, reader_key: Path, path: Path,
                             out: IO[str]) -> bool:
        """Reveal one sealed oximeter reading with the reader key, then prove it offline
        without disclosing anything."""
        rows = self._run("readings", "--db", self.db, "--device", device_id,
                         "--format", "jsonl").stdout.splitlines()
        sealed = [r for r in map(json.loads, rows)
                  if r.get("commitment") and r.get("block") is not None]
        if not sealed:
            out.write("    no sealed private reading to show (run the demo longer)\n")
            return False
        seq = sealed[-1]["seq"]
        out.write(f"    in the ledger: {device_id} seq {seq}, kind {sealed[-1]['kind']}, "
                  f"measurements {sealed[-1]['measurements']}, commitment "
                  f"{sealed[-1]['commitment'][:16]}…\n")
        out.write(f"    ledger-collector reveal {device_id} {seq} --reader-key {reader_key.name}\n")
        revealed = self._run("reveal", "--db", self.db, device_id, seq, "--reader-key",
                             reader_key, check=False)
        out.write(_indent(revealed.stdout + revealed.stderr))
        self._run("proof", "--db", self.db, device_id, seq, "-o", path)
        out.write("    its proof file, checked offline (it holds no value):\n")
        result = self._run("verify-proof", path, "--policy", self.vkey, check=False)
        out.write(_indent(result.stdout + result.stderr))
        return revealed.returncode == 0 and result.returncode == 0


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.splitlines())


@dataclass
class ClusterLedgerCli(LedgerCli):
    """The ledger in PostgreSQL, with ``collectors`` collectors in one shared-subscription
    group (each its own MQTT client id), sealing in turn under the log-head lock."""

    url: str = ""
    collectors: int = 2

    @property
    def db(self) -> Path:
        return Path(self.url)  # never printed: _argv passes the URL itself

    @property
    def location(self) -> str:
        return self.url

    def _argv(self, *args: object) -> list[str]:
        return [str(self.bin_dir / "ledger-collector"),
                *(self.url if isinstance(a, Path) and a == self.db else str(a) for a in args)]

    def start(self, procs: Processes, broker_url: str, timeout: float = 15.0) -> None:
        for n in range(1, self.collectors + 1):
            name = f"{COLLECTOR}-{n}"
            child = procs.start(name, self._argv(
                "run", "--db", self.url, "--key", self.key, "--broker", broker_url,
                "--client-id", f"sensorledger-demo-collector-{n}", "--share-group",
                "collectors", "--block-age", "1"),
                env={"SENSORLEDGER_STATE_DIR": str(self.root)})
            deadline = time.monotonic() + timeout
            while '"event":"broker_connected"' not in child.tail(50):
                if not child.running() or time.monotonic() > deadline:
                    from .run import DemoError

                    raise DemoError(f"{name} did not connect to the broker:\n{child.tail()}")
                time.sleep(0.1)
        time.sleep(0.3)

    def stop(self, procs: Processes) -> None:
        for n in range(1, self.collectors + 1):
            procs.stop(f"{COLLECTOR}-{n}", timeout=20)
