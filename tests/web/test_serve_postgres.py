"""``ledger-collector serve`` on a PostgreSQL ledger: the fleet ledger built by the real
collector, copied into a private PostgreSQL with ``ledger-collector copy``, then served from its
URL. The view's numbers agree with ``stats`` on the same URL, pages and API pages load, a proof
downloaded from it passes ``verify-proof``, its queries use the index, and PostgreSQL refuses
any write made through the view's connections."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector.errors import StoreError
from collector.ledger.records import CheckpointRecord
from collector.web.viewstore import (
    POSTGRES,
    ReadOnlyPostgresStore,
    StorePool,
    pg_device_count_sql,
    pg_device_readings_sql,
)
from tests.support.collector import REPO, run_cli
from tests.support.postgres import PostgresServer
from tests.web.conftest import View, start_view, stop_view
from tests.web.fleet import Fleet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg_ledger(fleet: Fleet, postgres_server: PostgresServer) -> str:
    url = postgres_server.create_db()
    result = run_cli("copy", fleet.ledger.db, url)
    assert result.exit_code == 0, result.output
    return url


@pytest.fixture(scope="module")
def pg_view(pg_ledger: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[View]:
    v = start_view(pg_ledger, tmp_path_factory.mktemp("pg-view-cache"))
    try:
        yield v
    finally:
        stop_view(v)


def get(view: View, path: str, **params: Any) -> httpx.Response:
    return httpx.get(view.url + path, params=params, timeout=30)


def stats_of(url: str) -> dict[str, Any]:
    result = run_cli("stats", "--db", url, "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


def test_serve_names_the_url_without_its_password(pg_view: View, pg_ledger: str) -> None:
    assert any(f"serving {pg_ledger} read-only" in line for line in pg_view.lines), pg_view.lines


def test_overview_and_devices_agree_with_stats_on_the_url(pg_view: View, pg_ledger: str,
                                                          fleet: Fleet) -> None:
    stats = stats_of(pg_ledger)
    assert stats["readings"] == sum(fleet.counts.values())  # the copy is complete
    overview = get(pg_view, "/api/v1/overview").json()
    for key in ("readings", "blocks", "unsealed", "quarantined", "quarantined_by_reason"):
        assert overview[key] == stats[key], key
    assert overview["tree_size"] == stats["readings"] + stats["statements"]
    assert overview["checkpoint"]["size"] == overview["tree_size"]
    devices = {d["device_id"]: d for d in get(pg_view, "/api/v1/devices").json()["devices"]}
    assert set(devices) == set(fleet.devices)
    for dev, row in devices.items():
        want = stats["devices"][dev]
        for key in ("last_seq", "accepted", "missing", "unexplained", "explained",
                    "chain_breaks", "reboots", "quarantined", "last_seen"):
            assert row[key] == want[key], (dev, key)
        assert row["kind"] == fleet.kinds[dev]
        assert row["online"] is None  # presence boards are local to each collector


def test_device_page_and_readings_pages_load(pg_view: View, fleet: Fleet) -> None:
    page = get(pg_view, "/devices/water-01")
    assert page.status_code == 200 and "water-01" in page.text
    assert get(pg_view, "/").status_code == 200
    checkpoint = get(pg_view, "/log/checkpoint")  # the tiles for mirrors, from the same URL
    assert checkpoint.status_code == 200, checkpoint.text
    seen: list[tuple[int, int]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"since": fleet.first_ms,
                                  "until": fleet.first_ms + 10 * 86_400_000, "limit": 50}
        if cursor:
            params["cursor"] = cursor
        r = get(pg_view, "/api/v1/devices/water-01/readings", **params)
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [(x["time_ms"], x["seq"]) for x in body["readings"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(set(seen)) == len(seen) == fleet.counts["water-01"]
    one = get(pg_view, "/api/v1/devices/water-01/readings/10").json()
    assert one["seq"] == 10 and one["block"]["height"] >= 0
    lo, hi = fleet.time_gap
    in_gap = get(pg_view, "/api/v1/devices/water-01/readings", since=lo, until=hi).json()
    assert in_gap["readings"] == []


def test_a_proof_from_the_postgres_view_verifies(pg_view: View, fleet: Fleet,
                                                 tmp_path: Any) -> None:
    r = get(pg_view, "/api/v1/devices/arc-01/readings/31/proof")
    assert r.status_code == 200 and r.headers["content-type"] == "application/cbor"
    proof = tmp_path / "arc.proof"
    proof.write_bytes(r.content)
    result = run_cli("verify-proof", str(proof), "--policy", fleet.ledger.vkey)
    assert result.exit_code == 0, result.output
    proof.write_bytes(r.content[:-1] + bytes([r.content[-1] ^ 1]))
    assert run_cli("verify-proof", str(proof), "--policy", fleet.ledger.vkey).exit_code != 0


def test_the_view_connections_refuse_writes(pg_ledger: str,
                                            postgres_server: PostgresServer) -> None:
    async def attempt() -> list[str]:
        errors = []
        store = await ReadOnlyPostgresStore.open_readonly(pg_ledger)
        try:
            with pytest.raises(StoreError, match="read-only transaction") as e:
                await store.commit_checkpoint(CheckpointRecord(10**9, bytes(32), b"x", None, 0))
            errors.append(str(e.value))
        finally:
            await store.close()
        pool = await StorePool.open(pg_ledger, 2)
        try:
            # A request's snapshot: the write fails, and so does the request's transaction.
            with pytest.raises(StoreError, match="read-only transaction") as e:
                async with pool.store() as s:
                    assert await s.reading_by_id(1) is not None
                    await s.commit_checkpoint(CheckpointRecord(10**9, bytes(32), b"x", None, 0))
            errors.append(str(e.value))
            async with pool.store() as s:  # the connection is usable again
                assert await s.reading_by_id(1) is not None
        finally:
            await pool.close()
        return errors

    assert len(asyncio.run(attempt())) == 2
    dbname = pg_ledger.rsplit("/", 1)[1]
    assert postgres_server.sql("SELECT COUNT(*) FROM checkpoints WHERE size = 1000000000",
                               dbname) == "0"


def test_the_page_query_uses_the_time_index(pg_ledger: str,
                                            postgres_server: PostgresServer) -> None:
    """The page query is a range scan of ``readings_by_device_time`` already in order. On this
    small table the planner would rather read it all and sort, so sequential scans and sorts are
    priced out here: the plan then shows the index can serve the query with no sort."""
    dbname = pg_ledger.rsplit("/", 1)[1]

    async def has_index() -> bool:
        store = await ReadOnlyPostgresStore.open_readonly(pg_ledger)
        try:
            return store.has_time_index
        finally:
            await store.close()

    assert asyncio.run(has_index())
    for after, params in ((False, ("'water-01'", "0", "1125899906842624", "100")),
                          (True, ("'water-01'", "0", "1125899906842624", "0", "0", "100"))):
        sql = pg_device_readings_sql(after) % params
        plan = postgres_server.sql("SET enable_seqscan = off; SET enable_bitmapscan = off; "
                                   f"SET enable_sort = off; EXPLAIN {sql}", dbname)
        assert "Index Scan using readings_by_device_time" in plan, plan
        assert "Sort" not in plan and "Seq Scan" not in plan, plan


@pytest.mark.parametrize(("name", "params", "index"), [
    # (A count over a range reads a device's rows by an index of the device (over the whole
    # time range of this small table, the (device, seq) key is as good as the time index); the
    # few unsealed rows are subtracted apart ("rows": pg_device_count_sql). The ids are the
    # leaves' key: `readings` is a view over reading_rows and leaves.)
    ("rows", ("'water-01'", "0", "1125899906842624"),
     "readings_by_device_time|readings_device_id_seq_key"),
    ("first time", ("'water-01'",), "readings_by_device_time"),
    ("last time", ("'water-01'",), "readings_by_device_time"),
    ("kind", ("'water-01'",), "readings_device_id_seq_key"),
    ("by id", ("5",), "leaves_pkey"),
])
def test_the_other_view_queries_have_an_index(pg_ledger: str, postgres_server: PostgresServer,
                                              name: str, params: tuple[str, ...],
                                              index: str) -> None:
    """The view's own queries (VIEW_QUERIES, as PostgreSQL spells them): an index each."""
    sql = (pg_device_count_sql() if name == "rows" else POSTGRES.sql(name)) % params
    # (Planner statistics first: with none, a small table's estimates can favour another key.)
    plan = postgres_server.sql("ANALYZE reading_rows, leaves; SET enable_seqscan = off; "
                               "SET enable_bitmapscan = off; "
                               f"SET enable_sort = off; EXPLAIN {sql}",
                               pg_ledger.rsplit("/", 1)[1])
    assert any(f"using {ix}" in plan for ix in index.split("|")), plan
    assert "Sort" not in plan and "Seq Scan" not in plan, plan


