"""The JSON API of ``ledger-collector serve`` on a ledger the real collector built: numbers that
agree with ``stats``, keyset pagination over the index, limits refused with a 4xx, 404s, no
path traversal, hostile text kept as text, proofs that ``verify-proof`` accepts, and a ledger
the view never writes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from collector.errors import StoreError
from collector.ledger.records import CheckpointRecord
from collector.web import api
from collector.web.viewstore import SQLITE, ReadOnlySQLiteStore, device_readings_sql
from tests.support.collector import REPO, run_cli
from tests.web.conftest import View, start_view, stop_view
from tests.web.fleet import HOSTILE_EVENT, HOSTILE_NAMES, Fleet


def get(view: View, path: str, **params: Any) -> httpx.Response:
    return httpx.get(view.url + path, params=params, timeout=30)


def raw_get(view: View, target: str) -> tuple[int, bytes]:
    """A request line sent as is (no client-side normalisation of ``..`` or ``%2e``)."""
    u = urlsplit(view.url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_numbers_agree_with_stats(view: View, fleet: Fleet) -> None:
    stats = fleet.ledger.stats()
    overview = get(view, "/api/v1/overview").json()
    assert overview["readings"] == stats["readings"] == sum(fleet.counts.values())
    assert overview["blocks"] == stats["blocks"]
    assert overview["unsealed"] == stats["unsealed"] == 0
    assert overview["quarantined"] == stats["quarantined"] == fleet.quarantined
    assert overview["quarantined_by_reason"] == stats["quarantined_by_reason"]
    # The tree also holds the collector's statements (the devices' enrolments).
    assert overview["tree_size"] == stats["readings"] + stats["statements"]
    assert overview["checkpoint"]["size"] == overview["tree_size"]
    vkeys = Path(fleet.ledger.vkey).read_text().split()
    assert overview["log_vkeys"] == vkeys
    assert [s["role"] for s in overview["checkpoint"]["signatures"]] == ["log"] * len(vkeys)
    devices = {d["device_id"]: d for d in get(view, "/api/v1/devices").json()["devices"]}
    assert set(devices) == set(fleet.devices)
    for dev, row in devices.items():
        want = stats["devices"][dev]
        for key in ("last_seq", "accepted", "missing", "unexplained", "explained",
                    "chain_breaks", "reboots", "quarantined", "last_seen"):
            assert row[key] == want[key], (dev, key)
        assert row["kind"] == fleet.kinds[dev]
    water = devices["water-01"]
    assert (water["explained"], water["unexplained"]) == (2, 3)
    assert get(view, "/api/v1/devices/water-01").json() == water


def test_readings_pages_walk_the_range_once(view: View, fleet: Fleet) -> None:
    since = fleet.first_ms
    until = since + 10 * 86_400_000
    seen: list[tuple[int, int]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"since": since, "until": until, "limit": 37}
        if cursor:
            params["cursor"] = cursor
        body = get(view, "/api/v1/devices/water-01/readings", **params).json()
        seen += [(r["time_ms"], r["seq"]) for r in body["readings"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert len(seen) == fleet.counts["water-01"]
    assert pages == -(-fleet.counts["water-01"] // 37) + (fleet.counts["water-01"] % 37 == 0)
    one = get(view, "/api/v1/devices/water-01/readings/10").json()
    assert one["seq"] == 10 and one["device_id"] == "water-01"
    assert one["block"]["height"] >= 0 and one["checkpoint"]["size"] >= one["leaf_index"] + 1
    assert one["time_utc"].endswith("+00:00")


def test_pagination_query_uses_the_index(fleet: Fleet) -> None:
    async def plans() -> list[list[str]]:
        store = await ReadOnlySQLiteStore.open_readonly(fleet.ledger.db)
        try:
            assert store.has_time_index
            return [await store.explain(device_readings_sql(False), ("water-01", 0, 2**50, 100)),
                    await store.explain(device_readings_sql(True),
                                        ("water-01", 0, 2**50, 0, 0, 100)),
                    await store.explain(SQLITE.sql("count"), ("w", 0, 1))]
        finally:
            await store.close()

    for steps in asyncio.run(plans()):
        wanted = "INDEX readings_by_device_time (device_id=? AND time_ms>"
        assert any(s.startswith("SEARCH readings USING") and wanted in s for s in steps), steps
        assert not any(s.startswith("SCAN") or "TEMP B-TREE" in s for s in steps), steps


def test_the_other_view_queries_are_index_searches(fleet: Fleet) -> None:
    """A device's time span, its kind and a reading by id: a search each, never a scan."""
    queries = [(SQLITE.sql(name), params) for name, params in (
        ("first time", ("w",)), ("last time", ("w",)), ("kind", ("w",)), ("by id", (1,)))]

    async def plans() -> list[list[str]]:
        store = await ReadOnlySQLiteStore.open_readonly(fleet.ledger.db)
        try:
            return [await store.explain(sql, params) for sql, params in queries]
        finally:
            await store.close()

    for steps in asyncio.run(plans()):
        assert all(s.startswith("SEARCH readings") for s in steps), steps


