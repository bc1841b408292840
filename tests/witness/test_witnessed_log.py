"""A collector and three witnesses, each its own process with its own key and state, on
loopback: every checkpoint gets cosigned, proofs carry the cosignatures and meet a policy, a
witness that is down does not break the quorum, and witnesses that were all down catch up."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from collector.ledger.logkeys import checkpoint_signers, load_note_key, note_key_path
from provenance.checkpoint import Checkpoint, sign_checkpoint
from provenance.keyfile import load_private_key
from provenance.logproof import decode_log_proof
from provenance.merkle import RFC9162_SHA256, consistency_proof, root
from provenance.note import parse_note
from provenance.tlogproof import parse_tlog_proof
from provenance.witnessproto import AddCheckpoint
from tests.support.broker import Broker
from tests.support.collector import CollectorProcess, Device, Ledger, Publisher, run_cli
from tests.support.polling import wait_until
from tests.witness.cleanroom import cosignature_time
from tests.witness.support import WitnessProcess, post, witness_cli

pytestmark = pytest.mark.slow


def _log_identity(ledger: Ledger) -> tuple[str, list[str]]:
    vkeys = Path(ledger.vkey).read_text().split()
    return vkeys[0].split("+")[0], vkeys


def _latest(ledger: Ledger) -> tuple[int, bytes]:
    size, note = ledger.sql("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")[0]
    return int(size), bytes(note)


def _cosigners(ledger: Ledger, size: int) -> set[str]:
    return {str(r[0]) for r in ledger.sql("SELECT witness FROM cosignatures WHERE size = ?",
                                          (size,))}


def _publish(publisher: Publisher, device: Device, n: int) -> None:
    publisher.publish([(device.topic, device.next()) for _ in range(n)])


def _wait_cosigned(ledger: Ledger, sealed: int, witnesses: list[WitnessProcess],
                   timeout: float = 60) -> int:
    """Wait until ``sealed`` readings are in the tree and each of ``witnesses`` cosigned the
    latest checkpoint; its size."""
    wait_until(lambda: ledger.sealed() >= sealed, timeout=timeout)
    want = {w.vkey for w in witnesses}

    def done() -> bool:
        size, _ = _latest(ledger)
        return size >= sealed and want <= _cosigners(ledger, size)

    wait_until(done, timeout=timeout)
    return _latest(ledger)[0]


def _policy(path: Path, ledger: Ledger, witnesses: list[WitnessProcess], quorum: str) -> str:
    _, vkeys = _log_identity(ledger)
    lines = [f"log {v}" for v in vkeys]
    lines += [f"witness w{i} {w.vkey} {w.url}" for i, w in enumerate(witnesses, 1)]
    lines += [f"group main {quorum} " + " ".join(f"w{i}" for i in range(1, len(witnesses) + 1)),
              "quorum main"]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_three_witnesses_quorum_two(tmp_path: Path, broker: Broker) -> None:
    ledger = Ledger(tmp_path / "ledger").init()
    origin, log_vkeys = _log_identity(ledger)
    witnesses = [WitnessProcess(tmp_path / f"w{i}", f"witness{i}.example/w", origin, log_vkeys)
                 for i in (1, 2, 3)]
    for w in witnesses:
        w.start()
    config = tmp_path / "collector.toml"
    config.write_text("[witnessing]\nquorum = 2\nbackoff_max = 1.0\n" + "".join(
        f'\n[[witnessing.witness]]\nurl = "{w.url}"\nvkey = "{w.vkey}"\n' for w in witnesses))
    device = Device("meter-01")
    ledger.enrol([device])
    collector = CollectorProcess(ledger, broker, "--config", str(config), "--block-age", "0.2",
                                 "--workers", "1")
    publisher = Publisher(broker)
    try:
        collector.start()
        # Normal case: each round's checkpoint is cosigned by all three witnesses.
        sizes = []
        for round_ in range(1, 4):
            _publish(publisher, device, 7)
            sizes.append(_wait_cosigned(ledger, 7 * round_, witnesses))
        # The tree also holds the collector's statements (the device's enrolment).
        st = int(ledger.sql("SELECT COUNT(*) FROM readings WHERE device_id = '@collector'")[0][0])
        assert sizes == sorted(set(sizes)) and sizes[-1] == 21 + st
        # Every stored cosignature verifies under its witness's key (clean-room check), and
        # every checkpoint size that a witness cosigned has 2 or more cosignatures.
        rows = ledger.sql("SELECT c.size, c.witness, c.line, k.note FROM cosignatures c "
                          "JOIN checkpoints k ON k.size = c.size")
        assert rows
        for size, vkey, line, note in rows:
            stamped = bytes(note) + line.encode() + b"\n"
            assert cosignature_time(stamped, vkey) is not None
            assert len(_cosigners(ledger, size)) >= 2

        # The proof file carries the cosigned checkpoint; the policy needs 2 of the 3.
        proof = tmp_path / "r.tlog-proof"
        result = run_cli("proof", "--db", ledger.db, "-c", str(config), "meter-01", "20",
                         "--format", "tlog-proof", "-o", str(proof))
        assert result.exit_code == 0, result.output
        checkpoint = parse_tlog_proof(proof.read_bytes()).checkpoint
        for w in witnesses:
            assert cosignature_time(checkpoint, w.vkey) is not None
        policy = _policy(tmp_path / "two.policy", ledger, witnesses, "2")
        result = run_cli("verify-proof", str(proof), "--policy", policy)
        assert result.exit_code == 0, result.output
        assert "cosigned by 3 of 3 policy witnesses (w1, w2, w3); quorum main met" in (
            result.output)
        # Only one witness's cosignature left on the checkpoint: the quorum of 2 fails.
        text = proof.read_bytes()
        for w in witnesses[1:]:
            name = w.name
            text = re.sub(rb"\xe2\x80\x94 " + re.escape(name.encode()) + rb" [^\n]*\n", b"",
                          text)
        assert len(parse_note(parse_tlog_proof(text).checkpoint).signatures) == 3
        one = tmp_path / "one.tlog-proof"
        one.write_bytes(text)
        result = run_cli("verify-proof", str(one), "--policy", policy)
        assert result.exit_code == 1
        assert "witness quorum not met" in result.output and "(w1)" in result.output
        # ... and an altered cosignature makes the checkpoint fail outright.
        whole = proof.read_bytes()
        at = whole.index(b"\xe2\x80\x94 witness2.example/w ") + len(
            "\u2014 witness2.example/w ".encode()) + 20
        flipped = b"A" if whole[at:at + 1] != b"A" else b"B"
        forged = tmp_path / "forged.tlog-proof"
        forged.write_bytes(whole[:at] + flipped + whole[at + 1:])
        assert decode_log_proof(forged.read_bytes()).leaf_index == 20 + st
        result = run_cli("verify-proof", str(forged), "--policy", policy)
        assert result.exit_code == 1 and "witness2.example/w" in result.output

        # One witness down: the quorum is still met.
        witnesses[2].kill()
        _publish(publisher, device, 5)
        size = _wait_cosigned(ledger, 26, witnesses[:2])
        assert witnesses[2].vkey not in _cosigners(ledger, size)
        result = run_cli("checkpoint", "--db", ledger.db, "-c", str(config), "--cosigned")
        assert result.exit_code == 0, result.output
        assert result.output.split("\n")[1] == str(size)
        assert result.output.count("\u2014 witness") == 2

        # All down: ingest goes on; the newest checkpoint is not cosigned.
        for w in witnesses[:2]:
            w.kill()
        _publish(publisher, device, 9)
        wait_until(lambda: ledger.sealed() >= 35, timeout=60)
        time.sleep(0.5)
        assert _cosigners(ledger, _latest(ledger)[0]) == set()
        # They come back: every witness catches up to the newest checkpoint, w3 from the size
        # it last cosigned.
        for w in witnesses:
            w.start()
        size = _wait_cosigned(ledger, 35, witnesses)
        assert size == 35 + st
        caught = collector.wait_event(
            "checkpoint_cosigned", where=lambda e: e.get("witness") == "witness3.example/w"
            and e.get("size") == 35 + st)
        assert caught["old"] == 21 + st
        assert collector.wait_event("witness_failed")  # the outage was reported

        # A rewritten history: the operator re-seals other readings with the same keys and
        # submits its checkpoints. Every witness refuses, and keeps the proof.
        _rewrite_and_submit(ledger, witnesses, held=35 + st, tmp_path=tmp_path)
    finally:
        publisher.close()
        collector.kill()
        for w in witnesses:
            w.kill()


def _rewrite_and_submit(ledger: Ledger, witnesses: list[WitnessProcess], held: int,
                        tmp_path: Path) -> None:
    origin, log_vkeys = _log_identity(ledger)
    signers = checkpoint_signers(origin, load_private_key(ledger.key),
                                 load_note_key(note_key_path(ledger.key)))
    leaves = [RFC9162_SHA256.hash_leaf(b"rewritten %d" % i) for i in range(held + 6)]

    def note(size: int) -> bytes:
        return sign_checkpoint(Checkpoint(origin, size, root(leaves[:size])), signers)

    bigger = held + 6
    for w in witnesses:
        # From scratch: the witness names the size it holds.
        status, kind, body = post(w.url, AddCheckpoint(0, (), note(held)).to_bytes())
        assert (status, kind.split(";")[0], body) == (409, "text/x.tlog.size", b"%d\n" % held)
        # Same size, another root: a split view.
        status, _, body = post(w.url, AddCheckpoint(held, (), note(held)).to_bytes())
        assert status == 422 and b"split view" in body
        # A longer rewritten tree, with its own (valid for it) consistency proof.
        proof = tuple(consistency_proof(leaves[:bigger], held))
        status, _, _ = post(w.url, AddCheckpoint(held, proof, note(bigger)).to_bytes())
        assert status == 422
        out = tmp_path / f"evidence-{w.name.split('.')[0]}"
        listed = witness_cli("misbehaviour", "-c", str(w.config), "-o", str(out)).stdout
        assert "split-view" in listed and "inconsistent" in listed
        for path in sorted(out.iterdir()):
            checked = witness_cli("verify-misbehaviour", str(path), "--vkey", log_vkeys[0])
            assert "misbehaviour PROVEN" in checked.stdout
            # Offline, and tamper-evident: one changed byte in a checkpoint line fails it.
            data = path.read_bytes()
            at = data.index(b"\ncheckpoint ") + 30
            tampered = tmp_path / "tampered.txt"
            tampered.write_bytes(data[:at] + (b"B" if data[at:at + 1] == b"A" else b"A")
                                 + data[at + 1:])
            failed = witness_cli("verify-misbehaviour", str(tampered), check=False)
            assert failed.returncode == 1 and "NOT proven" in failed.stdout
    # Every witness still holds the honest log.
    for w in witnesses:
        assert f"size {held} root {root_hex(ledger, held)}" in witness_cli(
            "status", "-c", str(w.config)).stdout


def root_hex(ledger: Ledger, size: int) -> str:
    return bytes(ledger.sql("SELECT root FROM checkpoints WHERE size = ?", (size,))[0][0]).hex()
