"""Collector key rotation: `key rotate`, then the collector logs a key-rotate statement signed
by the old key, seals it under the old keys and signs with the new keys from then on. The
tests that run a collector run on a SQLite ledger and on a PostgreSQL one (the test's own
server, tests/support/postgres.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from collector import faults
from collector.ledger.key_rotation import complete_rotation
from collector.ledger.pg_store import PostgresStore
from collector.ledger.statement_index import statement_terms
from provenance import cbor
from provenance.block import SignedBlock
from provenance.checkpoint import Checkpoint, sign_checkpoint
from provenance.erasure import Erasure, sign_erasure
from provenance.keys import PrivateKey
from provenance.logproof import decode_log_proof, verify_log_proof
from provenance.note import EcdsaNoteSigner, Ed25519NoteSigner, open_note, parse_verifier_key
from provenance.statement import (
    STATEMENT_KIND,
    SignedStatement,
)
from provenance.trust import parse_policy
from provenance.wire import ProofLabel
from tests.support.broker import Broker
from tests.support.cluster import PgLedger
from tests.support.collector import (
    REPO,
    CollectorProcess,
    Ledger,
    Publisher,
    make_devices,
    run_cli,
)
from tests.support.polling import wait_until
from tests.support.postgres import PostgresServer
from tests.support.rotation import rotated_log_proof


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    """A fresh ledger on each store."""
    if request.param == "sqlite":
        return Ledger(tmp_path / "ledger").init()
    return PgLedger(tmp_path / "ledger", request.getfixturevalue("pg_url")).init()


@pytest.fixture
def collector(ledger: Ledger,
              collector: Callable[..., CollectorProcess]) -> Callable[..., CollectorProcess]:
    """The suite's collector processes (tests/conftest.py), on PostgreSQL each with its own
    client id; ``key``: another key file than the ledger's."""
    made = 0

    def make(*extra: str, env: dict[str, str] | None = None,
             key: str | None = None) -> CollectorProcess:
        nonlocal made
        if isinstance(ledger, PgLedger):
            extra = ("--client-id", f"rot-{made}", "--workers", "1", *extra)
            env = {"SENSORLEDGER_STATE_DIR": str(ledger.root), **(env or {})}
        made += 1
        proc = collector(*extra, env=env)
        if key is not None:
            proc.args[proc.args.index("--key") + 1] = key
        return proc

    return make


def _sealed(ledger: Ledger) -> int:
    """Device readings sealed into blocks (statements not counted), on either store."""
    return int(ledger.sql(
        "SELECT COUNT(*) FROM readings WHERE device_id != '@collector' AND id IS NOT NULL "
        "AND id < (SELECT COALESCE(MAX(first_reading_id + leaf_count), 1) FROM blocks)")[0][0])


def _verifiers(vkey_text: str) -> list[object]:
    return [parse_verifier_key(v) for v in vkey_text.split("\n") if v]


def _checkpoints(ledger: Ledger) -> list[tuple[int, bytes]]:
    return [(int(r[0]), bytes(r[1])) for r in ledger.sql(
        "SELECT size, note FROM checkpoints ORDER BY size")]


