"""A mirror across a collector key rotation, on a real ledger: a SQLite collector runs, the
web view publishes its log at /log, and `ledger-mirror --follow` keeps a copy. After `key
rotate` and a collector restart the log's checkpoints are signed by the new keys; the mirror,
given only the log's first keys, follows the `key-rotate` statement, catches up past it, and
its copy audits clean against the first key. A mirror started again later goes on from what it
learned. A checkpoint signed by keys no rotation statement announced is refused, and a fork
signed by the new keys still gives a proof of misbehaviour."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from collector.ledger.logkeys import checkpoint_signers, load_note_key, note_key_path
from provenance.checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint
from provenance.keys import PrivateKey
from provenance.misbehaviour import verify_misbehaviour
from provenance.note import Ed25519NoteSigner, parse_note, parse_verifier_key
from tests.support.broker import Broker, free_port
from tests.support.collector import (
    CollectorProcess,
    Device,
    Ledger,
    Publisher,
    make_devices,
    run_cli,
)
from tests.support.logs import (
    export_tiles,
    latest_checkpoint,
    mirror_command,
    mirror_env,
    run_mirror,
    static_site,
)
from tests.support.polling import wait_until

pytestmark = pytest.mark.slow


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@contextmanager
def _view(db: str, cache: Path) -> Iterator[str]:
    """`ledger-collector serve` over ``db``; the log's tlog-tiles URL (``.../log``)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "collector", "serve", "--db", db, "--listen",
         f"127.0.0.1:{port}", "--cache-dir", str(cache)],
        env=mirror_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/log"
        wait_until(lambda: _answers(url + "/checkpoint"), 30, 0.1, "the view serving /log")
        yield url
    finally:
        server.terminate()
        server.wait(10)


def _served_size(url: str) -> int:
    with urllib.request.urlopen(url + "/checkpoint", timeout=5) as response:
        note: bytes = response.read()
    return parse_checkpoint(parse_note(note).text).size


def _publish(broker: Broker, devices: list[Device], rounds: int) -> None:
    with Publisher(broker) as pub:
        pub.publish([(d.topic, d.next()) for _ in range(rounds) for d in devices])


def _mirror_with(site: Path, note: bytes, db: Path,
                 policy: Path) -> subprocess.CompletedProcess[str]:
    """One mirror run of ``db`` from the log exported in ``site``, served with ``note`` as its
    checkpoint."""
    (site / "log" / "checkpoint").write_bytes(note)
    with static_site(site) as static:
        return run_mirror(db, static + "log", str(policy), "--workers", "1")


def _count(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
    finally:
        con.close()


def _meta(db: Path, key: str) -> str:
    con = sqlite3.connect(db)
    try:
        return str(con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])
    finally:
        con.close()


class _Following:
    """``ledger-mirror --follow`` in the background, its output in a file."""

    def __init__(self, db: Path, url: str, policy: Path, out: Path) -> None:
        self.out = out
        self.file = out.open("w")
        self.proc = subprocess.Popen(
            mirror_command(db, url, str(policy), "--follow", "0.2", "--workers", "1"),
            env=mirror_env(), stdout=self.file, stderr=subprocess.STDOUT)
        self.db = db

    def held(self) -> int:
        try:
            return latest_checkpoint(self.db)[0]
        except Exception:  # not made yet, or no checkpoint yet
            return -1

    def wait_for(self, size: int) -> None:
        wait_until(lambda: self.held() >= size or self.proc.poll() is not None, 60, 0.1,
                   f"the mirror holding tree size {size}")
        assert self.proc.poll() is None, self.out.read_text()
        assert self.held() == size, self.out.read_text()

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(15)
        self.file.close()
        return self.out.read_text()


