"""One writer per ledger (issue 13, item 7): a second `ledger-collector run` on a live ledger is
refused with exit 2 and touches nothing the first one owns; Ctrl-C on an idle collector stops it
cleanly, with no traceback from its worker processes. Real collector processes, real Mosquitto."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tests.support.broker import Broker
from tests.support.collector import (
    REPO,
    CollectorProcess,
    Ledger,
    Publisher,
    alive,
    make_devices,
    run_cli,
)
from tests.support.polling import wait_until


def _run_argv(ledger: Ledger, broker: Broker, *extra: str) -> list[str]:
    return [sys.executable, "-m", "collector", "run", "--db", ledger.db, "--key", ledger.key,
            "--broker", broker.url, *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_a_second_run_is_refused_and_the_live_collector_keeps_working(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess],
) -> None:
    first_dev, later_dev = make_devices(2, prefix="w")
    ledger.enrol([first_dev])
    live = collector("--workers", "2", "--client-id", "live").start()
    with Publisher(broker) as pub:
        pub.publish([(first_dev.topic, first_dev.next())])
    wait_until(lambda: ledger.count("readings") == 1, 30, message="first reading stored")
    registry = Path(ledger.db).with_name(f".{Path(ledger.db).name}.registry")
    assert registry.is_dir()

    second = subprocess.run(_run_argv(ledger, broker, "--workers", "2", "--client-id", "other"),
                            env=_env(), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert second.returncode == 2, second.stderr
    assert "already running on this ledger" in second.stderr
    assert f"pid {live.pid}" in second.stderr and f"{Path(ledger.db).name}.lock" in second.stderr
    assert "Traceback" not in second.stderr
    assert registry.is_dir(), "the refused run removed the live collector's registry folder"

    # The live collector still takes enrolments and readings.
    assert run_cli("devices", "add", "--db", ledger.db, later_dev.device_id, "-",
                   input=later_dev.pem()).exit_code == 0
    with Publisher(broker) as pub:
        pub.publish([(later_dev.topic, later_dev.next()), (first_dev.topic, first_dev.next())])
    wait_until(lambda: ledger.count("readings") == 3, 30, message="readings after enrolment")
    assert alive(live.pid)
    assert live.stop() == 0
    assert not any("Traceback" in line for line in live.lines), "".join(live.lines[-20:])

    # Once the first has stopped, the ledger is free again.
    again = collector("--workers", "1", "--client-id", "live").start()
    assert again.stop() == 0


def test_ctrl_c_on_an_idle_collector_stops_cleanly(ledger: Ledger, broker: Broker) -> None:
    # Its own session, as a terminal's foreground job: Ctrl-C signals the whole process group,
    # the collector and its worker processes alike.
    proc = subprocess.Popen(_run_argv(ledger, broker, "--workers", "2"), env=_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("broker_connected" in line for line in lines) or
                   proc.poll() is not None, 30, message="collector connected")
        assert proc.poll() is None, "".join(lines)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(5)
    text = "".join(lines)
    assert "collector_stopped" in text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
