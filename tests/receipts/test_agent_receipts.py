"""End-to-end receipts: a real agent, a real collector, a real Mosquitto.

A PUBACK is the broker's word, not the ledger's. These tests break the path between the
broker's PUBACK and the sealing of a block and check that, with receipts, every reading the
agent signed ends up sealed in the ledger (or, at the end, is still held in the agent's spool
for the next publish); and that the PUBACK-only mode still works where no receipts come.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent_harness import (
    AgentProcess,
    device_public_key,
    run_cli,
    write_config,
)
from tests.support.broker import Broker
from tests.support.collector import CollectorProcess, Ledger
from tests.support.collector import run_cli as collector_cli
from tests.support.polling import wait_until

RECEIPTS = 'receipt_timeout_s = 1.5\n'


def enrol(ledger: Ledger, device_id: str, workdir: Path) -> None:
    result = collector_cli("devices", "add", "--db", ledger.db, device_id, "-",
                           input=device_public_key(workdir).to_pem())
    assert result.exit_code == 0, result.output


def sealed_seqs(ledger: Ledger, device_id: str) -> set[int]:
    return {s for (s,) in ledger.sql(
        "SELECT seq FROM readings WHERE device_id = ? AND id < "
        "(SELECT COALESCE(MAX(first_reading_id + leaf_count), 1) FROM blocks)", (device_id,))}


def spool_rows(workdir: Path) -> tuple[int, set[int]]:
    """(next seq, seqs still spooled) of the agent in ``workdir``, read-only."""
    con = sqlite3.connect(f"file:{workdir / 'state' / 'spool.sqlite'}?mode=ro", uri=True)
    try:
        (next_seq,) = con.execute("SELECT next_seq FROM state").fetchone()
        return next_seq, {s for (s,) in con.execute("SELECT seq FROM spool WHERE relayed = 0")}
    finally:
        con.close()


def runtime_status(workdir: Path) -> dict[str, Any]:
    path = workdir / "state" / "status.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def lost(ledger: Ledger, device_id: str, workdir: Path) -> list[int]:
    """Seqs the agent signed that are neither in the ledger nor in its spool."""
    next_seq, spooled = spool_rows(workdir)
    stored = {s for (s,) in ledger.sql("SELECT seq FROM readings WHERE device_id = ?",
                                       (device_id,))}
    return sorted(set(range(next_seq)) - stored - spooled)


def session_config(tmp_path: Path) -> str:
    """A collector whose broker session ends with its connection (MQTT 5, expiry 0): what a
    shared-subscription member without a persistent session is (mosquitto#2662)."""
    path = tmp_path / "collector.toml"
    path.write_text('[mqtt]\nprotocol = "5"\nsession_expiry = 0\n')
    return str(path)


@pytest.fixture
def agents() -> Any:
    made: list[AgentProcess] = []

    def make(config: Path) -> AgentProcess:
        agent = AgentProcess(config)
        made.append(agent)
        return agent.start()

    yield make
    for agent in made:
        agent.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize("delivery", ["receipts", "puback"])
def test_collector_killed_between_puback_and_seal(
    tmp_path: Path, broker: Broker, ledger: Ledger,
    collector: Callable[..., CollectorProcess], agents: Callable[[Path], AgentProcess],
    delivery: str,
) -> None:
    """kill -9 the collector mid-stream: what was in flight to it, and what the broker
    acknowledged while it was away, never reaches it. With receipts the agent publishes those
    readings again and they are sealed; with PUBACK only they are gone (the reason receipts
    are the default)."""
    work = tmp_path / "agent"
    config = write_config(work, broker.url, device_id="rk-kill", delivery=delivery,
                          extra=RECEIPTS)
    enrol(ledger, "rk-kill", work)
    cfg = session_config(tmp_path)
    first = collector("-c", cfg, "--block-age", "0.3").start()
    agent = agents(config)
    wait_until(lambda: len(sealed_seqs(ledger, "rk-kill")) >= 30, 30, message="first seals")
    first.kill()  # SIGKILL: readings in flight to it are lost with its session
    time.sleep(2.0)  # the agent keeps publishing; the broker acknowledges and drops them
    outage_end = spool_rows(work)[0]  # every seq signed until the collector came back
    collector("-c", cfg, "--block-age", "0.3").start()
    if delivery == "puback":
        time.sleep(2.0)
        assert agent.terminate() == 0
        assert lost(ledger, "rk-kill", work), "the PUBACK-only agent was expected to lose some"
        return
    wait_until(lambda: set(range(outage_end)) <= sealed_seqs(ledger, "rk-kill"), 30,
               message="every reading signed before the restart sealed")
    assert agent.terminate() == 0
    assert lost(ledger, "rk-kill", work) == []
    next_seq, spooled = spool_rows(work)
    # Every seq the agent signed is sealed, or still spooled for its next run.
    assert sealed_seqs(ledger, "rk-kill") | spooled >= set(range(next_seq))
    assert "again: no receipt within" in agent.log()


def test_agent_started_before_enrolment_loses_nothing(
    tmp_path: Path, broker: Broker, ledger: Ledger,
    collector: Callable[..., CollectorProcess], agents: Callable[[Path], AgentProcess],
) -> None:
    work = tmp_path / "agent"
    # The agent checks every receipt against the collector's public key.
    config = write_config(work, broker.url, device_id="rk-late", delivery="receipts",
                          extra=RECEIPTS + f'receipt_key_file = "{ledger.public_key}"\n')
    collector("--block-age", "0.3").start()
    agent = agents(config)

    # Refused as unknown_key: the receipt says so, the agent keeps the readings and says so.
    def refused() -> bool:
        return bool(runtime_status(work).get("receipts", {}).get("refused", {})
                    .get("unknown_key"))
    wait_until(refused, 30, message="unknown_key refusals in the agent's status")
    status = run_cli("status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    assert "refused       unknown_key" in status.stdout and "kept, sent again" in status.stdout
    report = json.loads(run_cli("status", "--config", str(config), "--json").stdout)
    assert report["spool"]["held_refused"]["unknown_key"] > 0
    assert sealed_seqs(ledger, "rk-late") == set()
    held_before = spool_rows(work)[1]
    assert 0 in held_before  # seq 0 is still spooled: nothing left on PUBACK

    enrol(ledger, "rk-late", work)
    wait_until(lambda: set(range(max(held_before) + 1)) <= sealed_seqs(ledger, "rk-late"),
               30, message="the readings from before enrolment sealed")
    wait_until(lambda: (runtime_status(work).get("sealed_through") or -1) >= max(held_before),
               15, message="a receipt covering them")
    assert agent.terminate() == 0
    assert lost(ledger, "rk-late", work) == []
    next_seq, spooled = spool_rows(work)
    assert sealed_seqs(ledger, "rk-late") | spooled >= set(range(next_seq))
    assert not spooled & set(range(max(held_before) + 1))  # released from the spool
    assert runtime_status(work)["receipts"]["bad"] == 0


@pytest.mark.parametrize("collector_receipts", [True, False])
def test_puback_mode_works_with_and_without_receipts(
    tmp_path: Path, broker: Broker, ledger: Ledger,
    collector: Callable[..., CollectorProcess], agents: Callable[[Path], AgentProcess],
    collector_receipts: bool,
) -> None:
    work = tmp_path / "agent"
    config = write_config(work, broker.url, device_id="rk-pub", delivery="puback")
    enrol(ledger, "rk-pub", work)
    collector("--block-age", "0.3",
              *(() if collector_receipts else ("--no-receipts",))).start()
    agent = agents(config)
    wait_until(lambda: len(sealed_seqs(ledger, "rk-pub")) >= 40, 30, message="readings sealed")
    assert agent.terminate() == 0
    next_seq, spooled = spool_rows(work)
    assert spooled == set()  # PUBACK released every row
    wait_until(lambda: sealed_seqs(ledger, "rk-pub") == set(range(next_seq)), 15,
               message=f"every reading sealed (missing "
                       f"{sorted(set(range(next_seq)) - sealed_seqs(ledger, 'rk-pub'))[:20]}, "
                       f"quarantine {ledger.quarantine()[:5]})")
    snap = runtime_status(work)
    assert snap["delivery"] == "puback" and snap["receipts"]["received"] == 0