def test_a_mirror_follows_the_log_across_a_key_rotation(
        ledger: Ledger, broker: Broker, collector: Callable[..., CollectorProcess],
        tmp_path: Path) -> None:
    devices = make_devices(2, "mrot")
    ledger.enrol(devices)
    first_policy = tmp_path / "first.vkey"  # the log's first keys: all the mirror is given
    first_policy.write_text(Path(ledger.vkey).read_text())
    first_key = PrivateKey.from_pem(Path(ledger.key).read_bytes())
    first_pem = tmp_path / "first.pub.pem"
    first_pem.write_bytes(first_key.public.to_pem().encode())
    db = tmp_path / "mirror.db"

    col = collector("--block-age", "0.2").start()
    try:
        with _view(ledger.db, tmp_path / "cache") as url:
            _publish(broker, devices, 10)
            wait_until(lambda: latest_checkpoint(Path(ledger.db))[0] == 22, 30, 0.05)
            wait_until(lambda: _served_size(url) == 22, 30, 0.05)
            following = _Following(db, url, first_policy, tmp_path / "follow.out")
            try:
                following.wait_for(22)
                assert col.stop() == 0
                rotated = run_cli("key", "rotate", "--db", ledger.db, "--key", ledger.key)
                assert rotated.exit_code == 0, rotated.output
                col = collector("--block-age", "0.2").start()
                col.wait_event("key_rotated", timeout=30)
                _publish(broker, devices, 15)
                size = 53  # 50 readings, two enrolments and the rotation
                wait_until(lambda: latest_checkpoint(Path(ledger.db))[0] == size, 30, 0.05)
                wait_until(lambda: _served_size(url) == size, 30, 0.05)
                following.wait_for(size)
            finally:
                output = following.stop()
            assert "does not verify" not in output, output
            assert "followed the log's key-rotate statement" in output, output

            # The copy holds the rotation and audits clean from the log's first key.
            new_key = PrivateKey.from_pem(Path(ledger.key).read_bytes())
            assert new_key.kid != first_key.kid
            audit = run_cli("audit", "--db", str(db), "--collector-key", str(first_pem),
                            "--json")
            assert audit.exit_code == 0, audit.output
            report = json.loads(audit.output)
            assert report["findings"] == [], report
            assert report["collector_kid"] == new_key.kid.hex()
            assert any("collector key rotated by statement 3" in n for n in report["notes"])

            # The log grows while the mirror is stopped; a new run goes on under the new key.
            _publish(broker, devices, 5)
            grown = size + 10
            wait_until(lambda: latest_checkpoint(Path(ledger.db))[0] == grown, 30, 0.05)
            wait_until(lambda: _served_size(url) == grown, 30, 0.05)
            again = run_mirror(db, url, str(first_policy), "--workers", "1")
            assert again.returncode == 0, again.stdout + again.stderr
            assert f"tree size {size} -> {grown}: 10 readings" in again.stdout
            assert run_cli("audit", "--db", str(db), "--collector-key",
                           str(first_pem)).exit_code == 0

            # A policy naming every key the log had (both .vkey files) does as well: the new
            # keys count from the statement that announced them on.
            both = tmp_path / "both.vkey"
            both.write_text(first_policy.read_text().strip() + "\n" + Path(ledger.vkey).read_text())
            same = run_mirror(db, url, str(both), "--workers", "1")
            assert same.returncode == 0, same.stdout + same.stderr
            assert f"up to date at tree size {grown}" in same.stdout
            whole = run_mirror(tmp_path / "both.db", url, str(both), "--workers", "1")
            assert whole.returncode == 0, whole.stdout + whole.stderr
            assert f"tree size 0 -> {grown}" in whole.stdout
            assert run_cli("audit", "--db", str(tmp_path / "both.db"), "--collector-key",
                           str(first_pem)).exit_code == 0
            for copy in (db, tmp_path / "both.db"):  # the first keys retired, no later one
                retired, = json.loads(_meta(copy, "collector_key_history"))
                assert set(retired["vkeys"]) == set(first_policy.read_text().split()), copy

            # A fresh mirror catches up from zero across the rotation in one run; killed right
            # after committing the rotation's chunk (the rotation not yet in its meta), its
            # next start records the rotation from the copy and its audit is clean.
            fresh = tmp_path / "fresh.db"
            killed = subprocess.run(
                mirror_command(fresh, url, str(first_policy), "--workers", "1"),
                env={**mirror_env(), "SENSORLEDGER_COLLECTOR_CRASH_AT": "mirror.after_commit"},
                capture_output=True, text=True, timeout=120)
            assert killed.returncode == -9, killed.stdout + killed.stderr
            assert latest_checkpoint(fresh)[0] == grown
            half = run_cli("audit", "--db", str(fresh), "--collector-key", str(first_pem))
            assert half.exit_code == 1 and "a key the log never announced" in half.output
            restarted = run_mirror(fresh, url, str(first_policy), "--workers", "1")
            assert restarted.returncode == 0, restarted.stdout + restarted.stderr
            assert f"up to date at tree size {grown}" in restarted.stdout
            assert run_cli("audit", "--db", str(fresh), "--collector-key",
                           str(first_pem)).exit_code == 0
    finally:
        assert col.stop() == 0

    # A checkpoint over the same log signed by keys that no key-rotate statement announced
    # (someone holding other keys, not the log's) is refused, and nothing of it is kept.
    site = tmp_path / "site"
    export_tiles(ledger, site / "log")
    body = parse_checkpoint(parse_note((site / "log" / "checkpoint").read_bytes()).text)
    origin = body.origin
    stranger = checkpoint_signers(origin, PrivateKey.generate(),
                                  Ed25519NoteSigner.generate(origin))
    refused = _mirror_with(site, sign_checkpoint(body, stranger), tmp_path / "refused.db",
                           first_policy)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "no key-rotate statement in the log announced" in refused.stderr, refused.stderr
    assert _count(tmp_path / "refused.db") == 0

    # The same checkpoint signed by the retired keys (kept beside the new ones): the log
    # announced other keys below it, so it is refused too, nothing of it kept.
    kept = Path(ledger.key).with_name(f"collector-key.{first_key.kid.hex()[:16]}.pem")
    retired = checkpoint_signers(origin, first_key, load_note_key(kept.with_suffix(".note")))
    stale = _mirror_with(site, sign_checkpoint(body, retired), tmp_path / "stale.db",
                         first_policy)
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "a checkpoint signed by a retired key" in stale.stderr, stale.stderr
    assert _count(tmp_path / "stale.db") == 0

    # After the rotation a fork is still caught: a checkpoint of the copy's size with another
    # root, signed by the log's new keys, is kept as a proof of misbehaviour under them.
    new_signers = checkpoint_signers(origin, new_key, load_note_key(note_key_path(ledger.key)))
    forked = _mirror_with(site, sign_checkpoint(Checkpoint(origin, grown, bytes(32)),
                                                 new_signers), db, first_policy)
    assert forked.returncode == 1, forked.stdout + forked.stderr
    assert "FORK" in forked.stderr and "(split-view)" in forked.stderr, forked.stderr
    verifiers = [parse_verifier_key(v) for v in Path(ledger.vkey).read_text().split()]
    assert verify_misbehaviour(Path(f"{db}.misbehaviour").read_bytes(), verifiers).ok
    assert latest_checkpoint(db)[0] == grown
