"""What the collector logs of PostgreSQL's connection pool: the first warning of each kind,
with its cause, then at most one a minute with the number held back; errors always."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from collector.errors import StoreError
from collector.ledger.pg_store import PostgresStore
from collector.logs import Sparse, setup_logging
from tests.support.broker import free_port


@pytest.fixture
def pool_logger() -> Iterator[logging.Logger]:
    """The pool's and the collector's loggers, put back as they were afterwards."""
    saved = [(lg, lg.handlers[:], lg.filters[:], lg.level, lg.propagate)
             for lg in (logging.getLogger("psycopg.pool"), logging.getLogger("collector"))]
    yield saved[0][0]
    for lg, handlers, filters, level, propagate in saved:
        lg.handlers[:], lg.filters[:] = handlers, filters
        lg.setLevel(level)
        lg.propagate = propagate


def test_a_database_that_refuses_is_logged_once_with_its_cause(
        pool_logger: logging.Logger) -> None:
    out = io.StringIO()
    setup_logging("json", stream=out)
    url = f"postgresql://ledger:secret@127.0.0.1:{free_port()}/ledger"
    with pytest.raises(StoreError, match="cannot open ledger database"):
        asyncio.run(PostgresStore.open(url, timeout=3.5))  # attempts at 0, 1 and 3 s
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    connecting = [line for line in lines if line["event"].startswith("error connecting")]
    assert len(connecting) == 1, lines
    assert connecting[0]["level"] == "warning"
    assert "refused" in connecting[0]["event"].lower(), connecting
    assert "secret" not in out.getvalue()


def _record(msg: str, created: float, level: int = logging.WARNING) -> logging.LogRecord:
    record = logging.LogRecord("psycopg.pool", level, __file__, 1, msg, ("pool",), None)
    record.created = created
    return record


def test_repeats_are_held_back_a_minute_and_counted() -> None:
    sparse = Sparse(every=60.0)
    connecting = "error connecting in %r: refused"
    assert sparse.filter(_record(connecting, 1000.0))
    assert not sparse.filter(_record(connecting, 1001.0))
    assert not sparse.filter(_record(connecting, 1059.0))
    assert sparse.filter(_record("discarding broken connection: %s", 1002.0))  # another kind
    assert sparse.filter(_record(connecting, 1030.0, logging.ERROR))  # errors always pass
    again = _record(connecting, 1060.5)
    assert sparse.filter(again)
    assert vars(again)["sl_fields"] == {"held_back": 2}
    assert not sparse.filter(_record(connecting, 1061.0))
