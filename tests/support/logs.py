"""A log to read from: a ledger a real collector filled from a real broker, exported as
tlog-tiles (``ledger-collector tiles export``), served by a plain static web server."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from provenance.note import parse_verifier_key
from tests.support.broker import Broker, free_port
from tests.support.collector import (
    REPO,
    CollectorProcess,
    Device,
    Ledger,
    Publisher,
    make_devices,
    run_cli,
)
from tests.support.polling import wait_until


def filled_ledger(base: Path, *, devices: int, prefix: str, rounds: int,
                  block_size: int) -> tuple[Ledger, list[Device]]:
    """A new ledger in ``base / "ledger"`` with ``devices`` enrolled devices, each of which
    sent ``rounds`` readings (see :func:`fill`)."""
    ledger = Ledger(base / "ledger").init()
    made = make_devices(devices, prefix)
    ledger.enrol(made)
    fill(ledger, made, rounds=rounds, block_size=block_size, workdir=base / "broker")
    return ledger, made


def fill(ledger: Ledger, devices: list[Device], *, rounds: int, block_size: int,
         workdir: Path) -> None:
    """Each of ``devices`` sends its next ``rounds`` readings through a private broker (in
    ``workdir``) to a collector sealing blocks of ``block_size``; returns once every one is
    sealed, broker and collector stopped."""
    total = ledger.sealed() + len(devices) * rounds
    broker = Broker(workdir=workdir).start()
    try:
        col = CollectorProcess(ledger, broker, "--block-size", str(block_size),
                               "--block-age", "0.2")
        col.start()
        try:
            with Publisher(broker) as pub:
                pub.publish((d.topic, d.next()) for _ in range(rounds) for d in devices)
            wait_until(lambda: ledger.sealed() == total, 60, 0.05, f"{total} readings sealed")
            assert col.stop() == 0
        finally:
            col.kill()
    finally:
        broker.stop()


def mirror_command(db: Path, url: str, policy: str, *extra: str) -> list[str]:
    """``ledger-mirror DB --url URL --policy POLICY EXTRA...`` as this checkout runs it (with
    :func:`mirror_env`)."""
    return [sys.executable, "-m", "collector.mirror", str(db), "--url", url, "--policy", policy,
            *extra]


def mirror_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def run_mirror(db: Path, url: str, policy: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """One ``ledger-mirror`` run to its end (two minutes at most)."""
    return subprocess.run(mirror_command(db, url, policy, *extra), capture_output=True,
                          text=True, timeout=120, env=mirror_env())


def export_tiles(ledger: Ledger, out: Path) -> Path:
    """``ledger-collector tiles export`` of ``ledger`` into ``out``; returns ``out``."""
    result = run_cli("tiles", "export", "--db", ledger.db, str(out))
    assert result.exit_code == 0, result.output
    return out


def latest_checkpoint(db: Path) -> tuple[int, bytes]:
    """The size and signed note of the newest checkpoint a ledger (or a mirror's copy) holds."""
    con = sqlite3.connect(db)
    try:
        size, note = con.execute("SELECT size, note FROM checkpoints ORDER BY size DESC "
                                 "LIMIT 1").fetchone()
    finally:
        con.close()
    return int(size), bytes(note)


def ed25519_vkey(ledger: Ledger) -> str:
    """The log's Ed25519 note verifier key (of the two in the ledger's ``.vkey``)."""
    return next(v for v in Path(ledger.vkey).read_text().split()
                if parse_verifier_key(v).sig_type == 1)


@contextlib.contextmanager
def static_site(directory: Path) -> Iterator[str]:
    """``python -m http.server`` on a free loopback port serving ``directory``: its URL
    (``http://127.0.0.1:PORT/``), once it answers; stopped afterwards."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until(lambda: _answers(url), 60, 0.1, "http server up")
        yield url
    finally:
        server.terminate()
        server.wait(30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False
