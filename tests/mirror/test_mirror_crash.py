"""`ledger-mirror` killed with SIGKILL mid-catch-up, again and again, at named points and at
whatever point the clock says: after every kill its copy is a prefix of the log (the log's
first entries in order, the log's tree tiles cut to that size, a checkpoint the log served),
every restart goes on from there, and the last one ends at the log's checkpoint root with a
copy that audits clean. Real processes: a collector and a broker fill the log, a static web
server serves its tiles, the mirror runs as `python -m collector.mirror`."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector import faults
from provenance.checkpoint import parse_checkpoint
from provenance.note import parse_note
from tests.support.collector import Device, Ledger, run_cli
from tests.support.logs import (
    export_tiles,
    fill,
    filled_ledger,
    latest_checkpoint,
    mirror_command,
    mirror_env,
    static_site,
)

pytestmark = pytest.mark.slow

CHUNK = "1"  # one entry bundle (256 entries) a commit: many commits to land between


@dataclass
class Log:
    ledger: Ledger
    devices: list[Device]
    site: Path  # the export, served at url
    url: str
    served: list[bytes]  # every checkpoint the site has served, in order

    def entries(self) -> list[bytes]:
        return [bytes(r[0]) for r in self.ledger.sql("SELECT envelope FROM readings ORDER BY id")]

    def tiles(self) -> dict[tuple[int, int], bytes]:
        return {(int(r[0]), int(r[1])): bytes(r[2])
                for r in self.ledger.sql("SELECT level, idx, hashes FROM tree_tiles")}

    def publish(self) -> None:
        export_tiles(self.ledger, self.site)
        self.served.append((self.site / "checkpoint").read_bytes())

    @property
    def size(self) -> int:
        return parse_checkpoint(parse_note(self.served[-1]).text).size


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    ledger, devices = filled_ledger(tmp_path / "log", devices=3, prefix="crash", rounds=300,
                                    block_size=100)
    site = tmp_path / "www" / "log"
    export_tiles(ledger, site)
    with static_site(site.parent) as url:
        yield Log(ledger, devices, site, url + site.name, [(site / "checkpoint").read_bytes()])


def _mirror(log: Log, db: Path, crash_at: str | None = None) -> subprocess.Popen[str]:
    env = mirror_env()
    env.pop(faults.ENV, None)
    if crash_at is not None:
        env[faults.ENV] = crash_at
    return subprocess.Popen(
        mirror_command(db, log.url, log.ledger.vkey, "--workers", "1", "--chunk", CHUNK),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out + err


def _size(db: Path) -> int:
    """The tree size the copy holds (0 for a copy not created yet, or killed while it was)."""
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'tree_size'").fetchone()
    except sqlite3.OperationalError:  # no meta table: killed before its schema committed
        return 0
    finally:
        con.close()
    return int(row[0]) if row else 0


def assert_prefix(log: Log, db: Path) -> int:
    """The copy is the log cut at the size it holds: its entries, tree tiles, device keys and
    checkpoint are the log's. Returns that size."""
    size = _size(db)
    if size == 0:
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute("SELECT id, envelope FROM readings ORDER BY id").fetchall()
        tiles = con.execute("SELECT level, idx, hashes FROM tree_tiles").fetchall()
        kids = {bytes(r[0]) for r in con.execute("SELECT kid FROM device_keys")}
        held = con.execute("SELECT size, note FROM checkpoints").fetchall()
        origin = con.execute("SELECT value FROM meta WHERE key = 'log_origin'").fetchone()
        collector_key = con.execute(
            "SELECT value FROM meta WHERE key = 'collector_public_key'").fetchone()
    finally:
        con.close()
    entries = log.entries()
    assert [r[0] for r in rows] == list(range(1, size + 1)), "entries at their leaf positions"
    assert [bytes(r[1]) for r in rows] == entries[:size], "the log's first entries, in order"
    theirs = log.tiles()
    for level, index, hashes in tiles:
        # A tile of the copy holds the first hashes of the log's tile at that place.
        assert theirs[(level, index)].startswith(bytes(hashes)), (level, index)
        assert len(hashes) == 32 * min(256, (size >> (8 * level)) - 256 * index), (level, index)
    assert kids <= {bytes(r[0]) for r in log.ledger.sql("SELECT kid FROM device_keys")}
    for held_size, note in held:
        assert bytes(note) in log.served and held_size <= size
    assert origin is not None and collector_key is not None, "the log's identity, whole"
    return size


def _run_to_the_end(log: Log, db: Path, old: int) -> None:
    code, output = _finish(_mirror(log, db))
    assert code == 0, output
    if old < log.size:
        assert f"tree size {old} -> {log.size}:" in output, output
    assert assert_prefix(log, db) == log.size
    size, note = latest_checkpoint(db)
    assert (size, note) == (log.size, log.served[-1])
    served_root = parse_checkpoint(parse_note(log.served[-1]).text).root
    assert parse_checkpoint(parse_note(note).text).root == served_root
    audit = run_cli("audit", "--db", str(db))
    assert audit.exit_code == 0, audit.output


def test_a_mirror_killed_at_every_step_of_a_catch_up_resumes_to_the_logs_root(
        log: Log, tmp_path: Path) -> None:
    db = tmp_path / "mirror" / "copy.db"
    db.parent.mkdir()
    kills = [
        "note_key.written",  # its own key written, not in place
        "mirror.identity",  # the policy's collector key stored, the log's origin not yet
        "mirror.before_commit",  # the first chunk written, not committed
        "mirror.after_commit:2",  # two chunks committed
        "mirror.before_commit:2",  # one more committed, the next not
        "mirror.before_commit",  # the last chunk, which holds the checkpoint, not committed
    ]
    sizes = []
    for point in kills:
        code, output = _finish(_mirror(log, db, point))
        assert code == -signal.SIGKILL, (point, output)
        sizes.append(assert_prefix(log, db))
        note = db.with_name(db.name + ".note")
        # Its own key is there whole, or not at all (then made again at the next start).
        assert not note.exists() or note.read_text().startswith("PRIVATE+KEY+"), point
    assert sizes == [0, 0, 0, 512, 768, 768], sizes
    _run_to_the_end(log, db, 768)


def test_a_mirror_killed_by_the_clock_while_the_log_grows_ends_at_the_logs_root(
        log: Log, tmp_path: Path) -> None:
    db = tmp_path / "copy.db"
    _run_to_the_end(log, db, 0)
    # The log grows by 3,000 entries (twelve chunks); the mirror is killed as soon as it has
    # committed something past where it started, after a random pause of up to 50 ms.
    fill(log.ledger, log.devices, rounds=1000, block_size=500, workdir=tmp_path / "broker")
    log.publish()
    rng = random.Random(16)
    landed = []
    for _ in range(5):
        start = assert_prefix(log, db)
        if start == log.size:
            break
        proc = _mirror(log, db)
        while proc.poll() is None and _size(db) == start:
            time.sleep(0.002)
        if proc.poll() is None:
            time.sleep(rng.uniform(0, 0.05))  # somewhere inside the next chunk
            proc.send_signal(signal.SIGKILL)
        code, output = _finish(proc)
        assert code in (0, -signal.SIGKILL), output
        size = assert_prefix(log, db)
        assert size >= start
        if code == -signal.SIGKILL and size < log.size:
            landed.append(size)
    assert len(landed) >= 2, f"kills mid-catch-up at sizes {landed}"
    _run_to_the_end(log, db, assert_prefix(log, db))

