"""Private readings end to end: agent signing code -> real Mosquitto -> collector -> reveal,
proofs with and without disclosure, erasure (also killed half-way), byte scans of everything.

One ingest per module (the collector and broker are the slow part); each test works on its
own copy of the ledger where it changes it.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.clock import Clock
from agent.data_keys import DataKeys, ValueSealer
from agent.signer import ChainHead, ChainSigner, Draft
from provenance.cose_encrypt import encrypt0, new_data_key
from provenance.keyfile import load_private_key, save_private_key
from provenance.keys import PrivateKey
from provenance.private_message import PrivateMessage
from provenance.sealed_values import Opening
from provenance.senml import Measurement
from provenance.wire import private_topic
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

PATIENT_A, PATIENT_B = "patient-a", "patient-b"


@dataclass
class Sent:
    """What the test knows that nobody else should: every opening, by (subject, seq)."""

    openings: dict[int, tuple[str, Opening]] = field(default_factory=dict)  # seq -> ...
    sealed: dict[str, list[bytes]] = field(default_factory=dict)  # subject -> sealed + grants


@dataclass
class World:
    root: Path
    ledger: Ledger
    oxi: str
    water: Device
    readers: dict[str, Path]  # name -> private key file
    sent: Sent
    broker_seen: list[bytes]
    proofs: dict[str, Path]
    broker: Broker


def _oximeter_values(i: int) -> tuple[Measurement, ...]:
    return (Measurement(name="spo2", value=90 + i % 10, unit="%"),
            Measurement(name="pulse", value=60 + i, unit="1/min"))


class _Subscriber:
    """A client on the broker that keeps every message it sees."""

    def __init__(self, broker: Broker) -> None:
        self.seen: list[bytes] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="eavesdropper")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("sensorledger/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object,
                    msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.seen.append(bytes(msg.payload))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _key(path: Path) -> PrivateKey:
    key = PrivateKey.generate()
    save_private_key(key, path)
    return key


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("private")
    broker = Broker(workdir=root / "broker")
    broker.start()
    try:
        yield _ingest(root, broker)
    finally:
        broker.stop()


def _ingest(root: Path, broker: Broker) -> World:
    ledger = Ledger(root / "ledger").init()
    oxi_key, water = PrivateKey.generate(), Device("water-1")
    readers = {name: root / f"{name}.pem" for name in ("clinic", "outsider", "late")}
    keys = {name: _key(path) for name, path in readers.items()}
    result = run_cli("devices", "add", "--db", ledger.db, "ward3-bed12", "-",
                     input=oxi_key.public.to_pem())
    assert result.exit_code == 0, result.output
    ledger.enrol([water])

    data_keys = DataKeys(root / "agent" / "data-keys.json")
    sealer = ValueSealer(data_keys, [keys["clinic"].public])
    signer = ChainSigner("ward3-bed12", oxi_key, 1, ChainHead(), Clock("synced"), sealer=sealer)
    sent = Sent()
    messages: list[tuple[str, bytes]] = []
    start = now_ms() - 60_000
    for i in range(30):
        if i == 15:  # rotate patient A's key and enrol a reader who comes late
            data_keys.rotate(PATIENT_A)
            sealer.readers = [keys["clinic"].public, keys["late"].public]
        subject = PATIENT_A if i % 3 else PATIENT_B
        draft = Draft("oximeter", "pulse-oximeter", start + i * 1000, True,
                      _oximeter_values(i), {"finger_out": False}, subject=subject)
        entry, head = signer.sign(draft, signer.head)
        signer.advance(head)
        pm = PrivateMessage.decode(entry.envelope)
        pm.check_parts()
        opening = Opening.decode(_decrypt_for_test(pm, data_keys))
        sent.openings[entry.seq] = (subject, opening)
        sent.sealed.setdefault(subject, []).extend([pm.sealed, *pm.grants])
        messages.append((private_topic("ward3-bed12"), entry.envelope))
        messages.append((water.topic, water.next()))

    # A device not enrolled yet: its private readings wait in quarantine as unknown_key.
    late_key = PrivateKey.generate()
    late_signer = ChainSigner("ward-late", late_key, 1, ChainHead(), Clock("synced"),
                              sealer=ValueSealer(DataKeys(root / "agent" / "late-keys.json"),
                                                 [keys["clinic"].public]))
    unknown = []
    for i in range(3):
        entry, head = late_signer.sign(Draft("oximeter", "pulse-oximeter", start + i, True,
                                             _oximeter_values(i), None, subject="patient-c"),
                                       late_signer.head)
        late_signer.advance(head)
        unknown.append((private_topic("ward-late"), entry.envelope))
    (root / "ward-late.pub.pem").write_text(late_key.public.to_pem())
    # Two that the collector must refuse: junk on a private topic, and a public reading
    # (values in the signed payload) dressed as a private message.
    public_env = water.next()
    bad = [(private_topic("ward3-bed12"), b"\xa4junk"),
           (private_topic("water-1"), PrivateMessage(public_env, "patient-x", encrypt0(
               *reversed(new_data_key()), b"nothing"), ()).encode())]
    subscriber = _Subscriber(broker)
    proc = CollectorProcess(ledger, broker)
    try:
        proc.start()
        with Publisher(broker) as pub:
            pub.publish(messages + bad + unknown)
        deadline = time.monotonic() + 60
        while (ledger.sealed() < len(messages) or ledger.count("quarantine") < 5) and (
                time.monotonic() < deadline):
            time.sleep(0.2)
        assert ledger.sealed() == len(messages), ledger.quarantine()
        assert [q[0] for q in ledger.quarantine()] == ["bad_private"] * 2 + ["unknown_key"] * 3
    finally:
        proc.stop()
        subscriber.close()

    proofs: dict[str, Path] = {}
    for name, device, seq in (("private", "ward3-bed12", 4), ("erased", "ward3-bed12", 1),
                              ("public", "water-1", 3)):
        path = root / f"{name}.proof"
        result = run_cli("proof", "--db", ledger.db, device, str(seq), "-o", str(path))
        assert result.exit_code == 0, result.output
        proofs[name] = path
    return World(root, ledger, "ward3-bed12", water, readers, sent, subscriber.seen, proofs,
                 broker)


def _decrypt_for_test(pm: PrivateMessage, data_keys: DataKeys) -> bytes:
    from provenance.cose_encrypt import decrypt0

    _, key = data_keys.current(pm.subject)
    return decrypt0(key, pm.sealed)


def _secrets(sent: Sent, subject: str | None = None) -> list[bytes]:
    """Byte strings no one without a reader key may see: salts, values, names of values."""
    out = [b"spo2", b"\x65pulse"]  # (the kind "pulse-oximeter" is public)
    for s, opening in sent.openings.values():
        if subject is None or s == subject:
            out += [opening.salt, opening.values]
    return out


def _scan(paths: list[Path], needles: list[bytes]) -> list[tuple[str, int]]:
    hits = []
    for path in paths:
        data = path.read_bytes()
        hits += [(path.name, i) for i, n in enumerate(needles) if n in data]
    return hits


def _ledger_files(ledger: Ledger) -> list[Path]:
    db = Path(ledger.db)
    return [p for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
            if p.exists()]


def _copy(world: World, name: str) -> Ledger:
    dest = world.root / name
    # Not the -shm: a copied WAL index can describe another moment than the copied WAL.
    shutil.copytree(world.ledger.root, dest, ignore=shutil.ignore_patterns("*-shm"))
    return Ledger(dest)


def test_no_plaintext_on_the_broker_in_the_ledger_or_in_proofs(world: World) -> None:
    private = [m for m in world.broker_seen if m[:1] == b"\xa4"]
    assert len(private) == 35, "the eavesdropper saw the private messages"
    assert not _scan_bytes(world.broker_seen, _secrets(world.sent))
    assert not _scan(_ledger_files(world.ledger) + list(world.proofs.values()),
                     _secrets(world.sent))
    # The scan can fail: the same values are found once the opening is disclosed.
    disclosed = world.root / "disclosed.proof"
    result = run_cli("proof", "--db", world.ledger.db, world.oxi, "4", "-o", str(disclosed),
                     "--disclose", "--reader-key", str(world.readers["clinic"]))
    assert result.exit_code == 0, result.output
    assert _scan([disclosed], [world.sent.openings[4][1].salt])


def _scan_bytes(messages: list[bytes], needles: list[bytes]) -> list[int]:
    return [i for i, n in enumerate(needles) if any(n in m for m in messages)]


def test_reveal_checks_the_commitment_and_names_unauthorised_readers(world: World) -> None:
    result = run_cli("reveal", "--db", world.ledger.db, world.oxi, "4",
                     "--reader-key", str(world.readers["clinic"]))
    assert result.exit_code == 0, result.output
    assert "spo2 = 94 %" in result.output and "pulse = 64 1/min" in result.output
    assert "match the signed commitment" in result.output
    result = run_cli("reveal", "--db", world.ledger.db, world.oxi, "4",
                     "--reader-key", str(world.readers["outsider"]))
    assert result.exit_code == 2 and "holds no grant" in result.output
    # Rotation: the reader enrolled with the new key reads new readings, not the old ones.
    late = str(world.readers["late"])
    old, new = 4, 16  # both patient A (i % 3 != 0), before and after the rotation at 15
    assert run_cli("reveal", "--db", world.ledger.db, world.oxi, str(old),
                   "--reader-key", late).exit_code == 2
    result = run_cli("reveal", "--db", world.ledger.db, world.oxi, str(new), "--reader-key", late)
    assert result.exit_code == 0 and "spo2 = 96 %" in result.output
    result = run_cli("reveal", "--db", world.ledger.db, "water-1", "3",
                     "--reader-key", late)
    assert result.exit_code == 2 and "public reading" in result.output


def test_history_reveals_a_range_and_discloses_nothing_in_the_file(world: World) -> None:
    out = world.root / "oxi.history"
    result = run_cli("history", "--db", world.ledger.db, world.oxi, "--from", "0", "--to", "9",
                     "-o", str(out), "--reader-key", str(world.readers["clinic"]))
    assert result.exit_code == 0, result.output
    assert result.output.count("match the signed commitment") == 10
    assert not _scan([out], _secrets(world.sent))


def test_proof_without_disclosure_verifies_and_with_disclosure_checks_values(
        world: World) -> None:
    vkey = ["--policy", world.ledger.vkey]
    result = run_cli("verify-proof", str(world.proofs["private"]), *vkey)
    assert result.exit_code == 0, result.output
    assert "values not disclosed" in result.output and "spo2" not in result.output
    disclosed = world.root / "disclosed-4.proof"
    assert run_cli("proof", "--db", world.ledger.db, world.oxi, "4", "-o", str(disclosed),
                   "--disclose", "--reader-key", str(world.readers["clinic"])).exit_code == 0
    result = run_cli("verify-proof", str(disclosed), *vkey)
    assert result.exit_code == 0, result.output
    assert "[PASS] disclosed values" in result.output and "spo2 = 94 %" in result.output
    # Another reading's opening in this proof does not match the signed commitment.
    from provenance.logproof import decode_log_proof

    pf = decode_log_proof(disclosed.read_bytes())
    from dataclasses import replace

    forged = world.root / "forged.proof"
    forged.write_bytes(replace(pf, opening=world.sent.openings[7][1].encode()).encode())
    result = run_cli("verify-proof", str(forged), *vkey)
    assert result.exit_code == 1 and "[FAIL] disclosed values" in result.output


def test_erase_destroys_a_subject_and_every_proof_still_verifies(world: World) -> None:
    ledger = _copy(world, "erase")
    before_other = _scan(_ledger_files(ledger), world.sent.sealed[PATIENT_B])
    assert _scan(_ledger_files(ledger), world.sent.sealed[PATIENT_A])  # the scan can find
    result = run_cli("erase", "--db", ledger.db, "--key", world.ledger.key,
                     "--subject", PATIENT_A, "--authority", "request 2026-113")
    assert result.exit_code == 0, result.output
    assert "sealed values of 20 reading(s)" in result.output
    assert not _scan(_ledger_files(ledger), world.sent.sealed[PATIENT_A]
                     + [PATIENT_A.encode()])
    assert _scan(_ledger_files(ledger), world.sent.sealed[PATIENT_B]) == before_other
    result = run_cli("reveal", "--db", ledger.db, world.oxi, "4",
                     "--reader-key", str(world.readers["clinic"]))
    assert result.exit_code == 2 and "were erased" in result.output
    assert "request 2026-113" in result.output
    # Patient B's readings are untouched.
    assert run_cli("reveal", "--db", ledger.db, world.oxi, "3", "--reader-key",
                   str(world.readers["clinic"])).exit_code == 0
    for proof in world.proofs.values():  # written before the erasure, the erased one too
        assert run_cli("verify-proof", str(proof), "--policy", ledger.vkey).exit_code == 0
    fresh = world.root / "after-erase.proof"
    assert run_cli("proof", "--db", ledger.db, world.oxi, "1", "-o", str(fresh)).exit_code == 0
    assert run_cli("verify-proof", str(fresh), "--policy", ledger.vkey).exit_code == 0
    result = run_cli("audit", "--db", ledger.db, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "erasure (collector statement" in result.output
    assert "authority: request 2026-113" in result.output
    assert "20 reading(s) of ward3-bed12" in result.output
    result = run_cli("erase", "--db", ledger.db, "--key", world.ledger.key,
                     "--subject", PATIENT_A)
    assert result.exit_code == 2 and "already erased" in result.output
    # The erase statement is a leaf of the log: the collector's next run seals it.
    statement_rows = ledger.sql("SELECT id FROM readings WHERE device_id = '@collector' "
                                "AND id = (SELECT MAX(id) FROM readings)")
    assert statement_rows, "the erase statement is the newest row of the log"
    total = ledger.count("readings") + ledger.statements()

    def leaves_sealed() -> int:
        return int(ledger.sql("SELECT COALESCE(MAX(first_reading_id + leaf_count), 1) - 1 "
                              "FROM blocks")[0][0])

    assert leaves_sealed() == total - 1
    with CollectorProcess(ledger, world.broker, "--client-id", "erase-sealer") as proc:
        deadline = time.monotonic() + 30
        while leaves_sealed() < total and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.stop()
    assert leaves_sealed() == total
    result = run_cli("audit", "--db", ledger.db, "--no-progress")
    assert result.exit_code == 0 and "erasure (collector statement" in result.output


@pytest.mark.parametrize("point", ["erase.before_commit", "erase.after_commit",
                                   "erase.after_vacuum"])
def test_erase_killed_is_all_or_nothing_and_a_rerun_finishes(world: World, point: str) -> None:
    ledger = _copy(world, f"kill-{point}")
    args = [sys.executable, "-m", "collector", "erase", "--db", ledger.db, "--key",
            world.ledger.key, "--subject", PATIENT_A]
    env = {**os.environ, "PYTHONPATH": str(REPO), "SENSORLEDGER_COLLECTOR_CRASH_AT": point}
    proc = subprocess.run(args, env=env, cwd=REPO, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = ledger.count("private_values")
    statements = world.ledger.statements()
    if point == "erase.before_commit":
        assert left == 30 and ledger.count("erasures") == 0  # nothing erased, nothing logged
        assert ledger.statements() == statements
        assert run_cli("reveal", "--db", ledger.db, world.oxi, "4", "--reader-key",
                       str(world.readers["clinic"])).exit_code == 0
    else:
        assert left == 10  # everything of patient A is gone, logically, and logged
        assert ledger.statements() == statements + 1  # the erase statement
        audit = run_cli("audit", "--db", ledger.db, "--no-progress")
        assert audit.exit_code == 1 and "erasure unfinished" in audit.output
    rerun = subprocess.run(args, env={**env, "SENSORLEDGER_COLLECTOR_CRASH_AT": ""}, cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert ("finished erasure" in rerun.stdout) == (point != "erase.before_commit")
    assert ledger.count("private_values") == 10
    assert not _scan(_ledger_files(ledger), world.sent.sealed[PATIENT_A])
    assert run_cli("audit", "--db", ledger.db, "--no-progress").exit_code == 0


def test_revoking_a_reader_at_the_collector_removes_its_grants(world: World) -> None:
    ledger = _copy(world, "readers")
    listed = run_cli("readers", "list", "--db", ledger.db)
    late = load_private_key(world.readers["late"]).public.kid.hex()
    clinic = load_private_key(world.readers["clinic"]).public.kid.hex()
    assert f"{late}  1 subject(s), 1 data key(s)" in listed.output
    assert f"{clinic}  2 subject(s), 3 data key(s)" in listed.output
    result = run_cli("readers", "revoke", "--db", ledger.db, late[:12])
    assert result.exit_code == 0 and "1 grant(s) deleted" in result.output
    assert run_cli("reveal", "--db", ledger.db, world.oxi, "16", "--reader-key",
                   str(world.readers["late"])).exit_code == 2
    assert run_cli("reveal", "--db", ledger.db, world.oxi, "16", "--reader-key",
                   str(world.readers["clinic"])).exit_code == 0
    # A mistyped ledger path: a clear error, and no empty file left there.
    typo = Path(ledger.db).with_name("ledgr.db")
    result = run_cli("readers", "revoke", "--db", str(typo), clinic[:12])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert not typo.exists()


def test_why_erase_empties_the_wal_a_delete_alone_leaves_every_copy(world: World) -> None:
    """The measurement behind docs/privacy.md "Erasure scan": deleted rows survive in the WAL
    and in the main file until a checkpoint; the checkpoint (which `erase` runs, with VACUUM)
    removes them."""
    ledger = _copy(world, "scan")
    needles = world.sent.sealed[PATIENT_A]
    assert len(_scan(_ledger_files(ledger), needles)) == len(needles) == 50
    con = sqlite3.connect(ledger.db, isolation_level=None)
    try:
        con.execute("PRAGMA secure_delete = ON")
        con.execute("DELETE FROM private_values WHERE subject = ?", (PATIENT_A,))
        con.execute("DELETE FROM private_grants WHERE subject = ?", (PATIENT_A,))
        assert len(_scan(_ledger_files(ledger), needles)) == 50
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert _scan(_ledger_files(ledger), needles) == []
    finally:
        con.close()


def test_private_readings_of_a_device_enrolled_late_are_replayed_with_their_values(
        world: World) -> None:
    ledger = _copy(world, "replay")
    result = run_cli("devices", "add", "--db", ledger.db, "ward-late",
                     str(world.root / "ward-late.pub.pem"))
    assert result.exit_code == 0, result.output
    result = run_cli("quarantine", "replay", "--db", ledger.db, "--key", world.ledger.key)
    assert result.exit_code == 0 and "3 accepted" in result.output, result.output
    result = run_cli("reveal", "--db", ledger.db, "ward-late", "2", "--reader-key",
                     str(world.readers["clinic"]))
    assert result.exit_code == 0 and "spo2 = 92 %" in result.output, result.output
