"""Erasure of a subject's sealed values on a PostgreSQL ledger (the SQLite one:
:func:`collector.ledger.private_vault.erase_subject`).

1. One transaction holding the ``@collector`` device row's lock (so no collector signs a
   statement meanwhile) appends the ``erase`` collector statement with the next statement seq
   as a row without a leaf id (the cluster's sealer numbers it, as it numbers readings), notes
   the request, and deletes the subject's sealed values, grants and quarantined private
   messages. Killed before COMMIT, nothing is erased and nothing logged. The collectors may run
   meanwhile.
2. ``VACUUM FULL`` rewrites the three tables into new files and drops the old ones, so no table
   file keeps a deleted byte.
3. The request forgets the subject and is marked done.

What PostgreSQL keeps outside the table files is not reached from here: the WAL holds the
deleted rows until its segments are recycled, and so do WAL archives, base backups and
standbys (docs/privacy.md, docs/scaling.md). A rerun for the same subject finishes steps 2-3.

Revoking a reader (:func:`drop_reader_pg`) deletes its grants in one transaction, then
``VACUUM FULL`` rewrites ``private_grants``, with the same reach.

``VACUUM FULL`` needs each table to itself for the moment of the rewrite. While it waits for
that, every other session's reads and writes of the table queue behind it, the collectors'
admission of private readings included; so it waits at most :data:`REWRITE_LOCK_TIMEOUT` and
then gives up, saying what is left to do (the deletion stands).
"""

from __future__ import annotations

from typing import Any

import psycopg

from collector import faults
from collector.errors import StoreError
from collector.ledger.pg_base import redact
from collector.ledger.private_vault import (
    QUARANTINED_PRIVATE,
    READER_KIDS,
    SUBJECT_KIDS,
    check_signing_key,
    only_reader,
    subject_erasure,
    subject_messages,
)
from collector.ledger.statement_index import statement_terms
from provenance.erasure import sign_erasure, verify_erasure
from provenance.keys import PrivateKey
from provenance.statement import STATEMENT_DEVICE, STATEMENT_KIND

__all__ = ["REWRITE_LOCK_TIMEOUT", "RewriteGaveUp", "drop_reader_pg", "erase_subject_pg"]

#: How long ``VACUUM FULL`` waits for a table a long read or write holds (PostgreSQL's
#: ``lock_timeout``), so that it never stalls the collectors' writes for longer.
REWRITE_LOCK_TIMEOUT = "5s"


class RewriteGaveUp(StoreError):
    """``VACUUM FULL`` waited :data:`REWRITE_LOCK_TIMEOUT` for its tables and gave up."""


def _rewrite(con: psycopg.Connection[Any], tables: str) -> None:
    """``VACUUM FULL`` of ``tables``, waiting at most :data:`REWRITE_LOCK_TIMEOUT` for them
    (only the rewrite: the connection's own setting is put back after it)."""
    con.execute(f"SET lock_timeout = '{REWRITE_LOCK_TIMEOUT}'")
    try:
        con.execute(f"VACUUM FULL {tables}")
    except psycopg.errors.LockNotAvailable:
        raise RewriteGaveUp(f"another session held {tables} for more than "
                            f"{REWRITE_LOCK_TIMEOUT}, so the rewrite gave up rather than hold "
                            "up the collectors") from None
    finally:
        con.execute("RESET lock_timeout")


def erase_subject_pg(url: str, subject: str, *, authority: str, key: PrivateKey,
                     now_ms: int) -> tuple[int, int, int, bool, int, int]:
    """(erasure id, readings, data keys, resumed, database bytes before, after)."""
    try:
        with psycopg.connect(url, autocommit=True) as con:
            before = _size(con)
            pending = con.execute(
                "SELECT id, COALESCE(readings, 0) FROM erasures "
                "WHERE subject = %s AND erased_ms IS NULL", (subject,)).fetchone()
            resumed = pending is not None
            if pending is None:
                erasure_id, readings, keys = _destroy(con, subject, authority, key, now_ms)
            else:
                (erasure_id, readings), keys = pending, 0
            faults.point("erase.after_commit")
            _rewrite(con, "private_values, private_grants, quarantine")
            con.execute("UPDATE erasures SET subject = NULL, erased_ms = %s WHERE id = %s",
                        (now_ms, erasure_id))
            return erasure_id, readings, keys, resumed, before, _size(con)
    except (psycopg.Error, RewriteGaveUp) as exc:
        raise StoreError(f"erasing subject {subject!r} in {redact(url)} failed: {exc}; run "
                         "the same command again to finish it") from None


