"""Delivery through a real Mosquitto: outages, SIGKILL, overflow — checked on a verifying
subscriber (signatures, sequence, hash chain)."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.spool import read_report
from tests.support.agent_harness import (
    AgentProcess,
    Subscriber,
    check_chain,
    device_public_key,
    verify_stream,
    write_config,
)
from tests.support.broker import Broker
from tests.support.polling import wait_until

StartAgent = Callable[..., AgentProcess]


def status(workdir: Path) -> dict[str, Any]:
    """The agent's last runtime snapshot (state/status.json)."""
    data = json.loads((workdir / "state" / "status.json").read_text())
    assert isinstance(data, dict)
    return data


def wait_for(predicate: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    """Wait for a state, never for a time: a loaded machine may take much longer than usual."""
    wait_until(predicate, timeout, 0.05, what)


def received_seqs(sub: Subscriber, workdir: Path) -> set[int]:
    return set(verify_stream(sub.payloads(), device_public_key(workdir)).readings)


def test_broker_outage_backlog_arrives_complete_and_in_order(
    broker: Broker, subscriber: Subscriber, agents: StartAgent, tmp_path: Path
) -> None:
    workdir = tmp_path / "agent"
    agent = agents(write_config(workdir, broker.url))  # a counter sampled at 50 Hz
    wait_for(lambda: len(subscriber.payloads()) >= 20, what="first readings")

    spool = workdir / "state" / "spool.sqlite"
    broker.stop()
    outage_start_ms = time.time_ns() // 1_000_000
    first_in_outage = read_report(spool).next_seq
    # The outage lasts until the agent reports it and has signed 100 readings since it began
    # (2 s at 50 Hz; longer on a loaded machine).
    wait_for(lambda: status(workdir)["state"] == "offline"
             and status(workdir)["spool_depth"] >= 40
             and read_report(spool).next_seq >= first_in_outage + 100,
             what="the agent offline, spooling 100 readings")
    outage_end_ms = time.time_ns() // 1_000_000
    broker.start()

    wait_for(lambda: status(workdir)["state"] == "online", what="reconnect")
    assert agent.terminate() == 0  # SIGTERM: flush, then exit 0
    final = read_report(spool)
    assert final.depth == 0, "a clean stop with the broker up leaves nothing behind"
    last_seq = final.next_seq - 1
    wait_for(lambda: max(received_seqs(subscriber, workdir), default=-1) == last_seq,
             what="the whole backlog")

    stream = verify_stream(subscriber.payloads(), device_public_key(workdir))
    assert stream.seqs == list(range(last_seq + 1)), "every reading arrives"
    # Every sample the driver returned was signed, those still queued at SIGTERM included.
    produced = status(workdir)["sensors"]["counter"]["driver_stats"]["samples"]
    assert produced == last_seq + 1
    counts = [stream.readings[s].measurements[0].value for s in stream.seqs]
    assert counts == list(range(last_seq + 1))
    assert stream.arrival == sorted(stream.arrival), "first arrivals are in seq order"
    assert stream.gaps == []
    check_chain(stream)
    # Readings were taken (and signed) while the broker was away.
    sampled_during = [r for r in stream.readings.values()
                      if outage_start_ms <= r.time_ms <= outage_end_ms]
    assert len(sampled_during) >= 50
    # Re-sends after the reconnect are byte-identical duplicates (verify_stream checks it);
    # the collector drops those. There can only be a handful: the in-flight window.
    assert stream.duplicates <= 100
    assert "Traceback" not in agent.log()
    assert "cannot reach broker" in agent.log()  # the outage was reported, not hidden


def test_sigkill_never_reuses_a_seq_and_the_chain_stays_unbroken(
    broker: Broker, subscriber: Subscriber, agents: StartAgent, tmp_path: Path
) -> None:
    workdir = tmp_path / "agent"
    sensors = ('[[sensors]]\nname = "fast"\ndriver = "test-counter"\ninterval_s = 0.01\n'
               "per_poll = 5\n")  # ~500 readings/s: kills land mid-batch and mid-publish
    config = write_config(workdir, broker.url, sensors=sensors)
    rng = random.Random(7)
    kills = 4
    for _ in range(kills):
        agent = agents(config)
        agent.wait_for_log("connected")
        time.sleep(rng.uniform(0.4, 1.0))
        agent.kill()
    # The broker published the Last Will: the device is offline, retained.
    status_topic = "sensorledger/v1/dev-test/status"
    wait_for(lambda: (b"offline", False) in subscriber.on_topic(status_topic), what="the Will")

    agent = agents(config)
    agent.wait_for_log("connected")
    time.sleep(0.5)
    assert agent.terminate() == 0
    final = read_report(workdir / "state" / "spool.sqlite")
    assert final.boot == kills + 1 and final.depth == 0
    last_seq = final.next_seq - 1
    wait_for(lambda: max(received_seqs(subscriber, workdir), default=-1) == last_seq,
             what="all readings")

    stream = verify_stream(subscriber.payloads(), device_public_key(workdir))
    assert stream.seqs == list(range(last_seq + 1))
    assert stream.gaps == []
    check_chain(stream)  # every prev is the SHA-256 of the envelope before it
    # Boot counter: one per start, rising with seq; each boot continues where the last ended.
    boots = [stream.readings[s].boot for s in stream.seqs]
    assert boots == sorted(boots)
    assert set(boots) == set(range(1, kills + 2))
    # The kills landed while readings were still unpublished: restarts found them spooled.
    found = [int(n) for n in re.findall(r"boot \d+, next seq \d+, (\d+) reading",
                                        agent.log())]
    assert len(found) == kills + 1 and sum(1 for n in found if n > 0) >= 2, found


def test_full_spool_drops_oldest_with_one_gap_record_per_episode(
    broker: Broker, subscriber: Subscriber, agents: StartAgent, tmp_path: Path
) -> None:
    workdir = tmp_path / "agent"
    limit = 5
    # 10 readings/s: with the broker up, a reading stays spooled until its PUBACK and the
    # batched ack (50 ms) are through, so the spool holds about one. At 50/s it held three or
    # four, and a loaded machine's stall of 0.1 s overflowed a spool of 5 with the broker up.
    sensors = '[[sensors]]\nname = "counter"\ndriver = "test-counter"\ninterval_s = 0.1\n'
    agent = agents(write_config(workdir, broker.url, spool_limit=limit, sensors=sensors))
    wait_for(lambda: len(subscriber.payloads()) >= 5, what="first readings")
    spool_path = workdir / "state" / "spool.sqlite"
    key = device_public_key(workdir)
    # On a loaded machine the agent's link can come up after its first five readings: an
    # overflow episode of its own, closed once the link is up. The outages below each add
    # exactly one episode to those.
    wait_for(lambda: read_report(spool_path).open_gap is None
             and status(workdir)["state"] == "online", what="online, no episode open")
    before = read_report(spool_path).counters.gap_records
    wait_for(lambda: len(verify_stream(subscriber.payloads(), key).gaps) == before,
             what="the gap records of the start")

    def overflowed() -> bool:
        """A spool of 5 that has dropped at least 30 readings (~3.5 s at 10 Hz)."""
        gap = read_report(spool_path).open_gap
        return gap is not None and gap[1] - gap[0] + 1 >= 30

    for episode in (1, 2):
        broker.stop()
        wait_for(overflowed, what=f"overflow episode {episode}")
        report = read_report(spool_path)
        assert report.depth == limit
        assert report.open_gap is not None, "an overflow episode is open"
        first, last = report.open_gap
        assert last - first + 1 >= 30
        assert report.oldest_seq is not None and report.oldest_seq > last, (
            "the oldest readings went; the newest are kept")
        broker.start()
        wait_for(lambda n=before + episode: len(verify_stream(subscriber.payloads(), key).gaps)
                 == n,
                 what=f"gap record {episode}")
        # Back to normal before the next episode: the kept readings and newer ones arrive.
        wait_for(lambda end=last: max(received_seqs(subscriber, workdir)) > end + 2 * limit,
                 what=f"readings after episode {episode}")

    assert agent.terminate() == 0
    final = read_report(spool_path)
    wait_for(lambda: max(received_seqs(subscriber, workdir), default=-1) == final.next_seq - 1,
             what="all readings")
    stream = verify_stream(subscriber.payloads(), key)
    assert len(stream.gaps) == before + 2, "exactly one gap record per overflow episode"
    (_, a_last), (b_first, _) = stream.gaps[before:]
    assert a_last < b_first
    dropped = {s for first, last in stream.gaps for s in range(first, last + 1)}
    missing = set(range(final.next_seq)) - set(stream.readings)
    assert missing <= dropped, "every reading that never came is named by a gap record"
    for first, last in stream.gaps:
        # A gap record names what left the spool without a PUBACK. A reading that was in
        # flight then (sent as the broker went away, or during the reconnect) may still have
        # arrived; there are at most a few spoolfuls of those, never more.
        arrived = [s for s in range(first, last + 1) if s in stream.readings]
        assert len(arrived) <= 2 * limit, arrived
    for _first, last in stream.gaps:
        # The newest `limit` readings before the episode ended were kept and delivered.
        assert all(s in stream.readings for s in range(last + 1, last + 1 + limit))
    check_chain(stream)  # gap records are signed, take the next seq and chain normally
    gap_records = [r for r in stream.readings.values() if r.kind == "gap"]
    assert [(r.gap.first, r.gap.last) for r in gap_records if r.gap] == stream.gaps
    assert final.counters.dropped == len(dropped) and final.counters.gap_records == before + 2
