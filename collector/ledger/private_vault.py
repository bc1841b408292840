"""The private vault: the sealed values and grants of private readings, kept beside the log.

Tables ``private_values``, ``private_grants`` and ``erasures`` (migrations 5 and 6). Ingest writes
them in the transaction of the readings they belong to (``SQLiteStore.commit_batch``); the
commands here read them and erase them. Nothing here can decrypt anything: that takes a
reader's private key (collector/tools/private_readings.py).

**Erasure** (:func:`erase_subject`) is crash-safe and leaves no copy in the database files:

1. One transaction appends the erasure record to the log — an ``erase`` collector statement
   (provenance/erasure.py) as the next ``@collector`` row, sealed by the collector's next run
   like any pending reading — notes the request, and deletes the subject's sealed values,
   grants and quarantined private messages, on a connection with ``secure_delete = ON`` (the
   freed bytes are overwritten with zeros). Killed before COMMIT, nothing is erased and nothing
   logged; after it, everything is, and the log says so.
2. Scrub: ``wal_checkpoint(TRUNCATE)``, ``VACUUM`` (rebuilds every page, so no stale copy left
   in a free page or a page's unused space by earlier B-tree moves survives), and
   ``wal_checkpoint(TRUNCATE)`` again (the WAL that held the old and the rebuilt pages is
   emptied to zero bytes).
3. The request row forgets the subject and is marked done.

A rerun of ``erase --subject S`` finds an unfinished request for S and finishes steps 2 and 3.
It needs the ledger to itself (VACUUM): it takes the one-writer lock, so the collector must be
stopped for the minute it takes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector import faults
from collector.errors import NotFoundError, StoreError, UsageError
from collector.ledger.lock import LedgerLock
from collector.ledger.pg_base import is_postgres_url, redact
from collector.ledger.statement_index import statement_terms
from provenance.erasure import Erasure, sign_erasure, verify_erasure
from provenance.errors import ProvenanceError
from provenance.keys import PrivateKey, PublicKey
from provenance.private_message import PrivateMessage
from provenance.statement import STATEMENT_DEVICE, STATEMENT_KIND, SignedStatement

__all__ = ["READER_KIDS", "ErasureResult", "ErasureRow", "PostgresPrivateVault", "PrivateVault",
           "SealedRow", "drop_reader", "erase_subject", "only_reader", "open_vault",
           "reader_prefix"]


@dataclass(frozen=True, slots=True)
class SealedRow:
    reading_id: int
    device_id: str
    seq: int
    subject: str
    data_kid: bytes
    sealed: bytes


@dataclass(frozen=True, slots=True)
class ErasureRow:
    id: int
    subject: str | None
    authority: str
    requested_ms: int
    erased_ms: int | None
    readings: int
    statement_id: int | None  # None: recorded before erasures were logged as statements
    record: bytes


@dataclass(frozen=True, slots=True)
class ErasureResult:
    erasure_id: int
    statement_id: int | None  # the log row of its erase statement
    readings: int
    keys: int
    resumed: bool
    db_bytes_before: int
    db_bytes_after: int


class PrivateVault:
    """Read access to the private tables of one ledger file."""

    def __init__(self, database: str | Path) -> None:
        if not Path(database).exists():
            raise NotFoundError(f"ledger database {database} does not exist")
        self._con = sqlite3.connect(database, timeout=30)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> PrivateVault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    #: How a private value finds its reading (PostgreSQL: by the reading's row).
    _values_join = ("p.reading_id, r.device_id, r.seq, p.subject, p.data_kid, p.sealed "
                    "FROM readings r JOIN private_values p ON p.reading_id = r.id")

    def sealed(self, device_id: str, first: int, last: int | None = None) -> list[SealedRow]:
        """The sealed values of ``device_id``'s readings with seq in ``first..last``."""
        rows = self._con.execute(
            f"SELECT {self._values_join} "
            "WHERE r.device_id = ? AND r.seq BETWEEN ? AND ? ORDER BY r.seq",
            (device_id, first, first if last is None else last)).fetchall()
        return [SealedRow(*r) for r in rows]

    def collector_key_pem(self) -> str | None:
        """The collector public key the ledger records (PEM)."""
        row = self._con.execute("SELECT value FROM meta WHERE key = 'collector_public_key'"
                                ).fetchone()
        return row[0] if row is not None else None

    def envelope(self, device_id: str, seq: int) -> bytes | None:
        row = self._con.execute("SELECT envelope FROM readings WHERE device_id = ? AND seq = ?",
                                (device_id, seq)).fetchone()
        return bytes(row[0]) if row is not None else None

    def grants(self, data_kid: bytes) -> dict[bytes, bytes]:
        """The grants of one data key, by reader key id."""
        return dict(self._con.execute(
            "SELECT reader_kid, grant FROM private_grants WHERE data_kid = ?", (data_kid,)))

    def readers(self) -> list[tuple[bytes, int, int]]:
        """(reader key id, subjects, data keys) for every reader holding a grant."""
        return [(bytes(k), s, n) for k, s, n in self._con.execute(
            "SELECT reader_kid, COUNT(DISTINCT subject), COUNT(*) FROM private_grants "
            "GROUP BY reader_kid ORDER BY reader_kid")]

    def erasures(self) -> list[ErasureRow]:
        return [ErasureRow(*r) for r in self._con.execute(
            "SELECT id, subject, authority, requested_ms, erased_ms, COALESCE(readings, 0), "
            "statement_id, COALESCE(record, x'') FROM erasures ORDER BY id")]

    def erase_statements(self) -> list[tuple[int, bytes]]:
        """(reading id, envelope) of every erase statement in the log, in log order."""
        out = []
        for rid, envelope in self._con.execute(
                "SELECT id, envelope FROM readings WHERE device_id = ? ORDER BY id",
                (STATEMENT_DEVICE,)):
            try:
                if SignedStatement.decode(bytes(envelope)).statement.type == "erase":
                    out.append((int(rid), bytes(envelope)))
            except ProvenanceError:
                continue  # the audit names broken statements
        return out

    def erased(self, device_id: str, seq: int) -> ErasureRow | None:
        """The erasure that destroyed the values of ``device_id`` ``seq``, if any."""
        for row in self.erasures():
            try:
                erasure = Erasure.from_fields(
                    SignedStatement.decode(row.record).statement.fields)
            except ProvenanceError:
                continue
            if (device_id, seq) in erasure.readings:
                return row
        return None