def test_serve_refuses_a_database_without_a_ledger(postgres_server: PostgresServer) -> None:
    empty = postgres_server.create_db()
    r = subprocess.run([sys.executable, "-m", "collector", "serve", "--db", empty,
                        "--listen", "127.0.0.1:0"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "holds no ledger" in r.stderr, r.stderr
    # and nothing was created in it: the view never migrates
    assert postgres_server.sql("SELECT to_regclass('schema_migrations') IS NULL",
                               empty.rsplit("/", 1)[1]) == "t"


def test_the_stand_alone_tiles_app_serves_the_postgres_log_as_the_view_does(
        pg_view: View, pg_ledger: str, tmp_path: Path) -> None:
    """``tiles_app`` opens the ledger as the view does (read-only, either database): the same
    checkpoint and tiles as the view's ``/log``. A SQLite path with no ledger is refused, not
    made into an empty one."""
    from collector.errors import NotFoundError
    from collector.publish.http import tiles_app

    async def fetch(database: str, paths: list[str]) -> list[httpx.Response]:
        app = tiles_app(database)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://tiles") as client:
            return [await client.get("/" + path) for path in paths]

    paths = ["checkpoint", "tile/0/000", "tile/entries/000"]
    for path, alone in zip(paths, asyncio.run(fetch(pg_ledger, paths)), strict=True):
        served = get(pg_view, "/log/" + path)
        assert alone.status_code == served.status_code == 200, path
        assert alone.content == served.content, path
        assert alone.headers["cache-control"] == served.headers["cache-control"], path
    missing = tmp_path / "none.db"
    with pytest.raises(NotFoundError, match="does not exist"):
        asyncio.run(fetch(str(missing), ["checkpoint"]))
    assert not missing.exists()
