"""One log tree over every reading: checkpoints, consistency proofs, format 2 and tlog-proof
files from the command line; audit against a saved checkpoint; tampering with the log; and
``migrate`` of a format 1 ledger, killed and resumed."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from collector.faults import ENV
from collector.ledger.logkeys import load_note_key, note_key_path
from collector.ledger.records import BatchWrite, ReadingRecord
from collector.ledger.sealer import Sealer
from collector.ledger.sqlite_store import SQLiteStore
from provenance.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from provenance.envelope import Envelope
from provenance.keyfile import save_private_key
from provenance.keys import PrivateKey
from provenance.merkle import RFC9162_SHA256, root, verify_consistency
from provenance.note import EcdsaNoteSigner, parse_verifier_key
from tests.support.broker import Broker
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

ARGS = ("--block-size", "40", "--block-age", "0.2")


def _vkeys(ledger: Ledger) -> list[str]:
    return Path(ledger.vkey).read_text().split()


def _leaves(ledger: Ledger) -> list[bytes]:
    return [RFC9162_SHA256.hash_leaf(r[0])
            for r in ledger.sql("SELECT envelope FROM readings ORDER BY id")]


def _fill(ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess],
          devices: list[Device], rounds: int) -> None:
    col = collector(*ARGS).start()
    with Publisher(broker) as pub:
        pub.publish((d.topic, d.next()) for _ in range(rounds) for d in devices)
    total = sum(d.seq for d in devices)
    wait_until(lambda: ledger.sealed() == total, 30, message="everything sealed")
    assert col.stop() == 0


def test_checkpoints_consistency_and_proofs_from_the_command_line(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess], tmp_path: Path,
) -> None:
    devices = make_devices(3, "log")
    ledger.enrol(devices)
    _fill(ledger, broker, collector, devices, 30)  # 90 readings
    verifiers = [parse_verifier_key(v) for v in _vkeys(ledger)]
    assert [v.sig_type for v in verifiers] == [1, 2]

    # Every block ends at a checkpoint of the tree over all readings so far.
    sizes = [r[0] for r in ledger.sql("SELECT size FROM checkpoints ORDER BY size")]
    ends = [r[0] + r[1] - 1 for r in ledger.sql(
        "SELECT first_reading_id, leaf_count FROM blocks ORDER BY height")]
    enrolments = ledger.statements()  # the collector logs each key's enrolment first
    assert enrolments == 3
    assert sizes == ends and sizes[-1] == 90 + enrolments
    saved = run_cli("checkpoint", "--db", ledger.db, "--size", str(sizes[0])).output.encode()
    old = open_checkpoint(saved, verifiers).checkpoint
    assert old.size == sizes[0] and old.root == root(_leaves(ledger)[:sizes[0]])
    assert len(open_checkpoint(saved, verifiers).note.verified) == 2
    (tmp_path / "saved.checkpoint").write_bytes(saved)

    _fill(ledger, broker, collector, devices, 20)  # 60 more
    leaves = _leaves(ledger)
    head = run_cli("checkpoint", "--db", ledger.db)
    assert head.exit_code == 0
    new = open_checkpoint(head.output.encode(), verifiers).checkpoint
    assert (new.size, new.root) == (150 + enrolments, root(leaves))
    assert run_cli("checkpoint", "--db", ledger.db, "--size", "7").exit_code == 2

    out = run_cli("consistency", "--db", ledger.db, str(old.size))
    assert out.exit_code == 0, out.output
    head_part, _, note = out.output.partition("\n\n")
    assert open_checkpoint(note.encode(), verifiers).checkpoint == new
    lines = head_part.split("\n")
    assert lines[0] == f"old {old.size}"
    proof = [base64.b64decode(line) for line in lines[1:]]
    verify_consistency(old.size, new.size, old.root, new.root, proof)
    assert run_cli("consistency", "--db", ledger.db, "0").exit_code == 2
    assert run_cli("consistency", "--db", ledger.db, str(new.size + 1)).exit_code == 2

    # Proofs in both forms, checked offline against the vkey file (a trust policy).
    for form in ("cbor", "tlog-proof"):
        path = tmp_path / f"r.{form}"
        made = run_cli("proof", "--db", ledger.db, "log-001", "25", "--format", form,
                       "-o", str(path))
        assert made.exit_code == 0, made.output
        checked = run_cli("verify-proof", str(path), "--policy", ledger.vkey)
        assert checked.exit_code == 0, checked.output
        assert "[PASS] inclusion in log: leaf" in checked.output
        assert f"of {new.size}" in checked.output
        assert "[PASS] device key enrolment: key enrolled for log-001" in checked.output
    assert Path(tmp_path / "r.tlog-proof").read_bytes().startswith(b"c2sp.org/tlog-proof@v1\n")
    earlier = run_cli("proof", "--db", ledger.db, "log-000", "1", "--size", str(old.size),
                      "-o", str(tmp_path / "early.proof"))
    assert earlier.exit_code == 0 and f"tree size {old.size}" in earlier.output

    # Today's ledger extends the saved checkpoint; a re-sealed or cut-off one does not.
    audit = run_cli("audit", "--db", ledger.db, "--checkpoint", str(tmp_path / "saved.checkpoint"))
    assert audit.exit_code == 0, audit.output
    assert f"extends the saved checkpoint of tree size {old.size}" in audit.output
    forged = tmp_path / "forged.checkpoint"
    key = PrivateKey.from_pem(Path(ledger.key).read_bytes())
    other_root = bytes(32)
    forged.write_bytes(sign_checkpoint(Checkpoint(old.origin, old.size, other_root),
                                       [EcdsaNoteSigner(old.origin, key)]))
    bad = run_cli("audit", "--db", ledger.db, "--checkpoint", str(forged))
    assert bad.exit_code == 1
    assert "saved checkpoint: the ledger does not extend tree size" in bad.output


def test_audit_names_a_checkpoint_that_does_not_match_its_size(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess],
) -> None:
    devices = make_devices(2, "cpt")
    ledger.enrol(devices)
    _fill(ledger, broker, collector, devices, 50)  # 100 readings and 2 enrolments
    assert run_cli("audit", "--db", ledger.db).exit_code == 0
    # Block ends (by size, or by age when the machine is slow): one checkpoint each.
    ends = [int(r[0]) for r in ledger.sql("SELECT size FROM checkpoints ORDER BY size")]
    assert len(ends) >= 3
    first, mid = ends[0], ends[1]
    key = PrivateKey.from_pem(Path(ledger.key).read_bytes())
    origin = _origin(ledger)
    # Re-signed with the collector key for the right size but another root (a second history).
    leaves = _leaves(ledger)
    wrong = root(leaves[:mid - 1] + leaves[mid:mid + 1])
    note = sign_checkpoint(Checkpoint(origin, mid, wrong), [EcdsaNoteSigner(origin, key)])
    ledger.execute("UPDATE checkpoints SET root = ?, note = ? WHERE size = ?", (wrong, note, mid))
    result = run_cli("audit", "--db", ledger.db)
    assert result.exit_code == 1
    assert f"checkpoint: checkpoint of tree size {mid} has root" in result.output
    assert "not signed by" in result.output  # the note key did not sign the forgery
    ledger.execute("DELETE FROM checkpoints WHERE size = ?", (mid,))
    gone = run_cli("audit", "--db", ledger.db)
    assert gone.exit_code == 1 and f"no checkpoint of tree size {mid}" in gone.output
    # A checkpoint, properly signed by both log keys with the true root, at a size where no
    # block ends: the collector never signs one, so it is named.
    ledger.execute("DELETE FROM checkpoints WHERE size != ?", (first,))
    assert run_cli("audit", "--db", ledger.db).exit_code == 1
    signers = [load_note_key(note_key_path(ledger.key)), EcdsaNoteSigner(origin, key)]
    size = next(n for n in range(first + 1, ends[-1]) if n not in ends)
    odd = sign_checkpoint(Checkpoint(origin, size, root(leaves[:size])), signers)
    ledger.execute("INSERT INTO checkpoints(size, root, note, block_height, signed_ms) "
                   "VALUES (?, ?, ?, NULL, 0)", (size, root(leaves[:size]), odd))
    stray = run_cli("audit", "--db", ledger.db)
    assert stray.exit_code == 1
    assert (f"checkpoint: checkpoint of tree size {size}: no block ends at this tree size"
            in stray.output), stray.output
    assert "its root matches the stored tree" in stray.output


def _origin(ledger: Ledger) -> str:
    return str(ledger.sql("SELECT value FROM meta WHERE key = 'log_origin'")[0][0])


@pytest.mark.parametrize("what", ["changed byte", "deleted reading", "reordered pair"])
def test_audit_names_the_reading_in_the_log_tree(
    ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess], what: str,
) -> None:
    devices = make_devices(2, "tl")
    ledger.enrol(devices)
    _fill(ledger, broker, collector, devices, 50)
    target = 57  # in block 1 (readings 41..80) unless a block was sealed early by age
    (height,) = ledger.sql("SELECT height FROM blocks WHERE first_reading_id <= ? AND "
                           "first_reading_id + leaf_count > ?", (target, target + 3))[0]
    if what == "changed byte":
        env = bytearray(ledger.sql("SELECT envelope FROM readings WHERE id = ?", (target,))[0][0])
        env[-3] ^= 1
        ledger.execute("UPDATE readings SET envelope = ? WHERE id = ?", (bytes(env), target))
    elif what == "deleted reading":
        ledger.execute("DELETE FROM readings WHERE id = ?", (target,))
    else:
        a = ledger.sql("SELECT envelope FROM readings WHERE id = ?", (target,))[0][0]
        b = ledger.sql("SELECT envelope FROM readings WHERE id = ?", (target + 3,))[0][0]
        ledger.execute("UPDATE readings SET envelope = ? WHERE id = ?", (b, target))
        ledger.execute("UPDATE readings SET envelope = ? WHERE id = ?", (a, target + 3))
    result = run_cli("audit", "--db", ledger.db, "--json")
    assert result.exit_code == 1
    import json

    report = json.loads(result.output)
    named = {(f["check"], f.get("reading_id"), f.get("block")) for f in report["findings"]}
    assert ("merkle root", None, height) in named
    assert report["first_broken"]["block"] == height
    assert all(f.get("block") in (height, None) for f in report["findings"]), report["findings"]
    if what == "changed byte":
        assert ("leaf hash", target, height) in named
    elif what == "deleted reading":
        assert ("missing reading", target, height) in named
    else:
        assert {("reading order", target, height), ("reading order", target + 3, height)} <= named


# migrate ---------------------------------------------------------------------------------------

def _format_1_ledger(root_dir: Path, devices: list[Device], rounds: int, block: int,
                     pending: int) -> Ledger:
    """A ledger as the collector wrote it before the log tree: format 1 blocks, no log name."""
    ledger = Ledger(root_dir)
    root_dir.mkdir(parents=True)
    key = PrivateKey.generate()
    save_private_key(key, ledger.key)
    Path(ledger.public_key).write_text(key.public.to_pem())

    async def go() -> None:
        store = await SQLiteStore.open(ledger.db, create=True)
        try:
            await store.set_collector_public_key(key.public)
            for d in devices:
                await store.enrol(d.device_id, d.key.public, 0)
            rows, now = [], time.time_ns() // 1_000_000
            for i, env in enumerate((d.next() for _ in range(rounds) for d in devices), 1):
                r = Envelope.decode(env).reading()
                rows.append(ReadingRecord(i, r.device_id, r.seq, r.boot, r.time_ms, now,
                                          r.kind, env))
            await store.commit_batch(BatchWrite(rows))
            leaves = await store.pending_leaves()
            sealer = Sealer(key, None, leaves[:len(leaves) - pending], size=block, age_ms=1)
            while sealer.pending:
                sealed = sealer.seal(now_ms=5000)
                await store.commit_block(sealed)
                sealer.sealed(sealed)
        finally:
            await store.close()

    asyncio.run(go())
    return ledger


def _migrate(ledger: Ledger, *extra: str,
             crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if crash_at:
        env[ENV] = crash_at
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "collector", "migrate", "--db", ledger.db,
                           "--key", ledger.key, "--log-name", "sensorledger.example/busan",
                           *extra], env=env, capture_output=True, text=True, timeout=120)


def test_migrate_a_format_1_ledger_killed_and_resumed(tmp_path: Path, broker: Broker) -> None:
    devices = make_devices(3, "old")
    ledger = _format_1_ledger(tmp_path / "old", devices, 50, 20, 5)  # 145 sealed, 5 pending
    sealed = ledger.sealed()
    assert sealed == 145
    before = run_cli("audit", "--db", ledger.db)
    assert before.exit_code == 0, before.output
    refused = CollectorProcess(ledger, broker, *ARGS)
    refused.start(wait_connected=False)
    assert refused.proc is not None and refused.proc.wait(30) != 0

    # Killed after the second chunk of tree nodes, then while signing the head checkpoint.
    first = _migrate(ledger, "--chunk", "32", crash_at="migrate.before_commit:3")
    assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr
    assert int(ledger.sql("SELECT value FROM meta WHERE key = 'tree_size'")[0][0]) == 64
    second = _migrate(ledger, "--chunk", "32", crash_at="checkpoint.before_commit")
    assert second.returncode == -signal.SIGKILL, second.stdout + second.stderr
    assert ledger.count("checkpoints") == 0  # the tree is complete, its checkpoint not yet
    assert int(ledger.sql("SELECT value FROM meta WHERE key = 'tree_size'")[0][0]) == 145
    done = _migrate(ledger, "--chunk", "32")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tree size:      145 (0 readings added now)" in done.stdout
    assert "(signed now)" in done.stdout
    again = _migrate(ledger)
    assert again.returncode == 0 and "(signed now)" not in again.stdout
    leaves = _leaves(ledger)
    assert ledger.sql("SELECT size, root FROM checkpoints") == [(145, root(leaves[:145]))]
    audit = run_cli("audit", "--db", ledger.db)
    assert audit.exit_code == 0, audit.output
    assert "log tree of 145 leaves" in audit.output

    # A reading sealed in a format 1 block is proven against the checkpoint now.
    proof = tmp_path / "old.proof"
    assert run_cli("proof", "--db", ledger.db, "old-001", "3", "-o", str(proof)).exit_code == 0
    assert run_cli("verify-proof", str(proof), "--policy", ledger.vkey).exit_code == 0

    # The collector carries on with format 2 blocks on top of the migrated tree.
    col = CollectorProcess(ledger, broker, *ARGS).start()
    wait_until(lambda: ledger.sealed() == 150, 30, message="the pending readings sealed")
    assert col.stop() == 0
    # The keys enrolled before the log held statements are enrolled in the log now, once.
    assert ledger.statements() == 3
    assert ledger.sql("SELECT size FROM checkpoints ORDER BY size") == [(145,), (153,)]
    assert ledger.sql("SELECT root FROM checkpoints WHERE size = 153")[0][0] == root(
        _leaves(ledger))
    assert run_cli("audit", "--db", ledger.db).exit_code == 0
    out = run_cli("consistency", "--db", ledger.db, "145")
    assert out.exit_code == 0 and out.output.startswith("old 145\n")
    shutil.rmtree(tmp_path / "old")
