"""The live demo: broker, collector, five agents on emulated devices, then audit and proof.

With ``--cluster`` (``make demo-cluster``): a private PostgreSQL (initdb + pg_ctl in a temporary
folder) holds the ledger and two collectors share the readings through an MQTT 5 shared
subscription, sealing in turn; the read-only view serves that ledger, and the same checks run.

Everything a user would type is run as the user would run it: ``sensor-agent keygen`` and
``sensor-agent pubkey`` for each device, ``ledger-collector devices add`` to enrol it,
``ledger-collector run`` and ``sensor-agent run`` as services, then ``ledger-collector audit``,
``proof`` and ``verify-proof``. Exit status 0 only when the audit and the proof check pass.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .broker import Broker
from .devices import DEVICES, DemoDevice, agent_config
from .ledger import ClusterLedgerCli, LedgerCli
from .mirror import DemoMirror
from .postgres import LocalPostgres
from .processes import Processes
from .view import check_view, start_view
from .witnesses import DemoWitnesses

BIN = Path(sys.executable).parent
#: The proof check that runs in a browser (docs/verify-in-browser.md).
VERIFY_PAGE = Path(__file__).resolve().parents[1] / "collector" / "web" / "static" / "verify.html"


class DemoError(Exception):
    """A step of the demo failed; the message says which and where to look."""


@dataclass
class Demo:
    root: Path
    seconds: float
    out: Any = field(default=sys.stdout)
    cluster: bool = False
    postgres: LocalPostgres | None = field(init=False, default=None)
    procs: Processes = field(init=False)
    broker: Broker = field(init=False)
    ledger: LedgerCli = field(init=False)
    witnesses: DemoWitnesses = field(init=False)
    mirror: DemoMirror = field(init=False)
    ports: dict[str, str] = field(default_factory=dict)
    view_listen: str = "127.0.0.1:0"
    keep_serving: bool = False
    view_url: str | None = None

    def __post_init__(self) -> None:
        self.procs = Processes(self.root / "logs")
        self.broker = Broker(workdir=self.root / "broker")
        self.ledger = LedgerCli(self.root / "collector", BIN)
        if self.cluster:
            self.postgres = LocalPostgres()
        self.witnesses = DemoWitnesses(self.root / "witnesses", BIN)
        self.mirror = DemoMirror(self.root / "mirror", BIN)

    # -- output ---------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, text: str) -> None:
        self.say(f"==> {text}")

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> bool:
        try:
            self.start_broker()
            if self.postgres is not None:
                self.start_postgres(self.postgres)
            self.start_collector()
            self.start_view()
            self.enrol_agents()
            self.make_reader()
            self.start_devices()
            self.watch()
            self.stop_services()
            ok = self.check()
            if self.keep_serving:
                self.serve_until_interrupted()
        finally:
            self.procs.close()
            self.broker.stop()
            if self.postgres is not None:
                self.postgres.stop()
        return ok

    def start_postgres(self, postgres: LocalPostgres) -> None:
        self.step("starting a private PostgreSQL (initdb, pg_ctl) in a temporary folder")
        postgres.start()
        url = postgres.create_database("sensorledger")
        self.ledger = ClusterLedgerCli(self.root / "collector", BIN, url=url)
        self.say(f"    {url} (data in {postgres.root})")

    def start_broker(self) -> None:
        self.step("starting a private Mosquitto")
        self.broker.start()
        self.say(f"    {self.broker.url} (config {self.broker.conf_path})")

    def start_collector(self) -> None:
        # First, so that its persistent session exists before any device publishes.
        self.step("creating the collector key and ledger; starting the collector")
        self.ledger.init()
        self.step("starting two witnesses (each its own key and state), as two other parties "
                  "would: ledger-witness init, ledger-witness serve")
        self.witnesses.start(self.procs, self.ledger.vkey)
        for url, vkey in zip(self.witnesses.urls, self.witnesses.vkeys, strict=True):
            self.say(f"    {url}  {vkey[:60]}…")
        self.ledger.start(self.procs, self.broker.url, config=self.witnesses.collector_config)
        where = (f"two collectors, shared subscription $share/collectors/..., ledger "
                 f"{self.ledger.url}" if isinstance(self.ledger, ClusterLedgerCli)
                 else f"ledger {self.ledger.db}")
        self.say(f"    {where}, blocks of up to 1,000 readings or 1 s; every checkpoint goes to "
                 "both witnesses (quorum 2)")
        if self.ledger.metrics_url:
            base = self.ledger.metrics_url.removesuffix("/metrics")
            self.say(f"    Prometheus metrics {base}/metrics, health {base}/health")

    def start_view(self) -> None:
        self.step("starting the read-only view: ledger-collector serve")
        try:
            _, self.view_url = start_view(self.procs, BIN, self.ledger.location,
                                          self.root / "view-cache", self.view_listen)
        except (RuntimeError, OSError) as exc:
            raise DemoError(str(exc)) from None
        self.say(f"    view: {self.view_url}  (pages, plots, proofs; JSON API under "
                 f"{self.view_url}api/v1/)")

    def serve_until_interrupted(self) -> None:
        self.step(f"the view stays up at {self.view_url} (--keep-serving); Ctrl-C to stop")
        try:
            while self.procs.children.get("view") and self.procs.children["view"].running():
                time.sleep(1)
        except KeyboardInterrupt:
            self.say("    stopping the view")

    @property
    def reader_key(self) -> Path:
        return self.root / "readers" / "clinic.pem"

    @property
    def reader_pub(self) -> Path:
        return self.reader_key.with_name(self.reader_key.name + ".pub")

    def make_reader(self) -> None:
        self.step("making the clinic's reader key for the oximeter's private readings: "
                  "sensor-agent reader-keygen")
        self._cmd([BIN / "sensor-agent", "reader-keygen", self.reader_key])
        self.say(f"    {self.reader_key} (public half {self.reader_pub.name} goes in the "
                 "oximeter agent's [private] readers)")

    def enrol_agents(self) -> None:
        self.step("making each agent's key and enrolling it: "
                  "sensor-agent keygen, sensor-agent pubkey | ledger-collector devices add")
        for device in DEVICES:
            key = self.root / "keys" / f"{device.device_id}.pem"
            self._cmd([BIN / "sensor-agent", "keygen", "--key", key])
            info = self._pubkey(["--key", str(key)])
            self.ledger.add_device(device.device_id, info["pem"])
            self.say(f"    {device.device_id:<14} key id {info['kid'][:16]}…")

    def start_devices(self) -> None:
        self.step("starting five emulated devices on pseudo-terminals, an agent on each")
        (self.root / "agents").mkdir(parents=True, exist_ok=True)
        for seed, device in enumerate(DEVICES, start=1):
            port = self._start_emulator(seed, device)
            cfg = self.root / "agents" / f"{device.device_id}.toml"
            cfg.write_text(agent_config(device, port=port, broker_url=self.broker.url,
                                        root=self.root, readers=(self.reader_pub,)))
            if device.relays_for is not None:
                # The sensor made its key in firmware and exports only the public half.
                sensor_pub = self.root / "sensor-firmware" / "key.pem.pub.pem"
                self.ledger.add_device(device.relays_for, sensor_pub.read_text())
            else:
                self._cmd([BIN / "sensor-agent", "check", "--config", cfg])
            self.procs.start(f"agent-{device.device_id}",
                             [str(BIN / "sensor-agent"), "run", "--config", str(cfg)])
            self.say(f"    {device.device_id:<14} {device.title:<52} {port}")
            if device.relays_for is not None:
                # Checked once its agent is attached: the sensor reports whether or not
                # anyone listens, and the first report comes one interval after power-up.
                self._cmd([BIN / "sensor-agent", "check", "--config", cfg])
                self.say(f"    {device.relays_for:<14} its sensor, enrolled with the key "
                         "made in its firmware")
        self.say(f"    running for {self.seconds:g} s")

    def _start_emulator(self, seed: int, device: DemoDevice) -> str:
        argv = [sys.executable, "-m", f"firmware_stubs.{device.emulator}",
                "--seed", str(seed), *device.emulator_args]
        if device.relays_for is not None:
            argv += ["--device-id", device.relays_for,
                     "--key", str(self.root / "sensor-firmware" / "key.pem"),
                     "--state", str(self.root / "sensor-firmware" / "state.json")]
        child = self.procs.start(f"emulator-{device.device_id}", argv, stdout_pipe=True)
        assert child.proc.stdout is not None
        port = child.proc.stdout.readline().decode().strip()
        if not port:
            raise DemoError(f"emulator for {device.device_id} did not start:\n{child.tail()}")
        return port

    def watch(self) -> None:
        deadline = time.monotonic() + self.seconds
        while True:
            left = deadline - time.monotonic()
            time.sleep(max(0.0, min(3.0, left)))
            dead = self.procs.dead()
            if dead:
                raise DemoError(f"{dead[0].name} exited early:\n{dead[0].tail()}")
            self.say("    " + self.ledger.progress_line())
            if left <= 3.0:
                return

    def stop_services(self) -> None:
        self.step("stopping the agents (they flush their spools), then the collector")
        for device in DEVICES:
            self.procs.stop(f"agent-{device.device_id}", timeout=15)
        self.ledger.wait_until_settled()
        self.ledger.stop(self.procs)
        for device in DEVICES:
            self.procs.stop(f"emulator-{device.device_id}")
        self.broker.stop()

    def check(self) -> bool:
        self.step("report")
        self.say(self.ledger.report())
        self.step("the log's signed checkpoint: ledger-collector checkpoint")
        self.ledger.save_checkpoint(self.root / "head.checkpoint", self.out)
        self.step("auditing the whole ledger against it: ledger-collector audit --checkpoint")
        audit_ok = self.ledger.audit(self.out, self.root / "head.checkpoint")
        self.step("the checkpoint both witnesses cosigned: ledger-collector checkpoint --cosigned")
        self.ledger.show_cosigned(self.witnesses.collector_config, self.out)
        view_ok = self.check_view()
        mirror_ok = self.run_mirror()
        self.step("writing and checking a proof file for one arc event (it carries the "
                  "cosignatures; the policy asks for both witnesses)")
        proof_ok = self.ledger.prove_one_arc_event("panel-7", self.root / "arc-event.proof",
                                                   self.out, self.witnesses.collector_config,
                                                   self.witnesses.policy)
        self.step("a private reading: the oximeter signed a salted commitment, its values "
                  "are sealed for the clinic's reader key")
        private_ok = self.ledger.show_private_reading(
            "ward3-bed12", self.reader_key, self.root / "private-reading.proof", self.out)
        self.step("where to look")
        self.say(f"    ledger      {self.ledger.location}")
        self.say(f"    proof file  {self.root / 'arc-event.proof'} "
                 f"(readable: {self.root / 'arc-event.proof.json'})")
        self.say(f"    collector public key  {self.ledger.public_key}")
        self.say(f"    log verifier keys     {self.ledger.vkey}")
        self.say(f"    witness policy        {self.witnesses.policy}")
        self.say(f"    mirror copy {self.mirror.db} (another party's verified copy; "
                 f"`ledger-collector audit --db {self.mirror.db}`)")
        self.say(f"    in a browser: open {VERIFY_PAGE.as_uri()}, pin the log verifier "
                 "keys, drop the proof file")
        self.say(f"    checkpoint  {self.root / 'head.checkpoint'}")
        self.say(f"    logs        {self.root / 'logs'}")
        self.say(f"    try: {BIN / 'ledger-collector'} stats --db {self.ledger.location}")
        if self.view_url:
            self.say(f"    view        {self.view_url}"
                     + ("" if self.keep_serving else " (until the demo exits; --keep-serving "
                        "keeps it up)"))
        ok = audit_ok and view_ok and proof_ok and private_ok and mirror_ok
        self.say("demo PASSED: audit clean, the view shows the ledger, the mirror's copy "
                 "verified, proofs verified offline, private values revealed only with the "
                 "reader key" if ok
                 else "demo FAILED")
        return ok

    def check_view(self) -> bool:
        """The view, still serving the ledger the collectors left, shows what the ledger
        holds: its pages load, its JSON API gives the saved checkpoint and the same numbers."""
        assert self.view_url is not None
        self.step(f"the read-only view shows the same ledger: pages and JSON API at "
                  f"{self.view_url}")
        return check_view(self.view_url, self.root / "head.checkpoint", self.ledger.stats(),
                          "panel-7", self.out)

    def run_mirror(self) -> bool:
        """Another party's mirror catches up from the view's tiles, reaches the same
        checkpoint, and its copy passes the audit on its own."""
        assert self.view_url is not None
        url = self.view_url + "log"
        self.step(f"a mirror, as another party runs it: ledger-mirror from the view's tiles "
                  f"at {url}")
        caught_up = self.mirror.catch_up(url, self.ledger.vkey, self.out)
        same = caught_up and self.mirror.same_checkpoint(self.root / "head.checkpoint",
                                                         self.out)
        if not same:
            return False
        self.step("auditing the mirror's copy against the same checkpoint: "
                  f"ledger-collector audit --db {self.mirror.db.name}")
        self.say("    (a mirror copies the log, not the collector's per-device counters: "
                 "hence the warnings)")
        return self.mirror.audit(self.ledger.public_key, self.root / "head.checkpoint",
                                 self.out)

    # -- helpers ---------------------------------------------------------------------------
    def _cmd(self, argv: list[Any]) -> str:
        result = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
        if result.returncode != 0:
            raise DemoError(f"`{' '.join(map(str, argv))}` failed ({result.returncode}):\n"
                            f"{result.stdout}{result.stderr}")
        return result.stdout

    def _pubkey(self, args: list[str]) -> dict[str, str]:
        out = json.loads(self._cmd([BIN / "sensor-agent", "pubkey", "--json", *args]))
        pem, kid = out.get("public_key_pem") or out.get("pem"), out.get("kid")
        if not isinstance(pem, str) or not isinstance(kid, str):
            raise DemoError(f"sensor-agent pubkey --json gave no PEM and key id: {out}")
        return {"pem": pem, "kid": kid}


def new_root(base: Path) -> Path:
    root = base / datetime.now().strftime("%Y%m%d-%H%M%S")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    return root


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("DEMO_SECONDS", "20")),
                        help="how long the devices run (default 20, or $DEMO_SECONDS)")
    parser.add_argument("--workdir", type=Path, default=Path("demo-run"),
                        help="a fresh folder is made under it for this run (default demo-run/)")
    parser.add_argument("--cluster", action="store_true",
                        help="the ledger in a private PostgreSQL, two collectors sharing the "
                             "readings (make demo-cluster)")
    parser.add_argument("--keep-serving", action="store_true",
                        help="keep the read-only view up after the demo, until Ctrl-C")
    parser.add_argument("--view-listen", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="where the view listens (default: a free port on 127.0.0.1)")
    args = parser.parse_args(argv)
    # SIGTERM (a service manager, `kill`) unwinds like Ctrl-C, so every child is stopped; and
    # Ctrl-C does so even when started from a shell that ignores SIGINT for background jobs.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    root = new_root(args.workdir.resolve())
    print(f"SensorLedger demo in {root}", flush=True)
    demo = Demo(root, args.seconds, cluster=args.cluster, view_listen=args.view_listen,
                keep_serving=args.keep_serving)
    try:
        return 0 if demo.run() else 1
    except DemoError as exc:
        print(f"demo FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; every process the demo started has been stopped", file=sys.stderr)
        return 130
