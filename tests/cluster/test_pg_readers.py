"""Revoking a reader on a PostgreSQL ledger: private readings of a patient monitor, sealed for
two readers and admitted by a cluster collector; `readers revoke` deletes one reader's grants,
refuses a prefix that names no reader or two, leaves the other reader's grants and the log as
they were, and leaves no copy of the deleted grants in the table's files."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from provenance.keyfile import load_private_key
from provenance.keys import PrivateKey
from tests.support.broker import Broker
from tests.support.cluster import PgLedger, cluster_collector, private_stream
from tests.support.collector import Publisher, run_cli
from tests.support.polling import wait_until
from tests.support.postgres import PostgresServer

COUNT = 20


def _table_bytes(server: PostgresServer, ledger: PgLedger, table: str) -> bytes:
    """The table's data file as PostgreSQL left it on disk (after a CHECKPOINT)."""
    ledger.execute("CHECKPOINT")
    (path,) = ledger.sql(f"SELECT pg_relation_filepath('{table}')")[0]
    return (server.data / path).read_bytes()


def test_revoke_deletes_one_readers_grants_on_postgresql(
        tmp_path: Path, broker: Broker, postgres_server: PostgresServer) -> None:
    ledger = PgLedger(tmp_path / "cluster", url=postgres_server.create_db()).init()
    ward = PrivateKey.generate()
    result = run_cli("devices", "add", "--db", ledger.url, "ward-1", "-",
                     input=ward.public.to_pem())
    assert result.exit_code == 0, result.output
    private = private_stream(ward, tmp_path, COUNT, readers=("clinic", "late"))
    col = cluster_collector(ledger, broker, "collector-0", "--block-size", "10",
                            "--block-age", "0.3").start()
    try:
        with Publisher(broker, "readers-publisher") as pub:
            pub.publish(private)
        wait_until(lambda: ledger.sealed() == COUNT, 60, message="private readings sealed")
    finally:
        assert col.stop() == 0, "".join(col.lines[-20:])

    clinic, late = (load_private_key(tmp_path / f"{n}.pem").public.kid for n in ("clinic",
                                                                               "late"))
    listed = run_cli("readers", "list", "--db", ledger.url)
    assert f"{clinic.hex()}  2 subject(s), 2 data key(s)" in listed.output, listed.output
    assert f"{late.hex()}  2 subject(s), 2 data key(s)" in listed.output, listed.output
    for name in ("clinic", "late"):
        opened = run_cli("reveal", "--db", ledger.url, "ward-1", "3", "--reader-key",
                         str(tmp_path / f"{name}.pem"))
        assert opened.exit_code == 0 and "spo2 = 95 %" in opened.output, opened.output

    # A prefix that names no reader, one too short, and one that names two are refused with
    # SQLite's messages, and delete nothing.
    unknown = run_cli("readers", "revoke", "--db", ledger.url, "00000000")
    assert unknown.exit_code == 2, unknown.output
    assert "0 readers hold grants with a key id starting 00000000" in unknown.output
    short = run_cli("readers", "revoke", "--db", ledger.url, late.hex()[:7])
    assert short.exit_code == 2 and "give at least 8 hex digits" in short.output
    twin = late[:4] + bytes(b ^ 0xFF for b in late[4:])  # shares 8 hex digits with `late`
    ledger.execute("INSERT INTO private_grants(data_kid, reader_kid, subject, key_grant) "
                   "SELECT data_kid, %s, subject, key_grant FROM private_grants LIMIT 1",
                   (twin,))
    ambiguous = run_cli("readers", "revoke", "--db", ledger.url, late.hex()[:8])
    assert ambiguous.exit_code == 2, ambiguous.output
    assert (f"2 readers hold grants with a key id starting {late.hex()[:8]}; give a unique "
            "prefix") in ambiguous.output
    assert ledger.sql("SELECT COUNT(*) FROM private_grants") == [(5,)]

    grants = [bytes(g) for (g,) in ledger.sql(
        "SELECT key_grant FROM private_grants WHERE reader_kid = %s", (late,))]
    assert len(grants) == 2
    before = _table_bytes(postgres_server, ledger, "private_grants")
    assert all(g in before for g in grants), "the scan finds the grants"

    result = run_cli("readers", "revoke", "--db", ledger.url, late.hex()[:12])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"reader {late.hex()}: 2 grant(s) deleted; table "
                                    "rewritten (VACUUM FULL)"), result.output
    assert "WAL is still in use" not in result.output

    assert sorted(bytes(k) for (k,) in ledger.sql(
        "SELECT reader_kid FROM private_grants")) == sorted([clinic, clinic, twin])
    after = _table_bytes(postgres_server, ledger, "private_grants")
    assert not [g for g in grants if g in after], "no copy left in the table's file"
    listed = run_cli("readers", "list", "--db", ledger.url)
    assert late.hex() not in listed.output and clinic.hex() in listed.output
    for seq in ("3", "4"):  # patient-a and patient-b
        gone = run_cli("reveal", "--db", ledger.url, "ward-1", seq, "--reader-key",
                       str(tmp_path / "late.pem"))
        assert gone.exit_code == 2 and "holds no grant" in gone.output, gone.output
        kept = run_cli("reveal", "--db", ledger.url, "ward-1", seq, "--reader-key",
                       str(tmp_path / "clinic.pem"))
        assert kept.exit_code == 0 and "spo2 = 95 %" in kept.output, kept.output
    again = run_cli("readers", "revoke", "--db", ledger.url, late.hex())
    assert again.exit_code == 2 and "0 readers hold grants" in again.output
    audit = run_cli("audit", "--db", ledger.url)
    assert audit.exit_code == 0, audit.output


