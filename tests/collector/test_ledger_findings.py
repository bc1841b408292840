"""Issue 13, defects 1 and 5: a seq far past the last one, and readings the collector never
admitted, through a real collector, Mosquitto and the `audit`/`stats` commands."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from provenance.envelope import Envelope
from tests.support.broker import Broker
from tests.support.collector import (
    REPO,
    CollectorProcess,
    Device,
    Ledger,
    Publisher,
    now_ms,
    run_cli,
)
from tests.support.polling import wait_until

TOP = 2**63 - 1
_COLUMNS = "id, device_id, seq, boot, time_ms, received_ms, kind, envelope"


def audit_json(ledger: Ledger, timeout: float = 60) -> tuple[int, dict[str, Any], float]:
    """`ledger-collector audit --json` as a process, so a runaway audit fails the test."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "collector", "audit", "--db", ledger.db, "--json",
         "--workers", "1"], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, json.loads(proc.stdout), time.monotonic() - started


def checks_of(report: dict[str, Any]) -> list[tuple[str, int | None, int | None]]:
    return [(f["check"], f.get("reading_id"), f.get("seq")) for f in report["findings"]]


def test_a_reading_at_seq_2_63_is_a_seq_jump_and_the_device_keeps_publishing(
        ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess]) -> None:
    """Defect 1 as reported: seq 0, then a validly signed seq 2^63-1 with the right prev. It
    was accepted and `audit` never finished; now it is quarantined as seq_jump, the device's
    seq 1 is accepted, and audit passes at once."""
    dev = Device("jump-01")
    ledger.enrol([dev])
    col = collector("--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish([(dev.topic, dev.next())])
        head_seq, head_prev = dev.seq, dev.prev
        pub.publish([(dev.topic, dev.next(seq=TOP))])
        dev.seq, dev.prev = head_seq, head_prev
        pub.publish([(dev.topic, dev.next())])
    wait_until(lambda: ledger.sealed() >= 2 and ledger.count("quarantine") >= 1, 30, 0.05)
    assert col.stop() == 0
    assert ledger.quarantine() == [("seq_jump", "jump-01", TOP, 1)]
    assert ledger.sql("SELECT seq FROM readings WHERE device_id = 'jump-01' "
                      "ORDER BY seq") == [(0,), (1,)]
    code, report, seconds = audit_json(ledger)
    assert code == 0, report
    assert seconds < 30


def test_audit_of_a_ledger_already_holding_seq_2_63_finishes_and_names_it(
        ledger: Ledger) -> None:
    """A ledger written before the seq_jump rule: the row, its device state and the gap
    0..2^63-2 as the collector recorded them. The audit's cost no longer grows with the seq
    value; the jump is a finding naming the reading."""
    dev = Device("jump-02")
    ledger.enrol([dev])
    first = dev.next()
    big = dev.next(seq=TOP)
    t = now_ms()
    for rid, env in ((1, first), (2, big)):
        r = Envelope.decode(env).reading()
        ledger.execute(f"INSERT INTO readings({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (rid, r.device_id, r.seq, r.boot, r.time_ms, t, r.kind, env))
    ledger.execute(
        "INSERT INTO device_state VALUES (?, 0, ?, ?, 1, ?, ?, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)",
        (dev.device_id, TOP, hashlib.sha256(big).digest(), t, t))
    ledger.execute("INSERT INTO gaps VALUES (?, 1, ?, ?, NULL)", (dev.device_id, TOP - 1, t))
    code, report, seconds = audit_json(ledger)
    assert code == 1
    assert seconds < 30
    assert ("seq jump", 2, TOP) in checks_of(report)
    assert any("9,223,372,036,854,775,806 missing reading(s) that no gap record explains" in w
               for w in report["warnings"])
    stats = run_cli("stats", "--db", ledger.db)
    assert stats.exit_code == 0 and "warning: device jump-02" in stats.output


def test_a_reading_inserted_behind_the_collectors_back_is_named(
        ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess]) -> None:
    """Defect 5: a validly signed reading written into the database directly passed as
    "1 not yet sealed". Audit now names it: above the device's last_seq, counted by no device
    state, and unsealed for longer than the block age."""
    dev = Device("sneak-01")
    ledger.enrol([dev])
    col = collector("--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish([(dev.topic, dev.next()) for _ in range(3)])
    wait_until(lambda: ledger.sealed() >= 3, 30, 0.05)
    assert col.stop() == 0
    assert audit_json(ledger)[0] == 0
    sneaked = dev.next()
    r = Envelope.decode(sneaked).reading()
    an_hour_ago = now_ms() - 3_600_000
    rid = 5  # after the enrolment statement and the 3 readings
    ledger.execute(f"INSERT INTO readings({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (rid, r.device_id, r.seq, r.boot, r.time_ms, an_hour_ago, r.kind, sneaked))
    code, report, _ = audit_json(ledger)
    assert code == 1
    found = checks_of(report)
    assert ("device state", rid, 3) in found  # stored seq 3 above last_seq 2
    assert ("unsealed", rid, 3) in found
    details = " ".join(f["detail"] for f in report["findings"])
    assert "above the device's last_seq 2" in details
    assert "counts 3 accepted reading(s), 4 are stored" in details
    text = run_cli("audit", "--db", ledger.db).output
    assert f"not yet sealed, reading {rid}" in text and "sneak-01 seq 3" in text