class _Postgres:
    """A psycopg connection that takes the vault's SQLite-style ``?`` placeholders."""

    def __init__(self, url: str) -> None:
        import psycopg

        try:
            self._con = psycopg.connect(url, autocommit=True,
                                        options="-c default_transaction_read_only=on")
        except psycopg.Error as exc:
            raise StoreError(f"cannot open ledger database {redact(url)}: {exc}") from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._con.execute(sql.replace("?", "%s"), params)

    def close(self) -> None:
        self._con.close()


class PostgresPrivateVault(PrivateVault):
    """Read access to the private tables of a PostgreSQL ledger (migration 3): sealed values by
    the reading's row, grants, erasures (their statement's id once sealed)."""

    _values_join = ("r.id, r.device_id, r.seq, p.subject, p.data_kid, p.sealed "
                    "FROM readings r JOIN private_values p ON p.row_id = r.row_id")

    def __init__(self, url: str) -> None:
        self._con = _Postgres(url)  # type: ignore[assignment]

    def grants(self, data_kid: bytes) -> dict[bytes, bytes]:
        return {bytes(k): bytes(g) for k, g in self._con.execute(
            "SELECT reader_kid, key_grant FROM private_grants WHERE data_kid = ?", (data_kid,))}

    def erasures(self) -> list[ErasureRow]:
        return [ErasureRow(*r) for r in self._con.execute(
            "SELECT e.id, e.subject, e.authority, e.requested_ms, e.erased_ms, "
            "COALESCE(e.readings, 0), l.id, COALESCE(e.record, ''::bytea) FROM erasures e "
            "LEFT JOIN leaves l ON l.row_id = e.statement_row ORDER BY e.id")]


def open_vault(database: str | Path) -> PrivateVault:
    """The private tables of ``database``: a SQLite file or a ``postgresql://`` URL."""
    if is_postgres_url(str(database)):
        return PostgresPrivateVault(str(database))
    return PrivateVault(database)


@contextmanager
def _connection(database: str | Path) -> Iterator[sqlite3.Connection]:
    if not Path(database).is_file():  # (sqlite3 would make an empty file of a mistyped path)
        raise NotFoundError(f"ledger database {database} does not exist; create it with "
                            "`ledger-collector init`")
    with closing(sqlite3.connect(database, timeout=30, isolation_level=None)) as con:
        con.execute("PRAGMA secure_delete = ON")
        con.execute("PRAGMA busy_timeout = 30000")
        yield con