def test_rotate_restart_ingest_and_the_log_announces_the_new_key(
        ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess],
        tmp_path: Path, postgres_server: PostgresServer) -> None:
    dev, = make_devices(1, "rot")
    ledger.enrol([dev])
    old_key = PrivateKey.from_pem(Path(ledger.key).read_bytes())
    old_vkeys = Path(ledger.vkey).read_text()
    col = collector("--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish([(dev.topic, dev.next()) for _ in range(3)])
        wait_until(lambda: _sealed(ledger) == 3, 30, 0.05)
    assert col.stop() == 0
    old_policy = tmp_path / "old.vkey"
    old_policy.write_text(old_vkeys)
    before = tmp_path / "before.proof"
    assert run_cli("proof", "--db", ledger.db, dev.device_id, "1", "-o",
                   str(before)).exit_code == 0

    rotated = run_cli("key", "rotate", "--db", ledger.db, "--key", ledger.key)
    assert rotated.exit_code == 0, rotated.output
    new_key = PrivateKey.from_pem(Path(ledger.key).read_bytes())
    assert new_key.kid != old_key.kid
    kept = Path(ledger.key).with_name(f"collector-key.{old_key.kid.hex()[:16]}.pem")
    assert PrivateKey.from_pem(kept.read_bytes()).kid == old_key.kid
    assert kept.stat().st_mode & 0o777 == 0o600
    assert kept.with_suffix(".note").stat().st_mode & 0o777 == 0o600
    # A second rotation before the collector completed the first is refused.
    assert run_cli("key", "rotate", "--db", ledger.db, "--key", ledger.key).exit_code == 2
    # So is an erasure: its statement would be signed by a key the log has not announced yet.
    early = run_cli("erase", "--db", ledger.db, "--key", ledger.key, "--subject", "patient-1",
                    "--authority", "request 1")
    assert early.exit_code == 2, early.output
    assert (f"the key file holds key {new_key.kid.hex()}, the ledger's collector key is "
            f"{old_key.kid.hex()}: if a key rotation is pending") in early.output
    assert ledger.sql("SELECT COUNT(*) FROM erasures") == [(0,)]

    col = collector("--block-age", "0.2").start()
    col.wait_event("key_rotated", timeout=30)
    with Publisher(broker) as pub:
        pub.publish([(dev.topic, dev.next()) for _ in range(3)])
        wait_until(lambda: _sealed(ledger) == 6, 30, 0.05)
    assert col.stop() == 0

    rows = ledger.sql("SELECT id, device_id, envelope FROM readings ORDER BY id")
    statements = [(int(r[0]), SignedStatement.decode(bytes(r[2])))
                  for r in rows if r[1] == "@collector"]
    # The enrolment, then the rotation: on SQLite and on a PostgreSQL cluster alike.
    assert [s.statement.type for _, s in statements] == ["enrol", "key-rotate"]
    rotate_id, rotate = statements[-1]
    assert rotate.verify(old_key.public).key_rotation().kid == new_key.kid
    # Checkpoints up to the one holding the statement: old keys; after it: new keys.
    new_vkeys = Path(ledger.vkey).read_text()
    assert new_vkeys != old_vkeys
    for size, note in _checkpoints(ledger):
        trusted = old_vkeys if size <= rotate_id else new_vkeys
        verified = open_note(note, _verifiers(trusted))  # type: ignore[arg-type]
        assert len(verified.verified) == 2, size
    assert any(size == rotate_id for size, _ in _checkpoints(ledger))
    # Block headers likewise.
    for header, first, count in ledger.sql(
            "SELECT header, first_reading_id, leaf_count FROM blocks ORDER BY height"):
        key = old_key if first + count - 1 <= rotate_id else new_key
        SignedBlock.decode(bytes(header)).verify(key.public)

    # Proofs from before and after the rotation verify trusting only the old keys; the later
    # one carries the rotation statement and verify-proof follows it.
    assert decode_log_proof(before.read_bytes()).rotations == ()
    checked = run_cli("verify-proof", str(before), "--policy", str(old_policy))
    assert checked.exit_code == 0, checked.output
    after = tmp_path / "after.proof"
    assert run_cli("proof", "--db", ledger.db, dev.device_id, "4", "-o",
                   str(after)).exit_code == 0
    assert [r.leaf_index for r in decode_log_proof(after.read_bytes()).rotations] == [
        rotate_id - 1]
    both = tmp_path / "both.vkey"  # a policy naming every key of the log
    both.write_text(old_vkeys + Path(ledger.vkey).read_text())
    for policy in (str(old_policy), str(both)):
        checked = run_cli("verify-proof", str(after), "--policy", policy)
        assert checked.exit_code == 0, checked.output
        assert "[PASS] collector key rotation" in checked.output
        if not isinstance(ledger, PgLedger):
            assert "[PASS] device key enrolment" in checked.output
    assert "followed 1 key-rotate statement" in run_cli(
        "verify-proof", str(after), "--policy", str(old_policy)).output
    # Without the statements, the old keys alone do not accept the new checkpoint.
    body = cbor.decode(after.read_bytes(), what="proof")
    stripped = tmp_path / "stripped.proof"
    stripped.write_bytes(cbor.encode({k: v for k, v in body.items()
                                      if k != ProofLabel.ROTATIONS}))
    refused = run_cli("verify-proof", str(stripped), "--policy", str(old_policy))
    assert refused.exit_code == 1
    assert "[FAIL] checkpoint signature" in refused.output

    audit = run_cli("audit", "--db", ledger.db, "--json")
    assert audit.exit_code == 0, audit.output
    report = json.loads(audit.output)
    assert report["statements"] == len(statements)
    assert any(f"collector key rotated by statement {rotate.statement.seq}" in n
               for n in report["notes"]), report
    assert report["findings"] == [], report
    assert report["collector_kid"] == new_key.kid.hex()
    if not isinstance(ledger, PgLedger):
        # Moved to PostgreSQL: each part verified under the key in force for it, the key
        # history copied, and the copy audits and proves as the file does.
        url = postgres_server.create_db()
        copied = run_cli("copy", ledger.db, url)
        assert copied.exit_code == 0, copied.output
        audit = run_cli("audit", "--db", url, "--json")
        assert audit.exit_code == 0, audit.output
        assert json.loads(audit.output)["notes"] == report["notes"]
        moved = tmp_path / "moved.proof"
        assert run_cli("proof", "--db", url, dev.device_id, "4", "-o",
                       str(moved)).exit_code == 0
        assert moved.read_bytes() == after.read_bytes()
    # A ledger that records a collector key its log never announced: a finding.
    ledger.execute("UPDATE meta SET value = ? WHERE key = 'collector_public_key'",
                   (PrivateKey.generate().public.to_pem(),))
    audit = run_cli("audit", "--db", ledger.db, "--json")
    assert audit.exit_code == 1
    assert "collector key" in {f["check"] for f in json.loads(audit.output)["findings"]}


def test_a_rotation_statement_signed_by_an_untrusted_key_is_refused() -> None:
    origin = "sensorledger.example/rotation"
    old = PrivateKey.generate()
    old_note = Ed25519NoteSigner.generate(origin)
    policy = parse_policy(f"{old_note.verifier.vkey}\n"
                          f"{EcdsaNoteSigner(origin, old).verifier.vkey}\n")
    # Signed by the trusted key: followed, and the new checkpoint verifies.
    good = verify_log_proof(rotated_log_proof(old, PrivateKey.generate(), origin), policy)
    assert good.ok, [(c.name, c.detail) for c in good.checks]
    assert "followed 1 key-rotate statement" in next(
        c.detail for c in good.checks if c.name == "collector key rotation")
    # Signed by any other key: refused, and the checkpoint is never accepted.
    attacker = PrivateKey.generate()
    forged = verify_log_proof(rotated_log_proof(attacker, PrivateKey.generate(), origin),
                              policy)
    assert not forged.ok
    failed = {c.name: c.detail for c in forged.checks if not c.ok}
    assert "not a collector key the policy trusts" in failed["collector key rotation"]
    assert "checkpoint signature" not in {c.name for c in forged.checks if c.ok}
    # A forged statement naming the attacker's own key as signer and new key alike.
    self_signed = verify_log_proof(rotated_log_proof(attacker, attacker, origin), policy)
    assert not self_signed.ok


def test_kill_9_at_every_rotation_point_then_restart_is_consistent(
        ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess],
        tmp_path: Path) -> None:
    dev, = make_devices(1, "crash")
    ledger.enrol([dev])
    old_key = PrivateKey.from_pem(Path(ledger.key).read_bytes())
    old_policy = tmp_path / "old.vkey"
    old_policy.write_text(Path(ledger.vkey).read_text())
    col = collector("--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish([(dev.topic, dev.next()) for _ in range(2)])
        wait_until(lambda: _sealed(ledger) == 2, 30, 0.05)
    assert col.stop() == 0

    # `key rotate` killed right after recording the rotation: the new files are staged only.
    env = {**os.environ, "PYTHONPATH": str(REPO), faults.ENV: "rotate.recorded"}
    cli = subprocess.run([sys.executable, "-m", "collector", "key", "rotate", "--db", ledger.db,
                          "--key", ledger.key], env=env, cwd=REPO, capture_output=True,
                         timeout=60)
    assert cli.returncode == -signal.SIGKILL, cli.stderr
    assert PrivateKey.from_pem(Path(ledger.key).read_bytes()).kid == old_key.kid

    # The collector killed after logging the statement, then after sealing it.
    for point in ("rotate.statement_committed", "rotate.sealed"):
        crashed = collector(env={faults.ENV: point}).start(wait_connected=False)
        assert crashed.proc is not None
        assert crashed.proc.wait(timeout=60) == -signal.SIGKILL
        # Every checkpoint so far is signed by the old keys.
        for _, note in _checkpoints(ledger):
            open_note(note, _verifiers(old_policy.read_text()))  # type: ignore[arg-type]
    new_key = PrivateKey.from_pem(Path(ledger.key).read_bytes())
    assert new_key.kid != old_key.kid

    col = collector("--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish([(dev.topic, dev.next()) for _ in range(2)])
        wait_until(lambda: _sealed(ledger) == 4, 30, 0.05)
    assert col.stop() == 0
    rotations = [SignedStatement.decode(bytes(r[0])).statement for r in ledger.sql(
        "SELECT envelope FROM readings WHERE device_id = '@collector' ORDER BY id")]
    assert [s.type for s in rotations].count("key-rotate") == 1  # logged once
    audit = run_cli("audit", "--db", ledger.db, "--json")
    assert audit.exit_code == 0, audit.output
    assert json.loads(audit.output)["collector_kid"] == new_key.kid.hex()
    proof = tmp_path / "last.proof"
    assert run_cli("proof", "--db", ledger.db, dev.device_id, "3", "-o",
                   str(proof)).exit_code == 0
    checked = run_cli("verify-proof", str(proof), "--policy", str(old_policy))
    assert checked.exit_code == 0, checked.output


def test_audit_names_a_checkpoint_signed_by_an_unannounced_key(
        ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess]) -> None:
    dev, = make_devices(1, "unann")
    ledger.enrol([dev])
    col = collector("--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish([(dev.topic, dev.next()) for _ in range(2)])
        wait_until(lambda: _sealed(ledger) == 2, 30, 0.05)
    assert col.stop() == 0
    # Someone re-signs the latest checkpoint with keys no statement announced.
    size, note = _checkpoints(ledger)[-1]
    origin = ledger.sql("SELECT value FROM meta WHERE key = 'log_origin'")[0][0]
    rogue, rogue_note = PrivateKey.generate(), Ed25519NoteSigner.generate(origin)
    text = note.decode().split("\n\n")[0] + "\n"
    cp = Checkpoint(origin, size, bytes(ledger.sql(
        "SELECT root FROM checkpoints WHERE size = ?", (size,))[0][0]))
    assert sign_checkpoint(cp, [rogue_note]).decode().startswith(text)
    ledger.execute("UPDATE checkpoints SET note = ? WHERE size = ?",
                   (sign_checkpoint(cp, [rogue_note, EcdsaNoteSigner(origin, rogue)]), size))
    audit = run_cli("audit", "--db", ledger.db, "--json")
    assert audit.exit_code == 1
    checks = {(f["check"], f["detail"].split(":")[0]) for f in json.loads(audit.output)[
        "findings"]}
    assert ("checkpoint", f"checkpoint of tree size {size}") in checks


@pytest.mark.parametrize("ledger", ["postgresql"], indirect=True)
def test_postgresql_rotation_with_several_collectors(
        ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess],
        tmp_path: Path) -> None:
    """On a shared ledger: `key rotate` refuses while a collector is connected; a collector
    that still has the old key file is refused, before and after the rotation completes."""
    assert isinstance(ledger, PgLedger)
    dev, = make_devices(1, "pgrot")
    ledger.enrol([dev])
    old_key = PrivateKey.from_pem(Path(ledger.key).read_bytes())
    # Another collector machine: its own copy of the key files.
    other = tmp_path / "other"
    other.mkdir()
    for suffix in (".pem", ".note"):
        source = Path(ledger.key).with_suffix(suffix)
        (other / source.name).write_bytes(source.read_bytes())
        (other / source.name).chmod(0o600)
    other_key = str(other / Path(ledger.key).name)

    running = collector("--block-age", "0.2").start()
    with Publisher(broker) as pub:
        pub.publish([(dev.topic, dev.next()) for _ in range(2)])
        wait_until(lambda: _sealed(ledger) == 2, 30, 0.05)
    refused = run_cli("key", "rotate", "--db", ledger.db, "--key", ledger.key)
    assert refused.exit_code == 2, refused.output
    assert "collector(s) are connected to this ledger" in refused.output
    assert "ledger-collector run rot-0" in refused.output
    assert "copy the new key files to every collector machine" in refused.output
    assert PrivateKey.from_pem(Path(ledger.key).read_bytes()).kid == old_key.kid
    assert ledger.sql("SELECT value FROM meta WHERE key = 'key_rotation_pending'") == []
    assert running.stop() == 0

    rotated = run_cli("key", "rotate", "--db", ledger.db, "--key", ledger.key)
    assert rotated.exit_code == 0, rotated.output
    assert "copy the new key files" in rotated.output
    new_key = PrivateKey.from_pem(Path(ledger.key).read_bytes())

    # The other machine, not given the new files, cannot complete the rotation.
    stale = collector(key=other_key).start(wait_connected=False)
    assert stale.proc is not None and stale.proc.wait(timeout=60) != 0
    stale.stop()  # reads the rest of its log
    assert f"the new key {new_key.kid.hex()}; start the collector of the machine that ran" in (
        "\n".join(stale.lines))
    assert ledger.sql("SELECT COUNT(*) FROM meta WHERE key = 'key_rotation_pending'") == [(1,)]

    col = collector("--block-age", "0.2").start()
    col.wait_event("key_rotated", timeout=30)
    with Publisher(broker) as pub:
        pub.publish([(dev.topic, dev.next()) for _ in range(4)])
        wait_until(lambda: _sealed(ledger) == 6, 30, 0.05)
    assert col.stop() == 0
    rotations = [SignedStatement.decode(bytes(r[0])).statement for r in ledger.sql(
        "SELECT envelope FROM readings WHERE device_id = '@collector' ORDER BY id")]
    assert [s.type for s in rotations] == ["enrol", "key-rotate"]  # a cluster logs both

    # The old key, once retired, is refused with a pointer to the new files.
    stale = collector(key=other_key).start(wait_connected=False)
    assert stale.proc is not None and stale.proc.wait(timeout=60) != 0
    stale.stop()  # reads the rest of its log
    assert "retired by a key rotation" in "\n".join(stale.lines)
    audit = run_cli("audit", "--db", ledger.db, "--json")
    assert audit.exit_code == 0, audit.output
    assert json.loads(audit.output)["collector_kid"] == new_key.kid.hex()


@pytest.mark.parametrize("ledger", ["postgresql"], indirect=True)
def test_two_collectors_completing_one_rotation_at_once_log_it_once(ledger: Ledger) -> None:
    """Two stores (two collectors' connections) complete the same pending rotation at the same
    time: one does it, the other waits on the pending row and then finds it done."""
    rotated = run_cli("key", "rotate", "--db", ledger.db, "--key", ledger.key)
    assert rotated.exit_code == 0, rotated.output

    async def both() -> list[bool]:
        stores = [await PostgresStore.open(ledger.db) for _ in range(2)]
        try:
            return list(await asyncio.gather(*(complete_rotation(s, ledger.key)
                                               for s in stores)))
        finally:
            for s in stores:
                await s.close()

    assert sorted(asyncio.run(both())) == [False, True]
    rows = ledger.sql("SELECT envelope FROM readings WHERE device_id = '@collector'")
    assert [SignedStatement.decode(bytes(r[0])).statement.type for r in rows] == ["key-rotate"]
    assert ledger.sql("SELECT COUNT(*) FROM meta WHERE key = 'key_rotation_pending'") == [(0,)]


@pytest.mark.parametrize("ledger", ["postgresql"], indirect=True)
def test_a_statement_logged_meanwhile_takes_a_seq_before_the_rotation(ledger: Ledger) -> None:
    """Another path (``erase``) logs a statement under the ``@collector`` lock while a
    collector completes a rotation: the rotation waits for that lock, then signs the seq after
    it; the cluster's sealer numbers both, under the old keys."""
    old_key = PrivateKey.from_pem(Path(ledger.key).read_bytes())
    rotated = run_cli("key", "rotate", "--db", ledger.db, "--key", ledger.key)
    assert rotated.exit_code == 0, rotated.output
    now = int(time.time() * 1000)
    erase = sign_erasure(1, now, Erasure("court order 7", (("rot-0", 1),), ()), old_key)
    done: list[BaseException | bool] = []

    async def complete() -> bool:
        store = await PostgresStore.open(ledger.db)
        try:
            return await complete_rotation(store, ledger.key)
        finally:
            await store.close()

    def run() -> None:
        try:
            done.append(asyncio.run(complete()))
        except BaseException as exc:  # reported below
            done.append(exc)

    with psycopg.connect(ledger.db) as con:  # erase_pg's transaction, held open
        con.execute("INSERT INTO device_locks(device_id) VALUES ('@collector') "
                    "ON CONFLICT DO NOTHING")
        con.execute("SELECT device_id FROM device_locks WHERE device_id = '@collector' "
                    "FOR UPDATE")
        con.execute("INSERT INTO reading_rows(device_id, seq, boot, time_ms, received_ms, kind, "
                    "envelope, statement_type, statement_kid) "
                    "VALUES ('@collector', 1, 0, %s, %s, %s, %s, %s, %s)",
                    (now, now, STATEMENT_KIND, erase, *statement_terms("@collector", erase)))
        completing = threading.Thread(target=run)
        completing.start()
        wait_until(lambda: ledger.sql(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")[0][0] > 0, 30, 0.05)
        con.commit()
    completing.join(60)
    assert done == [True]
    rows = ledger.sql("SELECT id, seq, envelope FROM readings WHERE device_id = '@collector' "
                      "ORDER BY id")
    assert [(int(r[0]), int(r[1])) for r in rows] == [(1, 1), (2, 2)]
    assert [SignedStatement.decode(bytes(r[2])).verify(old_key.public).type
            for r in rows] == ["erase", "key-rotate"]
    # Both sealed under the old keys, before the switch.
    sizes = [size for size, _ in _checkpoints(ledger)]
    assert sizes and sizes[-1] == 2
    assert ledger.sql("SELECT COUNT(*) FROM meta WHERE key = 'key_rotation_pending'") == [(0,)]