@pytest.mark.parametrize(("path", "params", "words"), [
    ("/api/v1/devices/water-01/readings", {"limit": 1001}, "at most 1000"),
    ("/api/v1/devices/water-01/readings", {"since": 0, "until": 40 * 86_400_000}, "31 days"),
    ("/api/v1/devices/water-01/readings", {"since": 5, "until": 5}, "after"),
    ("/api/v1/devices/water-01/readings", {"cursor": "bm90OmEgY3Vyc29y"}, "cursor"),
    ("/api/v1/devices/water-01/readings", {"since": "yesterday-ish"}, "ISO 8601"),
    ("/api/v1/blocks", {"limit": 100_000}, "at most 500"),
    ("/api/v1/blocks", {"from": 9_999_999_999_999_999_999}, "2^63"),
    ("/api/v1/devices/water-01/readings", {"since": 10**17}, "future"),
    ("/devices/water-01", {"to": 10**15}, "future"),
    ("/api/v1/devices/water-01/readings", {"since": "0001-01-01T00:00:00+01:00"}, "range"),
    ("/api/v1/quarantine", {"limit": "-1"}, "whole number"),
    ("/api/v1/devices/water-01/readings/3/proof", {"format": "pdf"}, "format"),
])
def test_oversized_and_malformed_requests_are_refused(view: View, path: str,
                                                      params: dict[str, Any],
                                                      words: str) -> None:
    r = get(view, path, **params)
    assert r.status_code == 400, r.text
    assert words in (r.json()["error"] if path.startswith("/api/") else r.text)


@pytest.mark.parametrize("path", [
    "/api/v1/nope", "/api/v2/devices", "/api/v1/devices/nosuch", "/api/v1/devices/bad%20id",
    "/api/v1/devices/water-01/readings/999999",
    "/api/v1/devices/water-01/readings/99999999999999999999999",
    "/api/v1/blocks/999999", "/api/v1/checkpoints/7", "/nope", "/devices/nosuch",
    "/devices/water-01/readings/999999", "/blocks/99999",
])
def test_unknown_paths_are_404(view: View, path: str) -> None:
    r = get(view, path)
    assert r.status_code == 404, (path, r.status_code)


@pytest.mark.parametrize("target", [
    "/static/../pyproject.toml", "/static/%2e%2e/pyproject.toml",
    "/static/..%2f..%2f..%2fpyproject.toml", "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fpyproject.toml",
    "/static//etc/passwd", "/static/../../../../etc/passwd", "/devices/..%2f..%2fetc%2fpasswd",
    "/verify/../pyproject.toml", "/static/%252e%252e/pyproject.toml",
])
def test_no_path_traversal(view: View, target: str) -> None:
    status, body = raw_get(view, target)
    assert status in (400, 404), (target, status)
    assert b"[project]" not in body and b"root:" not in body


def test_static_files_are_served(view: View) -> None:
    r = get(view, "/static/style.css")
    assert r.status_code == 200 and "svg.plot" in r.text


