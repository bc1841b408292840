"""A cluster's checkpoints get cosigned: two collectors on one PostgreSQL ledger, each with the
same witness configured, and a real ``ledger-witness`` on loopback. Whichever collector sealed
a checkpoint, the witness cosigns the shared log's checkpoints as they grow, also after
PostgreSQL restarted; every stored cosignature verifies under the witness's key (a clean-room
check); ``ledger-collector checkpoint --cosigned`` gives the newest checkpoint with that
cosignature; the witness holds the same tree; a proof made from the PostgreSQL ledger meets a
policy that needs the witness. A collector that seals a block submits its checkpoint at once,
as one collector on SQLite does, not at its next look at the log."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import Broker
from tests.support.cluster import PgLedger, cluster_collector
from tests.support.collector import Publisher, make_devices, run_cli
from tests.support.polling import wait_until
from tests.support.postgres import PostgresServer
from tests.witness.cleanroom import cosignature_time
from tests.witness.support import WitnessProcess, witness_cli

pytestmark = pytest.mark.slow

ROUNDS = 3
PER_ROUND = 8  # readings of each device per round
_LONG_POLL_S = 120.0  # the submitter's look at the log, in the prompt-submission test
_WAIT_S = 20.0  # longest wait for one round there (four rounds well inside one look)


def _latest(ledger: PgLedger) -> tuple[int, bytes]:
    size, note = ledger.sql("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")[0]
    return int(size), bytes(note)


def _cosigned_by(ledger: PgLedger, size: int, witness: WitnessProcess) -> bool:
    return bool(ledger.sql("SELECT 1 FROM cosignatures WHERE size = ? AND witness = ?",
                           (size, witness.vkey)))


def _wait_cosigned(ledger: PgLedger, sealed: int, witness: WitnessProcess) -> int:
    """Wait until ``sealed`` device readings are in the tree and the witness cosigned the
    newest checkpoint (it then holds every one of them); its size."""
    wait_until(lambda: ledger.sealed() >= sealed, timeout=60, message=f"{sealed} sealed")

    def done() -> bool:
        size, _ = _latest(ledger)
        unsealed = ledger.sql("SELECT COUNT(*) FROM readings WHERE id IS NULL")[0][0]
        return unsealed == 0 and size == ledger.sql(
            "SELECT COUNT(*) FROM readings WHERE id IS NOT NULL")[0][0] and _cosigned_by(
                ledger, size, witness)

    wait_until(done, timeout=60, message="the newest checkpoint cosigned")
    return _latest(ledger)[0]


def test_witness_cosigns_the_shared_log_of_two_collectors(
        tmp_path: Path, broker: Broker, postgres_server: PostgresServer) -> None:
    ledger = PgLedger(tmp_path / "cluster", url=postgres_server.create_db()).init()
    log_vkeys = Path(ledger.vkey).read_text().split()
    origin = log_vkeys[0].split("+")[0]
    witness = WitnessProcess(tmp_path / "witness", "witness.example/w", origin,
                             log_vkeys).start()
    config = tmp_path / "collector.toml"
    config.write_text("[witnessing]\nquorum = 1\nbackoff_max = 1.0\n\n[[witnessing.witness]]\n"
                      f'url = "{witness.url}"\nvkey = "{witness.vkey}"\n')
    devices = make_devices(4, "w")
    ledger.enrol(devices)
    args = ("--config", str(config), "--block-size", "5", "--block-age", "0.3")
    cols = [cluster_collector(ledger, broker, f"collector-{i}", *args).start() for i in range(2)]
    sizes = []
    try:
        with Publisher(broker, "witness-publisher") as pub:
            for round_ in range(1, ROUNDS + 1):
                if round_ == ROUNDS:
                    # PostgreSQL restarted: the submitters' own connections come back too.
                    postgres_server.stop("fast")
                    time.sleep(1.0)
                    postgres_server.start()
                pub.publish([(d.topic, d.next()) for _ in range(PER_ROUND) for d in devices])
                sizes.append(_wait_cosigned(ledger, round_ * PER_ROUND * len(devices),
                                            witness))
    finally:
        stopped = [col.stop() for col in cols]
        witness.stop()
    assert stopped == [0, 0], "".join(line for c in cols for line in c.lines[-20:])
    statements = ledger.statements()
    assert sizes == sorted(set(sizes))
    assert sizes[-1] == ROUNDS * PER_ROUND * len(devices) + statements

    # Both collectors sealed blocks of the one log, and both submitted its checkpoints.
    sealers = [c for c in cols if any(e.get("event") == "block_sealed" for e in c.events)]
    assert len(sealers) == 2, "both collectors sealed"
    assert all(any(e.get("event") == "checkpoint_cosigned" for e in c.events) for c in cols)
    # The witness never refused or failed them (a read of the ledger during the restart may
    # be reported, as "StoreRetry: ...", and retried).
    failed = [e for c in cols for e in c.events if e.get("event") == "witness_failed"
              and not str(e.get("detail")).startswith("Store")]
    assert failed == [], failed

    # Every stored cosignature verifies under the witness's key, on the checkpoint of its size.
    rows = ledger.sql("SELECT c.size, c.line, k.note FROM cosignatures c JOIN checkpoints k "
                      "ON k.size = c.size WHERE c.witness = ? ORDER BY c.size", (witness.vkey,))
    assert {r[0] for r in rows} >= set(sizes)
    for _, line, note in rows:
        assert cosignature_time(bytes(note) + line.encode() + b"\n", witness.vkey) is not None

    # `checkpoint --cosigned`: the newest checkpoint, as signed by the log, with the witness's
    # cosignature, which verifies under the witness's key.
    size, note = _latest(ledger)
    assert size == sizes[-1]
    result = run_cli("checkpoint", "--db", ledger.url, "-c", str(config), "--cosigned")
    assert result.exit_code == 0, result.output
    cosigned = result.output.encode()
    assert cosigned.startswith(note) and cosigned.count("\u2014 witness.example/w ".encode()) == 1
    assert result.output.split("\n")[1] == str(size)
    assert cosignature_time(cosigned, witness.vkey) is not None
    # The witness holds the same tree.
    root = bytes(ledger.sql("SELECT root FROM checkpoints WHERE size = ?", (size,))[0][0])
    assert f"size {size} root {root.hex()}" in witness_cli(
        "status", "-c", str(witness.config)).stdout

    # A proof made from the PostgreSQL ledger carries it, and meets a policy needing it.
    device = devices[0].device_id
    proof = tmp_path / "r.proof"
    result = run_cli("proof", "--db", ledger.url, "-c", str(config), device, "3", "-o",
                     str(proof))
    assert result.exit_code == 0, result.output
    policy = tmp_path / "witnessed.policy"
    policy.write_text("".join(f"log {v}\n" for v in log_vkeys)
                      + f"witness w1 {witness.vkey} {witness.url}\ngroup main 1 w1\n"
                      "quorum main\n")
    result = run_cli("verify-proof", str(proof), "--policy", str(policy))
    assert result.exit_code == 0, result.output
    assert "cosigned by 1 of 1 policy witnesses (w1); quorum main met" in result.output


def _has_sealed(ledger: PgLedger, n: int) -> bool:
    return ledger.sealed() >= n


def test_a_sealing_collector_submits_its_checkpoint_at_once(
        tmp_path: Path, broker: Broker, postgres_server: PostgresServer) -> None:
    """Each block's checkpoint goes to the witness as soon as it is sealed. The submitter also
    looks at the log every ``poll`` seconds (for blocks other collectors seal): set here to
    far longer than the test waits, so only the seal's own wake-up gets a checkpoint
    cosigned in time. Each round publishes after the previous checkpoint was cosigned."""
    ledger = PgLedger(tmp_path / "cluster", url=postgres_server.create_db()).init()
    log_vkeys = Path(ledger.vkey).read_text().split()
    witness = WitnessProcess(tmp_path / "witness", "witness.example/w",
                             log_vkeys[0].split("+")[0], log_vkeys).start()
    config = tmp_path / "collector.toml"
    config.write_text(f"[witnessing]\nquorum = 1\npoll = {_LONG_POLL_S}\n\n"
                      "[[witnessing.witness]]\n"
                      f'url = "{witness.url}"\nvkey = "{witness.vkey}"\n')
    device = make_devices(1, "now")[0]
    ledger.enrol([device])
    col = cluster_collector(ledger, broker, "collector-0", "--config", str(config),
                            "--block-age", "0.05").start()
    started = time.monotonic()
    try:
        with Publisher(broker, "prompt-publisher") as pub:
            for n in range(1, 5):
                pub.publish([(device.topic, device.next())])
                wait_until(partial(_has_sealed, ledger, n), timeout=_WAIT_S)
                size = _latest(ledger)[0]

                def of_size(e: dict[str, Any], size: int = size) -> bool:
                    return e.get("size") == size

                # Woken by the seal: cosigned long before the submitter's next look.
                col.wait_event("checkpoint_cosigned", where=of_size, timeout=_WAIT_S)
    finally:
        stopped = col.stop()
        witness.stop()
    assert stopped == 0, "".join(col.lines[-20:])
    assert time.monotonic() - started < _LONG_POLL_S  # (no round was served by a look)
