"""Collector statements found by index (collector/ledger/statement_index.py), on both stores:
by type and key, through ``readings_by_statement``, and filled in for the statement rows a
ledger held before the index existed (SQLite migration 7, PostgreSQL migration 4); checked by
``audit`` against the envelopes; and counted by ``stats`` without reading them."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import psycopg
import pytest

from collector.ledger.opening import is_postgres_url, open_store
from collector.ledger.records import BatchWrite, ReadingRecord
from collector.ledger.statement_log import StatementLog
from collector.tools.audit import AuditReport, Finding
from collector.tools.findings import ledger_findings
from collector.tools.stats import collect_stats
from provenance.keys import PrivateKey
from provenance.note import Ed25519NoteSigner
from provenance.statement import (
    ENROL,
    KEY_ROTATE,
    REVOKE,
    STATEMENT_DEVICE,
    Enrolment,
    KeyRotation,
    Revocation,
    enrolment_statement,
    key_rotation_statement,
    revocation_statement,
)

DEVICES = 2_000  # device readings beside the statements, so an index is worth using


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "l.db")
    return str(request.getfixturevalue("pg_url"))


def _sql(where: str, statement: str) -> list[tuple[object, ...]]:
    if is_postgres_url(where):
        with psycopg.connect(where, autocommit=True) as con:
            cur = con.execute(statement.encode())
            return list(cur.fetchall()) if cur.description else []
    con = sqlite3.connect(where)
    try:
        if ";" in statement:
            con.executescript(statement)
            return []
        return con.execute(statement).fetchall()
    finally:
        con.close()


def _fill(where: str) -> tuple[bytes, bytes, bytes]:
    """A ledger with device readings and three statements: an enrolment and a revocation of
    one key, a key rotation. The enrolled kid, another enrolled kid, the new collector kid."""
    collector, new = PrivateKey.generate(), PrivateKey.generate()
    dev, other = PrivateKey.generate().public, PrivateKey.generate().public
    log = StatementLog(collector)
    signed = [
        log.sign(lambda s: enrolment_statement(s, 1_000, Enrolment("d-01", dev, 900))),
        log.sign(lambda s: enrolment_statement(s, 1_000, Enrolment("d-02", other, 900))),
        log.sign(lambda s: revocation_statement(s, 2_000, Revocation("d-01", dev.kid, 1_500,
                                                                     "lost"))),
        log.sign(lambda s: key_rotation_statement(s, 3_000, KeyRotation(
            new.public, Ed25519NoteSigner.generate("example/log").verifier.vkey))),
    ]
    rows = [d.record(i + 1, 5_000) for i, d in enumerate(signed)]
    rows += [ReadingRecord(len(rows) + 1 + i, "d-01", i, 1, 4_000 + i, 5_000, "water",
                           b"env-%d" % i) for i in range(DEVICES)]

    async def go() -> None:
        store = await open_store(where, create=True)
        try:
            await store.commit_batch(BatchWrite(readings=rows))
        finally:
            await store.close()

    asyncio.run(go())
    return dev.kid, other.kid, new.kid


def _lookups(where: str, kids: tuple[bytes, bytes, bytes]) -> dict[str, list[int]]:
    dev, other, new = kids

    async def go() -> dict[str, list[int]]:
        store = await open_store(where)
        try:
            assert await store.reading_count(STATEMENT_DEVICE) == 4
            assert await store.reading_count() == 4 + DEVICES
            stats = await collect_stats(store)
            assert (stats.statements, stats.readings) == (4, DEVICES)
            return {"enrol": [r.seq for r in await store.statements_of(ENROL, dev)],
                    "enrol other": [r.seq for r in await store.statements_of(ENROL, other)],
                    "revoke": [r.seq for r in await store.statements_of(REVOKE, dev)],
                    "rotate": [r.seq for r in await store.statements_of(KEY_ROTATE)],
                    "rotate by kid": [r.seq for r in await store.statements_of(KEY_ROTATE,
                                                                              new)],
                    "none": [r.seq for r in await store.statements_of(ENROL, b"\0" * 32)]}
        finally:
            await store.close()

    return asyncio.run(go())


_EXPECTED = {"enrol": [1], "enrol other": [2], "revoke": [3], "rotate": [4],
             "rotate by kid": [4], "none": []}


def test_statements_are_found_by_type_and_key_through_the_index(where: str) -> None:
    kids = _fill(where)
    assert _lookups(where, kids) == _EXPECTED
    kid = kids[0].hex()
    if is_postgres_url(where):
        _sql(where, "ANALYZE reading_rows, leaves")
        plan = _sql(where, "EXPLAIN SELECT id FROM readings WHERE statement_type = 'enrol' "
                           f"AND statement_kid = '\\x{kid}'::bytea AND id IS NOT NULL "
                           "ORDER BY id")
    else:
        _sql(where, "ANALYZE")
        plan = _sql(where, "EXPLAIN QUERY PLAN SELECT id FROM readings WHERE statement_type "
                           f"= 'enrol' AND statement_kid = X'{kid}' ORDER BY id")
    assert "readings_by_statement" in str(plan), plan


def test_the_migration_indexes_the_statements_already_stored(where: str) -> None:
    kids = _fill(where)
    # Back to the schema before the index: no columns, no index, the migration not applied.
    if is_postgres_url(where):
        # (``readings`` is a view over reading_rows and leaves: it goes back to its
        # migration 3 columns.)
        _sql(where, "CREATE OR REPLACE VIEW readings_3 AS SELECT l.id, r.row_id, r.device_id, "
                    "r.seq, r.boot, r.time_ms, r.received_ms, r.kind, r.envelope "
                    "FROM reading_rows r LEFT JOIN leaves l ON l.row_id = r.row_id; "
                    "DROP VIEW readings; ALTER VIEW readings_3 RENAME TO readings; "
                    "ALTER TABLE reading_rows DROP COLUMN statement_type, "
                    "DROP COLUMN statement_kid; DELETE FROM schema_migrations WHERE version = 4")
    else:
        _sql(where, "DROP INDEX readings_by_statement; "
                    "ALTER TABLE readings DROP COLUMN statement_type; "
                    "ALTER TABLE readings DROP COLUMN statement_kid; "
                    "DELETE FROM schema_migrations WHERE version = 7;")
    assert _lookups(where, kids) == _EXPECTED  # opening the store applied the migration again
    assert _sql(where, "SELECT COUNT(*) FROM readings WHERE statement_type IS NULL") == [
        (DEVICES,)]


def test_audit_names_a_row_whose_statement_columns_are_not_its_envelope(where: str) -> None:
    kids = _fill(where)
    assert _findings(where) == []
    # Someone hides key 1's enrolment from proofs, and dresses a device reading as one.
    other = kids[1].hex()
    if is_postgres_url(where):
        _sql(where, f"UPDATE reading_rows SET statement_kid = '\\x{other}'::bytea "
                    "WHERE row_id = (SELECT row_id FROM leaves WHERE id = 1); "
                    "UPDATE reading_rows SET statement_type = 'enrol' "
                    "WHERE row_id = (SELECT row_id FROM leaves WHERE id = 10)")
    else:
        _sql(where, f"UPDATE readings SET statement_kid = X'{other}' WHERE id = 1; "
                    "UPDATE readings SET statement_type = 'enrol' WHERE id = 10;")
    found = _findings(where)
    assert [(f.check, f.reading_id) for f in found] == [("statement index", 1),
                                                        ("statement index", 10)], found
    assert f"indexed as enrol of key {other[:16]}…, its envelope says enrol of key " in (
        found[0].detail)
    assert found[1].detail == "the row is indexed as enrol, its envelope says no statement"


def _findings(where: str) -> list[Finding]:
    async def go() -> list[Finding]:
        store = await open_store(where)
        try:
            report = AuditReport(collector_kid="")
            await ledger_findings(store, report, block_age_ms=None)
            return [f for f in report.findings if f.check == "statement index"]
        finally:
            await store.close()

    return asyncio.run(go())
