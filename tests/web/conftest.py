"""Fixtures of the view's tests: one fleet ledger built by the real collector, one
``ledger-collector serve`` process on it, and one headless Chromium, each per session."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.collector import REPO
from tests.web.fleet import Fleet, build_fleet

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@dataclass
class View:
    url: str
    proc: subprocess.Popen[str]
    lines: list[str]


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("web")
    broker = Broker(workdir=root / "broker")
    broker.start()
    try:
        yield build_fleet(root / "ledger", broker)
    finally:
        broker.stop()


def start_view(db: str, cache_dir: Path, *extra: str) -> View:
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "serve", "--db", db, "--listen", "127.0.0.1:0",
         "--cache-dir", str(cache_dir), *extra],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line)
        m = re.search(r"on (http://\S+/)", line)
        if m:
            break
    else:
        raise AssertionError(f"serve exited ({proc.wait()}):\n{''.join(lines)}")
    # Keep draining stderr so the server never blocks on a full pipe.
    threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True).start()
    return View(m.group(1).rstrip("/"), proc, lines)


def stop_view(view: View) -> None:
    if view.proc.poll() is None:
        view.proc.terminate()
        try:
            view.proc.wait(15)
        except subprocess.TimeoutExpired:
            view.proc.kill()
            view.proc.wait(5)


@pytest.fixture(scope="session")
def view(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[View]:
    v = start_view(fleet.ledger.db, tmp_path_factory.mktemp("view-cache"))
    try:
        yield v
    finally:
        stop_view(v)