def _file_bytes(database: str | Path) -> int:
    p = Path(database)
    return sum(q.stat().st_size for q in (p, p.with_name(p.name + "-wal")) if q.exists())


def erase_subject(database: str | Path, subject: str, *, authority: str, key: PrivateKey,
                  now_ms: int) -> ErasureResult:
    """Destroy ``subject``'s sealed values and grants and record it; see the module doc (on a
    PostgreSQL ledger: :mod:`collector.ledger.pg_erasure`)."""
    if is_postgres_url(str(database)):
        from collector.ledger.pg_erasure import erase_subject_pg

        erasure_id, readings, keys, resumed, before, after = erase_subject_pg(
            str(database), subject, authority=authority, key=key, now_ms=now_ms)
        return ErasureResult(erasure_id, None, readings, keys, resumed, before, after)
    if not Path(database).exists():
        raise NotFoundError(f"ledger database {database} does not exist")
    before = _file_bytes(database)
    with LedgerLock(database), _connection(database) as con:
        try:
            pending = con.execute(
                "SELECT id, statement_id, COALESCE(readings, 0) FROM erasures "
                "WHERE subject = ? AND erased_ms IS NULL", (subject,)).fetchone()
            resumed = pending is not None
            if pending is None:
                erasure_id, statement_id, readings, keys = _destroy(con, subject, authority,
                                                                    key, now_ms)
            else:
                erasure_id, statement_id, readings = pending
                keys = 0
            faults.point("erase.after_commit")
            _scrub(con)
            con.execute("UPDATE erasures SET subject = NULL, erased_ms = ? WHERE id = ?",
                        (now_ms, erasure_id))
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise StoreError(f"erasing subject {subject!r} in {database} failed: {exc}; "
                             "run the same command again to finish it") from None
    return ErasureResult(erasure_id, statement_id, readings, keys, resumed, before,
                         _file_bytes(database))


def check_signing_key(stored_pem: str | bytes | None, key: PrivateKey) -> None:
    """The erase statement is signed by the ledger's collector key, the one its log has
    announced: after ``key rotate`` the key file holds the new key until the collector's next
    start completes the rotation, and a statement signed by it would precede its announcement."""
    if stored_pem is None:
        raise UsageError("the ledger has no collector key: is it initialised?")
    stored = PublicKey.from_pem(stored_pem)
    if stored.kid != key.public.kid:
        raise UsageError(
            f"the key file holds key {key.public.kid_hex}, the ledger's collector key is "
            f"{stored.kid_hex}: if a key rotation is pending, start the collector once to "
            "complete it, then erase; otherwise give the ledger's key (--key)")


def _destroy(con: sqlite3.Connection, subject: str, authority: str, key: PrivateKey,
             now_ms: int) -> tuple[int, int, int, int]:
    con.execute("BEGIN IMMEDIATE")
    try:
        stored = con.execute(
            "SELECT value FROM meta WHERE key = 'collector_public_key'").fetchone()
        check_signing_key(stored[0] if stored else None, key)
        readings = con.execute(
            "SELECT r.device_id, r.seq FROM private_values p JOIN readings r "
            "ON r.id = p.reading_id WHERE p.subject = ? ORDER BY r.id", (subject,)).fetchall()
        kids = [k for (k,) in con.execute(SUBJECT_KIDS.format(p="?"), (subject, subject))]
        erasure = subject_erasure(subject, authority, readings, kids)
        # The next collector statement, as the next row of the log (the one writer holds the
        # lock): sealed into a block by the collector's next run, like any pending reading.
        (next_id,) = con.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM readings").fetchone()
        (seq,) = con.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM readings "
                             "WHERE device_id = ?", (STATEMENT_DEVICE,)).fetchone()
        envelope = sign_erasure(seq, now_ms, erasure, key)
        verify_erasure(envelope, key.public)
        con.execute("INSERT INTO readings(id, device_id, seq, boot, time_ms, received_ms, kind, "
                    "envelope, statement_type, statement_kid) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (next_id, STATEMENT_DEVICE, seq, 0, now_ms, now_ms, STATEMENT_KIND,
                     envelope, *statement_terms(STATEMENT_DEVICE, envelope)))
        cur = con.execute(
            "INSERT INTO erasures(subject, authority, requested_ms, readings, statement_id, "
            "record) VALUES (?,?,?,?,?,?)",
            (subject, authority, now_ms, len(readings), next_id, envelope))
        erasure_id = cur.lastrowid
        assert erasure_id is not None
        con.execute("DELETE FROM private_values WHERE subject = ?", (subject,))
        con.execute("DELETE FROM private_grants WHERE subject = ?", (subject,))
        _drop_quarantined(con, subject)
        faults.point("erase.before_commit")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return erasure_id, next_id, len(readings), len(kids)


