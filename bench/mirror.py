"""``ledger-mirror`` catching up from tiles: readings/s, set against the raw verify rate.

A ledger of the run's backlog (the devices' enrolment statements first, as the collector logs
them, then the readings, sealed in 1,000-leaf blocks by the collector's own sealer) is exported
with ``tiles export``, served by ``python -m http.server`` on loopback, and mirrored into an
empty database by ``ledger-mirror`` as another party would run it: the whole process timed,
fetching, verifying every tile, statement and device signature, and storing the copy.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import urllib.request

import cbor2

from collector.ledger.logkeys import load_tree_log
from collector.ledger.records import BatchWrite, PendingLeaf, ReadingRecord
from collector.ledger.sealer import Sealer
from collector.ledger.sqlite_store import SQLiteStore
from collector.ledger.statement_log import StatementLog
from collector.publish.tiles import export_tiles
from provenance.keyfile import load_private_key
from provenance.merkle import RFC9162_SHA256

from .backlog import Backlog
from .context import RunContext
from .ledger import LedgerFiles, enrol, init_ledger, installed_cli
from .results import BenchResult

__all__ = ["run_mirror"]

_BLOCK = 1000
_SEQ, _BOOT, _TIME, _KIND = 3, 4, 5, 8


async def _write(files: LedgerFiles, backlog: Backlog) -> None:
    key = load_private_key(files.key)
    store = await SQLiteStore.open(files.db)
    try:
        now = time.time_ns() // 1_000_000
        next_id = await StatementLog(key).commit_due(store, 1, now)
        sealer = Sealer(key, None, await store.pending_leaves(), size=_BLOCK, age_ms=1000,
                        log=await load_tree_log(store, key, str(files.key)))
        device_ids = [d.device_id for d in backlog.devices]
        for offset in range(0, len(backlog.envelopes), 10_000):
            batch = BatchWrite()
            leaves = []
            for index, raw in backlog.envelopes[offset:offset + 10_000]:
                body = cbor2.loads(cbor2.loads(raw).value[2])
                batch.readings.append(ReadingRecord(next_id, device_ids[index], body[_SEQ],
                                                    body[_BOOT], body[_TIME], now, body[_KIND],
                                                    raw))
                leaves.append(PendingLeaf(next_id, RFC9162_SHA256.hash_leaf(raw), body[_TIME],
                                          now))
                next_id += 1
            await store.commit_batch(batch)
            sealer.add(leaves)
            last = offset + 10_000 >= len(backlog.envelopes)
            while len(sealer.pending) >= _BLOCK or (last and sealer.pending):
                block = sealer.seal(time.time_ns() // 1_000_000)
                await store.commit_block(block)
                sealer.sealed(block)
        await export_tiles(store, files.db.parent / "site" / "log")
    finally:
        await store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_mirror(ctx: RunContext) -> BenchResult:
    result = BenchResult("mirror", "ledger-mirror catch-up from tiles over HTTP")
    verify_rate = ctx.figure("verify", "per_s")
    backlog = ctx.backlog()
    work = ctx.scratch("mirror")
    files = init_ledger(work)
    enrol(files.db, [(d.device_id, d.public) for d in backlog.devices])
    started = time.perf_counter()
    asyncio.run(_write(files, backlog))
    build = time.perf_counter() - started
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(work / "site")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/log"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url + "/checkpoint", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the HTTP server did not start") from None
                time.sleep(0.1)
        argv = [*installed_cli("ledger-mirror", "collector.mirror"), str(work / "copy.db"),
                "--url", url, "--policy", str(files.key.with_suffix(".vkey"))]
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(10)
    if proc.returncode != 0:
        raise RuntimeError(f"ledger-mirror exited {proc.returncode}: {proc.stderr[-500:]}")
    expected = f"{len(backlog)} readings and {len(backlog.devices)} collector statements"
    if expected not in proc.stdout:
        raise RuntimeError(f"the mirror did not verify the whole log: {proc.stdout[-500:]}")
    rate = len(backlog) / wall
    result.add("per_s", "readings/s (whole process, from an empty copy)", rate, "/s")
    result.add("vs_verify", "÷ raw single-core verify rate", rate / verify_rate, "×")
    result.add("wall_s", "wall time", wall, "s")
    result.params = {"readings": len(backlog), "devices": len(backlog.devices),
                     "ledger_build_seconds": round(build, 1), "output": proc.stdout.strip(),
                     "argv": argv[1:]}
    return result
