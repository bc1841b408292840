"""What indexes a collector statement row: its type and the key it is about.

A proof of a reading carries the statement that enrolled the reading's key, and a proof against
a checkpoint signed by a newer collector key carries the log's ``key-rotate`` statements. Both
are found by index, never by reading every statement: each ``readings`` row of a statement
keeps its type and the key id it is about (``statement_type``, ``statement_kid``; NULL for a
device reading), written with the row whatever leaf index it is given later (a cluster gives
indices when it seals), and indexed by ``readings_by_statement``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from provenance.errors import ProvenanceError
from provenance.statement import ENROL, KEY_ROTATE, REVOKE, STATEMENT_DEVICE, SignedStatement

__all__ = ["IndexRow", "index_row", "index_rows_query", "statement_kid", "statement_terms",
           "statement_type", "statements_query"]

#: A row as ``audit`` checks it: (id, device id, envelope, statement_type, statement_kid).
IndexRow = tuple[int, str, bytes, str | None, bytes | None]
_INDEX_COLUMNS = "id, device_id, envelope, statement_type, statement_kid"


def statement_terms(device_id: str, envelope: bytes) -> tuple[str | None, bytes | None]:
    """(type, key id) of a statement row: the key an ``enrol`` enrols or a ``revoke``
    revokes, the new collector key of a ``key-rotate``, none for other types. (None, None)
    for a device reading, and for a statement that does not decode (``audit`` names it)."""
    if device_id != STATEMENT_DEVICE:
        return None, None
    try:
        statement = SignedStatement.decode(envelope).statement
        if statement.type == ENROL:
            return ENROL, statement.enrolment().kid
        if statement.type == REVOKE:
            return REVOKE, statement.revocation().kid
        if statement.type == KEY_ROTATE:
            return KEY_ROTATE, statement.key_rotation().kid
        return statement.type, None
    except ProvenanceError:
        return None, None


def statement_type(device_id: str, envelope: bytes) -> str | None:
    """The first of :func:`statement_terms` (a SQL function of the SQLite migration)."""
    return statement_terms(device_id, envelope)[0]


def statement_kid(device_id: str, envelope: bytes) -> bytes | None:
    """The second of :func:`statement_terms` (a SQL function of the SQLite migration)."""
    return statement_terms(device_id, envelope)[1]


# The two queries, once for both stores: ``mark`` is the store's parameter placeholder and
# ``sealed`` its condition on sealed rows ("" where every row has its leaf index).

def statements_query(columns: str, mark: str, sealed: str, type_: str,
                     kid: bytes | None) -> tuple[str, tuple[Any, ...]]:
    """The sealed statements of ``type_`` (about ``kid``), by index, in log order."""
    sql = f"SELECT {columns} FROM readings WHERE statement_type = {mark}"
    if kid is None:
        return f"{sql}{sealed} ORDER BY id", (type_,)
    return f"{sql} AND statement_kid = {mark}{sealed} ORDER BY id", (type_, kid)


def index_rows_query(mark: str, sealed: str) -> tuple[str, tuple[Any, ...]]:
    """Every sealed statement row, and every other row indexed as one, by id."""
    return (f"SELECT {_INDEX_COLUMNS} FROM readings WHERE device_id = {mark}{sealed} "
            f"UNION ALL SELECT {_INDEX_COLUMNS} FROM readings WHERE statement_type IS NOT NULL "
            f"AND device_id <> {mark}{sealed} ORDER BY 1", (STATEMENT_DEVICE, STATEMENT_DEVICE))


def index_row(row: Sequence[Any]) -> IndexRow:
    return (int(row[0]), str(row[1]), bytes(row[2]), row[3],
            None if row[4] is None else bytes(row[4]))