def drop_reader_pg(url: str, prefix: str) -> tuple[bytes, int]:
    """Delete every grant of the one reader whose key id starts with ``prefix`` (checked by
    :func:`collector.ledger.private_vault.reader_prefix`); (reader kid, grants deleted). The
    collectors may run meanwhile: the rewrite holds the table for the moment it takes."""
    try:
        with psycopg.connect(url, autocommit=True) as con:
            with con.transaction():
                kid = only_reader(prefix, con.execute(READER_KIDS))
                cur = con.execute("DELETE FROM private_grants WHERE reader_kid = %s", (kid,))
            done = f"reader {kid.hex()}: {cur.rowcount} grant(s) deleted"
            try:
                _rewrite(con, "private_grants")
            except (psycopg.Error, RewriteGaveUp) as exc:
                raise StoreError(f"{done}, but rewriting private_grants in {redact(url)} "
                                 f"failed: {exc}; the deleted grants may stay in the table's "
                                 "files until `VACUUM FULL private_grants` runs") from None
            return kid, cur.rowcount
    except psycopg.Error as exc:
        raise StoreError(f"revoking reader {prefix} in {redact(url)} failed: {exc}") from None


def _size(con: psycopg.Connection[Any]) -> int:
    row = con.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def _destroy(con: psycopg.Connection[Any], subject: str, authority: str, key: PrivateKey,
             now_ms: int) -> tuple[int, int, int]:
    with con.transaction():
        stored = con.execute(
            "SELECT value FROM meta WHERE key = 'collector_public_key'").fetchone()
        check_signing_key(stored[0] if stored else None, key)
        con.execute("INSERT INTO device_locks(device_id) VALUES (%s) ON CONFLICT DO NOTHING",
                    (STATEMENT_DEVICE,))
        con.execute("SELECT device_id FROM device_locks WHERE device_id = %s FOR UPDATE",
                    (STATEMENT_DEVICE,))
        readings = con.execute(
            "SELECT r.device_id, r.seq FROM private_values p JOIN reading_rows r "
            "ON r.row_id = p.row_id WHERE p.subject = %s ORDER BY r.xid, r.row_id",
            (subject,)).fetchall()
        kids = [k for (k,) in con.execute(SUBJECT_KIDS.format(p="%s"), (subject, subject))]
        erasure = subject_erasure(subject, authority, readings, kids)
        row = con.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM reading_rows "
                          "WHERE device_id = %s", (STATEMENT_DEVICE,)).fetchone()
        seq = int(row[0]) if row else 1
        envelope = sign_erasure(seq, now_ms, erasure, key)
        verify_erasure(envelope, key.public)
        row = con.execute(
            "INSERT INTO reading_rows(device_id, seq, boot, time_ms, received_ms, kind, "
            "envelope, statement_type, statement_kid) VALUES (%s, %s, 0, %s, %s, %s, %s, %s, %s) "
            "RETURNING row_id",
            (STATEMENT_DEVICE, seq, now_ms, now_ms, STATEMENT_KIND, envelope,
             *statement_terms(STATEMENT_DEVICE, envelope))).fetchone()
        assert row is not None
        made = con.execute(
            "INSERT INTO erasures(subject, authority, requested_ms, readings, statement_row, "
            "record) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (subject, authority, now_ms, len(readings), row[0], envelope)).fetchone()
        assert made is not None
        con.execute("DELETE FROM private_values WHERE subject = %s", (subject,))
        con.execute("DELETE FROM private_grants WHERE subject = %s", (subject,))
        doomed = subject_messages(con.execute(QUARANTINED_PRIVATE.format(pct="%")), subject)
        with con.cursor() as cur:
            cur.executemany("DELETE FROM quarantine WHERE id = %s", doomed)
        faults.point("erase.before_commit")
    return int(made[0]), len(readings), len(kids)
