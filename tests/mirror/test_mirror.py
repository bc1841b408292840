"""A mirror built from tiles served over HTTP on loopback: it reaches the checkpoint's root,
follows the log, answers proof / history / audit from its own copy, and refuses what does not
verify: a changed entry, a changed tile, a removed entry, a reading whose key no statement
enrolled, and a rewritten history (a fork, whose two signed checkpoints it keeps)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.ledger.logkeys import checkpoint_signers, load_note_key, note_key_path
from provenance.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint, sign_checkpoint
from provenance.cosignature import CosignatureSigner
from provenance.keys import PrivateKey
from provenance.merkle import RFC9162_SHA256, root
from provenance.misbehaviour import verify_misbehaviour
from provenance.note import (
    EcdsaNoteSigner,
    Ed25519NoteSigner,
    NoteSigner,
    parse_note,
    parse_verifier_key,
)
from provenance.statement import (
    Enrolment,
    KeyRotation,
    enrolment_statement,
    key_rotation_statement,
    sign_statement,
)
from provenance.tiles import Tile, bundle, entry_bundles_of, tiles_of, unbundle
from tests.support.broker import free_port
from tests.support.collector import REPO, Device, Ledger, run_cli
from tests.support.logs import (
    export_tiles,
    fill,
    filled_ledger,
    latest_checkpoint,
    mirror_env,
    run_mirror,
    static_site,
)
from tests.support.polling import wait_until

pytestmark = pytest.mark.slow


@dataclass
class Published:
    ledger: Ledger
    devices: list[Device]
    root: Path  # served over HTTP; the log's export is root / "log"
    url: str  # http://127.0.0.1:PORT/

    def mirror(self, db: Path, site: str = "log", *extra: str) -> subprocess.CompletedProcess[str]:
        return run_mirror(db, self.url + site, self.ledger.vkey, "--workers", "1", *extra)

    def copy_site(self, name: str) -> Path:
        target = self.root / name
        shutil.copytree(self.root / "log", target)
        return target


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    base = tmp_path_factory.mktemp("published")
    ledger, devices = filled_ledger(base, devices=3, prefix="mir", rounds=200, block_size=100)
    site = base / "site"
    export_tiles(ledger, site / "log")
    with static_site(site) as url:
        yield Published(ledger, devices, site, url)


def _root_of(db: Path) -> tuple[int, bytes]:
    size, note = latest_checkpoint(db)
    return size, parse_checkpoint(parse_note(note).text).root


def test_a_mirror_reaches_the_checkpoint_and_answers_from_its_copy(
        published: Published, tmp_path: Path) -> None:
    db = tmp_path / "copy.db"
    first = published.mirror(db)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "tree size 0 -> 603: 600 readings and 3 collector statements verified" in first.stdout
    verifiers = [parse_verifier_key(v) for v in Path(published.ledger.vkey).read_text().split()]
    served = open_checkpoint((published.root / "log" / "checkpoint").read_bytes(),
                             verifiers).checkpoint
    assert _root_of(db) == (served.size, served.root)
    # The same root, recomputed here from the copy's own readings.
    import sqlite3

    con = sqlite3.connect(db)
    envelopes = [r[0] for r in con.execute("SELECT envelope FROM readings ORDER BY id")]
    con.close()
    assert root([RFC9162_SHA256.hash_leaf(e) for e in envelopes]) == served.root

    # proof, history and audit answer from the copy.
    again = published.mirror(db)
    assert again.returncode == 0 and "up to date at tree size 603" in again.stdout
    audit = run_cli("audit", "--db", str(db))
    assert audit.exit_code == 0, audit.output
    assert "600 readings and 3 collector statement(s) verified (0 not yet sealed)" in audit.output
    proof = tmp_path / "r.proof"
    assert run_cli("proof", "--db", str(db), "mir-001", "57", "-o", str(proof)).exit_code == 0
    checked = run_cli("verify-proof", str(proof), "--policy", published.ledger.vkey)
    assert checked.exit_code == 0, checked.output
    assert "[PASS] device key enrolment" in checked.output
    history = tmp_path / "h"
    assert run_cli("history", "--db", str(db), "mir-002", "-o", str(history)).exit_code == 0
    verified = run_cli("verify-history", str(history), "--policy", published.ledger.vkey)
    assert verified.exit_code == 0, verified.output
    assert "device mir-002: 200 readings" in verified.output


def test_a_mirror_follows_the_log_incrementally(published: Published, tmp_path: Path) -> None:
    site = published.copy_site("growing")
    db = tmp_path / "follow.db"
    assert published.mirror(db, "growing").returncode == 0
    # The log grows: more readings, a new export into the same site.
    ledger, devices = published.ledger, published.devices
    grown = Ledger(tmp_path / "grown")
    shutil.copytree(ledger.root, grown.root)
    extra = [Device(d.device_id, key=d.key, seq=d.seq, boot=d.boot, prev=d.prev)
             for d in devices]
    fill(grown, extra, rounds=30, block_size=100, workdir=tmp_path / "broker")
    assert grown.sealed() == 690
    export_tiles(grown, site)
    step = published.mirror(db, "growing")
    assert step.returncode == 0, step.stdout + step.stderr
    assert "tree size 603 -> 693: 90 readings and 0 collector statements" in step.stdout
    assert run_cli("audit", "--db", str(db)).exit_code == 0


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_changed_entry_a_changed_tile_and_a_removed_entry_are_refused(
        published: Published, tmp_path: Path) -> None:
    changed_entry = published.copy_site("changed-entry")
    _flip(changed_entry / "tile/entries/001", 2 + 40)  # inside leaf 256's envelope
    changed_tile = published.copy_site("changed-tile")
    _flip(changed_tile / "tile/0/001", 32 * 10 + 3)
    removed = published.copy_site("removed-entry")
    bundle_file = removed / "tile/entries/002.p/91"
    entries = unbundle(bundle_file.read_bytes(), 91)
    bundle_file.write_bytes(bundle(entries[:30] + entries[31:]))
    cases = {"changed-entry": "entry 256 in tile/entries/001 does not hash to its leaf",
             "changed-tile": "a changed tile",
             "removed-entry": "holds 90 entries, expected 91"}
    for site, words in cases.items():
        db = tmp_path / f"{site}.db"
        result = published.mirror(db, site)
        assert result.returncode == 1, result.stdout + result.stderr
        assert words in result.stderr, result.stderr
        # Nothing unverified is kept: the copy holds no checkpoint it could not verify.
        import sqlite3

        con = sqlite3.connect(db)
        assert con.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0] == 0
        con.close()


def _signers(ledger: Ledger, origin: str) -> list:  # type: ignore[type-arg]
    key = PrivateKey.from_pem(Path(ledger.key).read_bytes())
    return checkpoint_signers(origin, key, load_note_key(note_key_path(ledger.key)))


def _write_log(site: Path, entries: list[bytes], ledger: Ledger,
               signers: Sequence[NoteSigner] = ()) -> None:
    """What an operator holding the log's keys could publish: tiles over ``entries`` and a
    checkpoint signed with the log's keys (or ``signers``)."""
    shutil.rmtree(site, ignore_errors=True)
    leaves = [RFC9162_SHA256.hash_leaf(e) for e in entries]
    for tile in tiles_of(len(leaves)):
        span = 256 ** tile.level
        hashes = [root(leaves[(tile.start + i) * span:(tile.start + i + 1) * span])
                  for i in range(tile.width)]
        (site / tile.path()).parent.mkdir(parents=True, exist_ok=True)
        (site / tile.path()).write_bytes(b"".join(hashes))
    for b in entry_bundles_of(len(entries)):
        (site / b.path()).parent.mkdir(parents=True, exist_ok=True)
        (site / b.path()).write_bytes(bundle(entries[b.start:b.start + b.width]))
    origin = _origin(ledger)
    note = sign_checkpoint(Checkpoint(origin, len(leaves), root(leaves)),
                           list(signers) or _signers(ledger, origin))
    (site / "checkpoint").write_bytes(note)