def test_hostile_text_stays_text_in_the_api(view: View, fleet: Fleet) -> None:
    body = get(view, "/api/v1/devices/arc-01/readings", since=fleet.first_ms,
               until=fleet.first_ms + 86_400_000, limit=1000)
    assert b"<script>" not in body.content and b"<img" not in body.content
    events = [r["event"] for r in body.json()["readings"] if "event" in r]
    assert events and all(e["note"] == HOSTILE_EVENT for e in events)
    lab = get(view, "/api/v1/devices/lab-7/readings/4").json()
    assert [m["n"] for m in lab["measurements"]] == list(HOSTILE_NAMES)
    assert b"<script>" not in get(view, "/api/v1/devices/lab-7/readings/4").content
    refused = get(view, "/api/v1/devices/lab-7/readings", since="<script>x</script>")
    assert refused.status_code == 400 and b"<script>" not in refused.content
    assert "<script>" in refused.json()["error"]  # named, as text
    q = get(view, "/api/v1/quarantine")
    assert b"<script>" not in q.content
    assert len(q.json()["entries"]) == fleet.quarantined
    assert q.json()["reasons"] == fleet.ledger.stats()["quarantined_by_reason"]


def test_proof_and_history_downloads_verify_offline(view: View, fleet: Fleet,
                                                    tmp_path: Path) -> None:
    proof = tmp_path / "arc.proof"
    arc_event_seq = 31  # the first event: status readings 0..30, then the event
    r = get(view, f"/api/v1/devices/arc-01/readings/{arc_event_seq}/proof")
    assert r.status_code == 200 and r.headers["content-type"] == "application/cbor"
    proof.write_bytes(r.content)
    page = httpx.get(f"{view.url}/devices/arc-01/readings/{arc_event_seq}/proof")
    assert page.content == r.content
    result = run_cli("verify-proof", str(proof), "--policy", fleet.ledger.vkey)
    assert result.exit_code == 0, result.output
    assert "window.__pwned" in result.output  # what was proven includes the event text
    history = tmp_path / "water.history"
    r = httpx.get(f"{view.url}/devices/water-01/history", params={"first": 0, "last": 60})
    assert r.status_code == 200
    history.write_bytes(r.content)
    result = run_cli("verify-history", str(history), "--policy", fleet.ledger.vkey)
    assert result.exit_code == 0, result.output
    too_long = httpx.get(f"{view.url}/devices/water-01/history",
                         params={"first": 0, "last": 20_000})
    assert too_long.status_code == 400