def test_a_rewrite_held_up_by_a_long_read_gives_up_and_says_what_is_left(
        tmp_path: Path, postgres_server: PostgresServer) -> None:
    """``VACUUM FULL`` queues every other session's use of the table behind it while it waits
    for a long read to end, the collectors' writes included. It gives up after
    ``REWRITE_LOCK_TIMEOUT`` (5 s): the grants are deleted, the output says the rewrite is left
    to do, and a write queued behind it goes through."""
    ledger = PgLedger(tmp_path / "cluster", url=postgres_server.create_db()).init()
    reader, other = (PrivateKey.generate().public.kid for _ in range(2))
    for n, kid in enumerate((reader, reader, other)):
        ledger.execute("INSERT INTO private_grants(data_kid, reader_kid, subject, key_grant) "
                       "VALUES (%s, %s, 'patient-a', 'grant')", (bytes([n]) * 16, kid))
    result: list[Any] = []
    with psycopg.connect(ledger.url) as holder:
        holder.execute("SELECT COUNT(*) FROM private_grants").fetchone()  # a read left open
        ends = threading.Timer(40, holder.close)  # the earlier code waits for it to end
        ends.start()
        revoke = threading.Thread(target=lambda: result.append(
            run_cli("readers", "revoke", "--db", ledger.url, reader.hex()[:12])))
        revoke.start()
        wait_until(lambda: ledger.sql(
            "SELECT COUNT(*) FROM pg_locks WHERE relation = 'private_grants'::regclass "
            "AND mode = 'AccessExclusiveLock' AND NOT granted") == [(1,)], 20,
            message="the rewrite waiting for the table")
        started = time.monotonic()
        ledger.execute("INSERT INTO private_grants(data_kid, reader_kid, subject, key_grant) "
                       "VALUES (%s, %s, 'patient-b', 'grant')", (bytes([9]) * 16, other))
        queued = time.monotonic() - started
        revoke.join(60)
        ends.cancel()
    assert queued < 20, f"a write waited {queued:.1f} s behind the rewrite"
    (done,) = result
    assert done.exit_code != 0, done.output
    assert f"reader {reader.hex()}: 2 grant(s) deleted, but rewriting private_grants" in \
        done.output, done.output
    assert "for more than 5s, so the rewrite gave up" in done.output, done.output
    assert "VACUUM FULL private_grants" in done.output, done.output
    assert ledger.sql("SELECT COUNT(*) FROM private_grants WHERE reader_kid = %s",
                      (reader,)) == [(0,)]
    assert ledger.sql("SELECT COUNT(*) FROM private_grants") == [(2,)]