def _origin(ledger: Ledger) -> str:
    return str(ledger.sql("SELECT value FROM meta WHERE key = 'log_origin'")[0][0])


def _entries(ledger: Ledger) -> list[bytes]:
    return [bytes(r[0]) for r in ledger.sql("SELECT envelope FROM readings ORDER BY id")]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _later_keys(origin: str) -> tuple[PrivateKey, Ed25519NoteSigner, str]:
    """New keys for the log, and their verifier keys as a ``.vkey`` file holds them."""
    key, note = PrivateKey.generate(), Ed25519NoteSigner.generate(origin)
    return key, note, f"{note.verifier.vkey}\n{EcdsaNoteSigner(origin, key).verifier.vkey}\n"


def _rotation(ledger: Ledger, seq: int, key: PrivateKey, note: Ed25519NoteSigner) -> bytes:
    """A key-rotate statement, signed by the log's collector key, naming ``key`` and ``note``."""
    signer = PrivateKey.from_pem(Path(ledger.key).read_bytes())
    return sign_statement(key_rotation_statement(
        seq, _now_ms(), KeyRotation(key.public, note.verifier.vkey)), signer)


def test_a_policy_naming_the_later_keys_accepts_the_checkpoint_sealing_the_rotation(
        published: Published, tmp_path: Path) -> None:
    """A key-rotate statement at the last leaf is sealed under the old keys alone. A policy
    naming every key the log had (both ``.vkey`` files) accepts that checkpoint: the keys the
    statement announces are not among the ones the log started with."""
    origin = _origin(published.ledger)
    key, note, vkeys = _later_keys(origin)
    entries = [*_entries(published.ledger), _rotation(published.ledger, 4, key, note)]
    _write_log(published.root / "rotation-last", entries, published.ledger)
    policy = tmp_path / "every-key.vkey"
    policy.write_text(Path(published.ledger.vkey).read_text().strip() + "\n" + vkeys)
    result = run_mirror(tmp_path / "every.db", published.url + "rotation-last", str(policy),
                        "--workers", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tree size 0 -> 604: 600 readings and 4 collector statements" in result.stdout
    assert "followed the log's key-rotate statement" in result.stdout


def test_a_rotation_to_a_key_that_signed_earlier_statements_is_refused_after_a_restart(
        published: Published, tmp_path: Path) -> None:
    """A policy naming a later key of the log lets it sign statements before any rotation
    announced it; the rotation that announces it afterwards is refused, by a mirror that
    stopped in between as by one that did not."""
    ledger = published.ledger
    origin = _origin(ledger)
    key, note, vkeys = _later_keys(origin)
    policy = tmp_path / "every-key.vkey"
    policy.write_text(Path(ledger.vkey).read_text().strip() + "\n" + vkeys)
    every = [*_signers(ledger, origin), note, EcdsaNoteSigner(origin, key)]
    stranger = Device("mir-050")
    early = sign_statement(enrolment_statement(
        4, _now_ms(), Enrolment(stranger.device_id, stranger.key.public, _now_ms())), key)
    held = [*_entries(ledger), early]
    _write_log(published.root / "early-signer", held, ledger, every)
    db = tmp_path / "held.db"
    first = run_mirror(db, published.url + "early-signer", str(policy), "--workers", "1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "tree size 0 -> 604" in first.stdout
    _write_log(published.root / "early-signer", [*held, _rotation(ledger, 5, key, note),
                                                 stranger.next()], ledger, [note, every[-1]])
    again = run_mirror(db, published.url + "early-signer", str(policy), "--workers", "1")
    assert again.returncode == 1, again.stdout + again.stderr
    assert (f"leaf 604: the key-rotate statement names collector key {key.kid.hex()[:16]}…, "
            "which signed statements before the log announced it") in again.stderr, again.stderr
    assert latest_checkpoint(db)[0] == 604


def test_a_witness_quorum_not_met_is_refused_without_reading_the_entries(
        published: Published, tmp_path: Path) -> None:
    """A checkpoint the log's keys sign but the policy's witnesses do not is refused as such;
    other keys of the log would not change that, so no entry bundle is read for them (this
    copy of the log serves none)."""
    site = published.copy_site("no-bundles")
    shutil.rmtree(site / "tile" / "entries")
    witness = CosignatureSigner.generate("witness.example/w1")
    policy = tmp_path / "witnessed.policy"
    policy.write_text(Path(published.ledger.vkey).read_text().strip() + "\n"
                      f"witness w1 {witness.verifier.vkey}\nquorum w1\n")
    result = run_mirror(tmp_path / "witnessed.db", published.url + "no-bundles", str(policy),
                        "--workers", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("the log's checkpoint of tree size 603 does not verify under the keys of the trust "
            "policy: witness quorum not met") in result.stderr, result.stderr


def test_a_reading_whose_key_was_never_enrolled_is_refused(
        published: Published, tmp_path: Path) -> None:
    stranger = Device("mir-009")
    entries = _entries(published.ledger) + [stranger.next() for _ in range(3)]
    _write_log(published.root / "stranger", entries, published.ledger)
    result = published.mirror(tmp_path / "stranger.db", "stranger")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "leaf 603: signed by a device key that no collector statement earlier in the log " \
           "enrols" in result.stderr


def test_a_rewritten_history_is_reported_as_a_fork_with_its_evidence(
        published: Published, tmp_path: Path) -> None:
    db = tmp_path / "held.db"
    assert published.mirror(db).returncode == 0  # holds the genuine checkpoint of size 603
    genuine = _entries(published.ledger)
    # The operator re-seals another history with the same keys: one reading left out, more
    # readings after, a larger tree, every signature valid.
    rewritten = genuine[:400] + genuine[401:] + [published.devices[0].next() for _ in range(10)]
    site = published.root / "rewritten"
    _write_log(site, rewritten, published.ledger)
    result = published.mirror(db, "rewritten")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FORK: the log's checkpoint of tree size 612 does not extend the checkpoint of " \
           "tree size 603" in result.stderr
    # The evidence: a signed proof of misbehaviour anyone checks offline with the log's keys.
    evidence = Path(str(db) + ".misbehaviour").read_bytes()
    verifiers = [parse_verifier_key(v) for v in Path(published.ledger.vkey).read_text().split()]
    checked = verify_misbehaviour(evidence, verifiers)
    assert checked.ok, checked.render()
    assert b"kind inconsistent" in evidence
    lines = evidence.decode().split("\n")
    held, served = (open_checkpoint(base64.b64decode(line.split(" ", 1)[1]), verifiers).checkpoint
                    for line in lines if line.startswith("checkpoint "))
    assert (held.origin, held.size, served.size) == (served.origin, 603, 612)
    tampered = evidence.replace(b"kind inconsistent", b"kind split-view")
    assert not verify_misbehaviour(tampered, verifiers).ok
    # The two roots cannot both be right: the served tree's first 603 leaves have another root.
    assert root([RFC9162_SHA256.hash_leaf(e) for e in rewritten[:603]]) != held.root
    assert root([RFC9162_SHA256.hash_leaf(e) for e in genuine]) == held.root
    # The copy is unchanged and still audits.
    assert _root_of(db) == (603, held.root)
    assert run_cli("audit", "--db", str(db)).exit_code == 0
    # A stale or same-size checkpoint with another root is a fork too.
    same = published.root / "same-size"
    _write_log(same, genuine[:400] + genuine[401:] + genuine[:1], published.ledger)
    again = published.mirror(db, "same-size")
    assert again.returncode == 1 and "FORK" in again.stderr
    assert "(split-view)" in again.stderr
    assert verify_misbehaviour(Path(str(db) + ".misbehaviour").read_bytes(), verifiers).ok


def test_tiles_of_a_fixture_log_are_whole() -> None:
    # The helper above writes exactly the tiles tlog-tiles names for a size.
    assert {t.path() for t in tiles_of(603)} == {"tile/0/000", "tile/0/001", "tile/0/002.p/91",
                                                 "tile/1/000.p/2"}
    assert Tile(-1, 2, 91).path() == "tile/entries/002.p/91"


def test_the_http_handler_serves_the_same_log_and_nothing_else(
        published: Published, tmp_path: Path) -> None:
    """The read-only Starlette handler, under uvicorn, is a log a mirror follows; paths that
    are not tlog-tiles paths get 404, whatever they try."""
    import http.client

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "SENSORLEDGER_DB": published.ledger.db}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "collector.publish.http:app_from_env",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def get(path: str) -> tuple[int, bytes, str]:
            con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                con.request("GET", path)
                response = con.getresponse()
                return response.status, response.read(), response.getheader("Cache-Control", "")
            finally:
                con.close()

        def up() -> bool:
            try:
                return get("/checkpoint")[0] == 200
            except OSError:
                return False

        wait_until(up, 30, 0.1, "uvicorn up")
        export = published.root / "log"
        for path in ("checkpoint", "tile/0/001", "tile/1/000.p/2", "tile/entries/002.p/91"):
            status, body, cache = get("/" + path)
            assert (status, body) == (200, (export / path).read_bytes()), path
            assert ("immutable" in cache) == (path == "tile/0/001"), path  # full tiles only
        for bad in ("/../ledger.db", "/tile/0/../../ledger.db", "/%2e%2e/ledger.db",
                    "/tile/0/003", "/tile/0/002.p/90", "/ledger.db", "/tile//0/000"):
            assert get(bad)[0] == 404, bad
        result = run_mirror(tmp_path / "served.db", f"http://127.0.0.1:{port}",
                            published.ledger.vkey)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "tree size 0 -> 603" in result.stdout
    finally:
        server.terminate()
        server.wait(10)


def test_a_log_from_before_statements_is_mirrored_against_its_first_enrolments(
        published: Published, tmp_path: Path) -> None:
    """A ledger that predates statements holds readings first; the collector's next start
    logs their keys' enrolments after them. The mirror checks those readings against the keys
    of that first run of statements (and its audit says so); a log with no statement at all
    cannot be mirrored yet."""
    genuine = _entries(published.ledger)
    statements, readings = genuine[:3], genuine[3:]
    _write_log(published.root / "legacy", readings + statements, published.ledger)
    db = tmp_path / "legacy.db"
    result = published.mirror(db, "legacy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "600 readings and 3 collector statements verified" in result.stdout
    audit = run_cli("audit", "--db", str(db))
    assert audit.exit_code == 0, audit.output
    assert "600 reading(s) precede the log's first statement" in audit.output
    # Another key's readings in that prefix are still refused.
    stranger = Device("mir-008")
    _write_log(published.root / "legacy-stranger",
               [stranger.next(), *readings, *statements], published.ledger)
    refused = published.mirror(tmp_path / "legacy-stranger.db", "legacy-stranger")
    assert refused.returncode == 1 and "leaf 0: signed by a device key that no collector " \
        "statement" in refused.stderr
    _write_log(published.root / "no-statements", readings, published.ledger)
    none = published.mirror(tmp_path / "none.db", "no-statements")
    assert none.returncode == 1 and "no enrolment statement" in none.stderr


def test_the_web_view_publishes_the_log_for_mirrors(published: Published, tmp_path: Path) -> None:
    """`ledger-collector serve` mounts the tiles at /log: a mirror follows the view itself."""
    port = free_port()
    env = mirror_env()
    server = subprocess.Popen(
        [sys.executable, "-m", "collector", "serve", "--db", published.ledger.db, "--listen",
         f"127.0.0.1:{port}", "--cache-dir", str(tmp_path / "cache")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import urllib.error
        import urllib.request

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/log/checkpoint",
                                            timeout=2) as response:
                    return bool(response.status == 200)
            except (OSError, urllib.error.URLError):
                return False

        wait_until(up, 30, 0.1, "the view serving /log")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/log/tile/0/000", timeout=5) as r:
            assert r.read() == (published.root / "log" / "tile/0/000").read_bytes()
        result = run_mirror(tmp_path / "view.db", f"http://127.0.0.1:{port}/log",
                            published.ledger.vkey, "--workers", "1")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "tree size 0 -> 603" in result.stdout
    finally:
        server.terminate()
        server.wait(10)