def test_openapi_describes_every_route(view: View) -> None:
    doc = get(view, "/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    documented = set(doc["paths"])
    served = {"/api/v1" + r.path for r in api.ROUTES if r.path != "/openapi.json"}  # type: ignore[attr-defined]
    assert documented == {p.replace(":int", "") for p in served}
    for path, item in doc["paths"].items():
        assert "200" in item["get"]["responses"], path


def test_the_view_never_writes_the_ledger(view: View, fleet: Fleet) -> None:
    db = Path(fleet.ledger.db)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    for path in ("/", "/devices", "/devices/water-01", "/api/v1/overview", "/quarantine"):
        assert httpx.get(view.url + path).status_code == 200
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before

    async def try_write() -> None:
        store = await ReadOnlySQLiteStore.open_readonly(db)
        try:
            with pytest.raises(StoreError, match="readonly"):
                await store.commit_checkpoint(CheckpointRecord(10**9, bytes(32), b"x", None, 0))
        finally:
            await store.close()

    asyncio.run(try_write())


def test_serve_refuses_a_missing_ledger(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "collector", "serve", "--db",
                        str(tmp_path / "none.db"), "--listen", "127.0.0.1:0"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_witness_cosignatures_and_presence_are_shown_when_recorded(fleet: Fleet,
                                                                 tmp_path: Path) -> None:
    """A ledger with the witnesses' cosignature table (as the witness migration makes it)."""
    import shutil
    import sqlite3

    db = tmp_path / "ledger.db"
    for suffix in ("", "-wal"):
        src = Path(fleet.ledger.db + suffix)
        if src.exists():
            shutil.copy(src, str(db) + suffix)
    size = fleet.ledger.sql("SELECT MAX(size) FROM checkpoints")[0][0]
    line = "— witness.example/w1 q7BkQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
    con = sqlite3.connect(db)
    con.execute("INSERT INTO cosignatures VALUES (?, ?, ?, ?, ?)",
                (size, "witness.example/w1+ab12cd34+AQID", line, 1_796_000_000, 0))
    con.commit()
    con.close()
    # The presence board a running collector writes beside the ledger (agents' status topic).
    (tmp_path / "ledger.db.presence.json").write_text(json.dumps({"devices": {
        "water-01": {"online": True, "changed_ms": 1_796_000_000_000,
                     "last_seen_ms": 1_796_000_001_000},
        "bms-01": {"online": False, "changed_ms": 1_796_000_000_000, "last_seen_ms": None}}}))
    view = start_view(str(db), tmp_path / "cache")
    try:
        devices = {d["device_id"]: d for d in get(view, "/api/v1/devices").json()["devices"]}
        assert (devices["water-01"]["online"], devices["bms-01"]["online"],
                devices["oxi-01"]["online"]) == (True, False, None)
        assert devices["water-01"]["last_heartbeat"] == "2026-11-30T00:53:21.000+00:00"
        listing = httpx.get(f"{view.url}/devices").text
        assert listing.count('class="ok">online<') == 1
        assert listing.count('class="bad">offline<') == 1
        cp = get(view, "/api/v1/checkpoint").json()
        assert cp["cosignatures"] == [{
            "witness": "witness.example/w1", "vkey": "witness.example/w1+ab12cd34+AQID",
            "line": line, "cosigned_s": 1_796_000_000,
            "cosigned_at": "2026-11-30T00:53:20.000+00:00"}]
        page = httpx.get(f"{view.url}/checkpoints/{size}").text
        assert "witness.example/w1" in page and line in page
        assert get(view, "/api/v1/overview").json()["checkpoint"]["cosignatures"][0][
            "witness"] == "witness.example/w1"
    finally:
        stop_view(view)


def test_the_log_is_served_as_tlog_tiles(view: View, fleet: Fleet) -> None:
    """/log/checkpoint and /log/tile/...: checked here against the ledger's rows, hashed and
    split independently of the code that serves them."""
    rows = fleet.ledger.sql("SELECT envelope FROM readings WHERE id <= 256 ORDER BY id")
    assert len(rows) == 256
    note = fleet.ledger.sql("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1")[0][0]
    r = httpx.get(view.url + "/log/checkpoint")
    assert r.status_code == 200 and r.content == note
    assert r.headers["cache-control"] == "no-cache"
    tile = httpx.get(view.url + "/log/tile/0/000")
    assert tile.status_code == 200 and "immutable" in tile.headers["cache-control"]
    assert tile.content == b"".join(hashlib.sha256(b"\x00" + e).digest() for (e,) in rows)
    entries = httpx.get(view.url + "/log/tile/entries/000").content
    split, at = [], 0
    while at < len(entries):
        n = int.from_bytes(entries[at:at + 2], "big")
        split.append(entries[at + 2:at + 2 + n])
        at += 2 + n
    assert split == [e for (e,) in rows]
    for bad in ("/log/tile/0/0", "/log/tile/0/../000", "/log/nope", "/log/tile/5/000",
                "/log/tile/0/x001/000", "/log/", "/log/tile/entries/999"):
        assert httpx.get(view.url + bad).status_code == 404, bad


def test_serve_refuses_a_ledger_of_another_schema(fleet: Fleet, tmp_path: Path) -> None:
    """Read-only, the view cannot migrate: an older ledger is named, not half served."""
    import shutil
    import sqlite3

    db = tmp_path / "ledger.db"
    for suffix in ("", "-wal"):
        if Path(fleet.ledger.db + suffix).exists():
            shutil.copy(fleet.ledger.db + suffix, str(db) + suffix)
    con = sqlite3.connect(db)
    con.execute("DELETE FROM schema_migrations WHERE version = "
                "(SELECT MAX(version) FROM schema_migrations)")
    con.commit()
    con.close()
    r = subprocess.run([sys.executable, "-m", "collector", "serve", "--db", str(db), "--listen",
                        "127.0.0.1:0", "--cache-dir", str(tmp_path / "cache")],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and "schema version" in r.stderr
    assert "migrations" in r.stderr and "Traceback" not in r.stderr