def drop_reader(database: str | Path, kid_prefix: str) -> tuple[bytes, int, bool]:
    """Delete every grant held by the reader whose key id starts with ``kid_prefix`` (hex):
    it can no longer open anything stored here. Returns (reader kid, grants deleted, WAL
    emptied). Safe while the collector runs; the WAL is emptied when no reader holds it. On a
    PostgreSQL ledger (:func:`collector.ledger.pg_erasure.drop_reader_pg`) the table is
    rewritten instead, and PostgreSQL's WAL is never emptied from here (False)."""
    prefix = reader_prefix(kid_prefix)
    if is_postgres_url(str(database)):
        from collector.ledger.pg_erasure import drop_reader_pg

        kid, count = drop_reader_pg(str(database), prefix)
        return kid, count, False
    with _connection(database) as con:
        kid = only_reader(prefix, con.execute(READER_KIDS))
        cur = con.execute("DELETE FROM private_grants WHERE reader_kid = ?", (kid,))
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return kid, cur.rowcount, not busy


#: Every reader holding a grant: (reader key id,).
READER_KIDS = "SELECT DISTINCT reader_kid FROM private_grants"


def reader_prefix(kid_prefix: str) -> str:
    """A reader key id prefix as typed, in lower case: at least 8 hex digits (a trailing
    ellipsis, as listings shorten key ids, is dropped)."""
    prefix = kid_prefix.lower().rstrip("…")
    if len(prefix) < 8 or any(c not in "0123456789abcdef" for c in prefix):
        raise NotFoundError(f"{kid_prefix!r}: give at least 8 hex digits of the reader key id")
    return prefix


def only_reader(prefix: str, rows: Iterable[Sequence[Any]]) -> bytes:
    """The one reader key id among ``rows`` (:data:`READER_KIDS`) that starts with
    ``prefix``; none or several are refused."""
    matching = [bytes(row[0]) for row in rows if bytes(row[0]).hex().startswith(prefix)]
    if len(matching) != 1:
        raise NotFoundError(f"{len(matching)} readers hold grants with a key id starting "
                            f"{prefix}; give a unique prefix")
    return matching[0]


#: A subject's data keys, with grants or sealed values (``{p}``: the placeholder).
SUBJECT_KIDS = ("SELECT DISTINCT data_kid FROM private_grants WHERE subject = {p} "
                "UNION SELECT DISTINCT data_kid FROM private_values WHERE subject = {p} "
                "ORDER BY 1")
#: The quarantined messages on private topics: (id, raw).
QUARANTINED_PRIVATE = "SELECT id, raw FROM quarantine WHERE topic LIKE '%{pct}/private'"


def subject_erasure(subject: str, authority: str, readings: Sequence[tuple[str, int]],
                    kids: Sequence[bytes]) -> Erasure:
    """The erasure of ``subject``'s ``readings`` (device, seq) and data keys ``kids``."""
    if not readings and not kids:
        raise NotFoundError(f"no sealed values or grants of subject {subject!r} are "
                            "stored (already erased, or never seen)")
    return Erasure(authority, tuple((d, s) for d, s in readings), tuple(bytes(k) for k in kids))


def subject_messages(rows: Iterable[tuple[int, bytes]], subject: str) -> list[tuple[int]]:
    """The ids among quarantined private messages ``rows`` (id, raw) that are ``subject``'s:
    they hold its sealed values too (e.g. equivocation evidence), so they go with the rest."""
    doomed = []
    for qid, raw in rows:
        try:
            if PrivateMessage.decode(bytes(raw)).subject == subject:
                doomed.append((qid,))
        except ProvenanceError:
            continue
    return doomed


def _drop_quarantined(con: sqlite3.Connection, subject: str) -> None:
    doomed = subject_messages(con.execute(QUARANTINED_PRIVATE.format(pct="")), subject)
    con.executemany("DELETE FROM quarantine WHERE id = ?", doomed)


def _scrub(con: sqlite3.Connection) -> None:
    """Leave no copy of deleted bytes in the WAL, in free pages or in unused page space."""
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("VACUUM")
    faults.point("erase.after_vacuum")
    busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        raise sqlite3.OperationalError("another connection kept the WAL from being emptied")
