"""Must-show 4: tamper with a sealed ledger — change one byte of a stored envelope, change a
block header, delete a reading row, swap two blocks — and `audit` exits 1 naming the block
(and the reading) that broke."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.collector import (
    CollectorProcess,
    Ledger,
    Publisher,
    make_devices,
    run_cli,
)
from tests.support.polling import wait_until

READINGS = 600  # leaves of the log: the 5 devices' enrolment statements, then their readings
BLOCK = 100
ENROLMENTS = 5


@dataclass(frozen=True)
class Sealed:
    root: Path  # a ledger of READINGS readings in READINGS / BLOCK full blocks


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sealed]:
    root = tmp_path_factory.mktemp("sealed")
    broker = Broker(workdir=root / "broker").start()
    try:
        ledger = Ledger(root / "ledger").init()
        devices = make_devices(5, "tamper")
        ledger.enrol(devices)
        col = CollectorProcess(ledger, broker, "--block-size", str(BLOCK),
                               "--block-age", "30").start()
        try:
            with Publisher(broker) as pub:
                pub.publish((d.topic, d.next()) for _ in range((READINGS - ENROLMENTS) // 5)
                            for d in devices)
            wait_until(lambda: ledger.sealed() >= READINGS - ENROLMENTS, 60, 0.05)
            assert col.stop() == 0
        finally:
            col.kill()
        con = sqlite3.connect(ledger.db)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        yield Sealed(ledger.root)
    finally:
        broker.stop()


@pytest.fixture
def copy(sealed: Sealed, tmp_path: Path) -> Ledger:
    shutil.copytree(sealed.root, tmp_path / "copy")
    return Ledger(tmp_path / "copy")


def audit(ledger: Ledger) -> tuple[int, dict[str, object], str]:
    result = run_cli("audit", "--db", ledger.db, "--collector-key", ledger.public_key, "--json")
    text = run_cli("audit", "--db", ledger.db, "--collector-key", ledger.public_key)
    assert text.exit_code == result.exit_code
    return result.exit_code, json.loads(result.output), text.output


def flip(blob: bytes, index: int) -> bytes:
    b = bytearray(blob)
    b[index] ^= 0x01
    return bytes(b)


def test_untouched_ledger_passes(copy: Ledger) -> None:
    code, report, text = audit(copy)
    assert code == 0, text
    # READINGS leaves: the devices' readings and the collector's enrolment statements.
    assert (report["blocks"], report["readings"] + report["statements"], report["pending"]) == (
        READINGS // BLOCK, READINGS, 0)
    assert report["first_broken"] is None


def reading(ledger: Ledger, reading_id: int) -> tuple[str, int, bytes]:
    row = ledger.sql("SELECT device_id, seq, envelope FROM readings WHERE id = ?",
                     (reading_id,))[0]
    return row[0], row[1], row[2]


@pytest.mark.parametrize("where", ["payload", "signature", "protected header", "first byte"])
def test_one_byte_of_a_stored_envelope(copy: Ledger, where: str) -> None:
    rid = 2 * BLOCK + 50 + 1  # block 2, leaf 50
    device_id, seq, env = reading(copy, rid)
    index = {"payload": len(env) // 2, "signature": len(env) - 3, "protected header": 8,
             "first byte": 0}[where]
    copy.execute("UPDATE readings SET envelope = ? WHERE id = ?", (flip(env, index), rid))
    code, report, text = audit(copy)
    assert code == 1
    first = report["first_broken"]
    assert first == {**first, "block": 2, "leaf": 50, "reading_id": rid,  # type: ignore[dict-item]
                     "device_id": device_id, "seq": seq}
    assert f"first broken: block 2, reading {rid} (leaf 50) device {device_id} seq {seq}" in text
    checks = {f["check"] for f in report["findings"]}  # type: ignore[attr-defined]
    assert "merkle root" in checks  # the block's root no longer matches either


def test_a_block_header_changed(copy: Ledger) -> None:
    header = copy.sql("SELECT header FROM blocks WHERE height = 3")[0][0]
    copy.execute("UPDATE blocks SET header = ? WHERE height = 3",
                 (flip(header, len(header) // 2),))
    code, report, text = audit(copy)
    assert code == 1
    assert report["first_broken"]["block"] == 3  # type: ignore[index]
    assert "first broken: block 3:" in text
    checks = {f["check"] for f in report["findings"] if f["block"] == 3}  # type: ignore[attr-defined]
    assert checks & {"block signature", "block hash"}


def test_a_block_header_and_its_hash_replaced_consistently(copy: Ledger) -> None:
    """Re-hashing the altered header does not help: the collector signature still fails."""
    import hashlib

    header = copy.sql("SELECT header FROM blocks WHERE height = 1")[0][0]
    forged = flip(header, len(header) - 2)
    copy.execute("UPDATE blocks SET header = ?, hash = ? WHERE height = 1",
                 (forged, hashlib.sha256(forged).digest()))
    code, report, _ = audit(copy)
    assert code == 1
    first = report["first_broken"]
    assert (first["block"], first["check"]) == (1, "block signature")  # type: ignore[index]


def test_a_reading_row_deleted(copy: Ledger) -> None:
    rid = 4 * BLOCK + 20 + 1  # block 4, leaf 20
    device_id, seq, _ = reading(copy, rid)
    copy.execute("DELETE FROM readings WHERE id = ?", (rid,))
    code, report, text = audit(copy)
    assert code == 1
    first = report["first_broken"]
    assert (first["block"], first["leaf"], first["reading_id"],  # type: ignore[index]
            first["check"]) == (4, 20, rid, "missing reading")  # type: ignore[index]
    assert f"first broken: block 4, reading {rid} (leaf 20)" in text
    # The device's sequence names what the deleted row was.
    assert {"check": "missing seq", "device_id": device_id, "seq": seq} in [
        {k: f[k] for k in ("check", "device_id", "seq") if k in f}  # type: ignore[attr-defined]
        for f in report["findings"]]  # type: ignore[attr-defined]


def test_two_blocks_swapped(copy: Ledger) -> None:
    copy.execute("UPDATE blocks SET height = -1 WHERE height = 1")
    copy.execute("UPDATE blocks SET height = 1 WHERE height = 2")
    copy.execute("UPDATE blocks SET height = 2 WHERE height = -1")
    code, report, text = audit(copy)
    assert code == 1
    assert report["first_broken"]["block"] == 1  # type: ignore[index]
    assert "first broken: block 1:" in text
    checks = {f["check"] for f in report["findings"] if f["block"] == 1}  # type: ignore[attr-defined]
    assert {"height", "chain link"} <= checks


def test_a_stored_column_edited(copy: Ledger) -> None:
    """Columns are a convenience copy; the audit checks them against the signed envelope."""
    rid = BLOCK + 7 + 1
    copy.execute("UPDATE readings SET seq = seq + 1000 WHERE id = ?", (rid,))
    code, report, _ = audit(copy)
    assert code == 1
    first = report["first_broken"]
    assert (first["block"], first["reading_id"], first["check"]) == (  # type: ignore[index]
        1, rid, "stored columns")


def test_audit_against_another_collector_key_fails(copy: Ledger, tmp_path: Path) -> None:
    other = Ledger(tmp_path / "other").init()
    result = run_cli("audit", "--db", copy.db, "--collector-key", other.public_key)
    assert result.exit_code == 1
    assert "first broken: block 0" in result.output and "block signature" in result.output


def test_audit_usage_errors_exit_2(tmp_path: Path) -> None:
    missing = run_cli("audit", "--db", str(tmp_path / "nope.db"))
    assert missing.exit_code == 2
    assert "does not exist" in missing.output



def cut_off_log(ledger: Ledger, size: int) -> None:
    """The log tree and checkpoints as they were at ``size`` leaves."""
    ledger.execute("DELETE FROM checkpoints WHERE size > ?", (size,))
    for level, index, hashes in ledger.sql("SELECT level, idx, hashes FROM tree_tiles"):
        keep = max(0, min(256, (size >> (8 * level)) - index * 256))
        if keep == 0:
            ledger.execute("DELETE FROM tree_tiles WHERE level = ? AND idx = ?", (level, index))
        else:
            ledger.execute("UPDATE tree_tiles SET hashes = ? WHERE level = ? AND idx = ?",
                           (hashes[:32 * keep], level, index))
    ledger.execute("UPDATE meta SET value = ? WHERE key = 'tree_size'", (size,))


def test_a_cut_off_chain_head_is_caught_by_an_anchor(copy: Ledger) -> None:
    """Deleting the newest block and its readings leaves a consistent shorter chain; only a
    block hash recorded elsewhere (an anchor) reveals it."""
    last = READINGS // BLOCK - 1
    head = copy.sql("SELECT hash FROM blocks WHERE height = ?", (last,))[0][0].hex()
    anchor = f"{last}:{head}"
    assert run_cli("audit", "--db", copy.db, "--anchor", anchor).exit_code == 0
    copy.execute("DELETE FROM blocks WHERE height = ?", (last,))
    copy.execute("DELETE FROM readings WHERE id > ?", (last * BLOCK,))
    copy.execute("DELETE FROM device_state")  # a careful forger rewrites the bookkeeping too
    copy.execute("DELETE FROM gaps")
    cut_off_log(copy, last * BLOCK)
    assert run_cli("audit", "--db", copy.db).exit_code == 0  # consistent on its own
    result = run_cli("audit", "--db", copy.db, "--anchor", anchor)
    assert result.exit_code == 1
    assert f"first broken: block {last}: anchor: expected block {last} with hash {head}" in (
        result.output)
    assert run_cli("audit", "--db", copy.db, "--anchor", "5:zz").exit_code == 2


# issue 13: misleading details ------------------------------------------------------------------

def test_a_header_that_no_longer_decodes_is_reported_as_a_decode_failure(copy: Ledger) -> None:
    """A byte flip that leaves the header undecodable (here: its time range reversed, or any
    other malformation) was reported as "block signature: header does not verify ..."."""
    from provenance.block import SignedBlock
    from provenance.errors import ProvenanceError

    header = copy.sql("SELECT header FROM blocks WHERE height = 2")[0][0]
    for index in range(len(header) - 64):  # not in the signature: that one does decode
        forged = flip(header, index)
        try:
            SignedBlock.decode(forged)
        except ProvenanceError as exc:
            reason = exc.diagnostics()
            break
    else:
        raise AssertionError("no single-bit flip breaks the header's decoding")
    copy.execute("UPDATE blocks SET header = ? WHERE height = 2", (forged,))
    code, report, text = audit(copy)
    assert code == 1
    block2 = [f for f in report["findings"] if f.get("block") == 2]  # type: ignore[attr-defined]
    assert {f["check"] for f in block2} >= {"block header"}
    assert "block signature" not in {f["check"] for f in block2}
    assert f"block header: stored header does not decode: {reason}" in text


def test_two_readings_swapped_inside_a_block_are_named(copy: Ledger) -> None:
    """Exchanging two rows (all columns but the id) keeps every signature and the set of
    leaves; only the Merkle root shows it, and the audit named only the block. It now names
    both readings: the signed root matches with them put back."""
    first, second = 3 * BLOCK + 10 + 1, 3 * BLOCK + 40 + 1  # block 3, leaves 10 and 40
    cols = "device_id, seq, boot, time_ms, received_ms, kind, envelope"
    a = copy.sql(f"SELECT {cols} FROM readings WHERE id = ?", (first,))[0]
    b = copy.sql(f"SELECT {cols} FROM readings WHERE id = ?", (second,))[0]
    copy.execute("DROP INDEX readings_by_device_seq")  # a forger is not held to our indexes
    sets = ", ".join(f"{c.strip()} = ?" for c in cols.split(","))
    copy.execute(f"UPDATE readings SET {sets} WHERE id = ?", (*b, first))
    copy.execute(f"UPDATE readings SET {sets} WHERE id = ?", (*a, second))
    code, report, text = audit(copy)
    assert code == 1
    named = {(f["check"], f.get("reading_id")) for f in report["findings"]}  # type: ignore[attr-defined]
    assert {("reading order", first), ("reading order", second)} <= named
    assert f"matches with readings {first} and {second} exchanged" in text
    assert report["first_broken"]["reading_id"] == first  # type: ignore[index]
