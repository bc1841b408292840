"""The read-only view under load: a device page over a million readings, and the JSON API's
latency percentiles with concurrent clients on loopback.

    python -m bench.web_view [--readings 1000000] [--clients 16] [--seconds 20]

The ledger is the benchmarks' cached one-device ledger (:mod:`bench.big_ledger`: real signed
water-quality readings, one a second, sealed by the collector's own ``Sealer``). The view is
``ledger-collector serve`` as a user starts it. The load comes from a Python client (asyncio
and httpx) on the same machine, so client and server share its cores; every request goes to
127.0.0.1 and the run stops itself after ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from .big_ledger import cached_ledger
from .ledger import collector_cli

__all__ = ["main"]


def _start_view(db: Path, cache_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([*collector_cli(), "serve", "--db", str(db), "--listen",
                             "127.0.0.1:0", "--cache-dir", str(cache_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        m = re.search(r"on (http://\S+)/", line)
        if m:
            return proc, m.group(1)
    raise RuntimeError(f"serve exited with {proc.wait()}")


def _timed_get(client: httpx.Client, url: str) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    r = client.get(url)
    return time.perf_counter() - start, r


def _page_times(client: httpx.Client, url: str, n: int) -> dict[str, Any]:
    times = []
    size = 0
    for _ in range(n):
        t, r = _timed_get(client, url)
        r.raise_for_status()
        times.append(t)
        size = len(r.content)
    return {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
            "runs": n, "bytes": size, "series_paths": r.text.count('class="series"')}


async def _load(base: str, device: str, first_ms: int, last_ms: int, last_seq: int,
                clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` concurrent loops of mixed API requests for ``seconds``."""
    kinds: dict[str, Callable[[random.Random], str]] = {
        "readings page (100)": lambda rnd: (
            f"/api/v1/devices/{device}/readings?since={rnd.randint(first_ms, last_ms - 3_600_000)}"
            f"&until={last_ms}&limit=100"),
        "one reading": lambda rnd: f"/api/v1/devices/{device}/readings/{rnd.randint(0, last_seq)}",
        "proof (JSON)": lambda rnd: (f"/api/v1/devices/{device}/readings/"
                                     f"{rnd.randint(0, last_seq)}/proof?format=json"),
        "device": lambda rnd: f"/api/v1/devices/{device}",
        "blocks (50)": lambda rnd: "/api/v1/blocks",
    }
    latencies: dict[str, list[float]] = {k: [] for k in kinds}
    errors = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(i: int, client: httpx.AsyncClient) -> None:
        nonlocal errors
        rnd = random.Random(i)
        names = list(kinds)
        n = 0
        while time.monotonic() < deadline and n < 100_000:
            name = names[n % len(names)]
            n += 1
            start = time.perf_counter()
            r = await client.get(kinds[name](rnd))
            if r.status_code != 200:
                errors += 1
            latencies[name].append(time.perf_counter() - start)

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(i, client) for i in range(clients)))
        elapsed = time.perf_counter() - started
    out: dict[str, Any] = {"clients": clients, "seconds": round(elapsed, 1), "errors": errors}
    every = sorted(t for ts in latencies.values() for t in ts)
    out["all"] = _percentiles(every, elapsed)
    out["by_request"] = {k: _percentiles(sorted(v), elapsed) for k, v in latencies.items()}
    return out


def _percentiles(ts: list[float], elapsed: float) -> dict[str, Any]:
    if not ts:
        return {"requests": 0}
    return {"requests": len(ts), "per_s": round(len(ts) / elapsed, 1),
            "p50_ms": round(ts[len(ts) // 2] * 1000, 1),
            "p99_ms": round(ts[min(len(ts) - 1, int(len(ts) * 0.99))] * 1000, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.web_view", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readings", type=int, default=1_000_000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--workdir", type=Path, default=Path("bench-results"))
    p.add_argument("--out", type=Path, help="results JSON")
    opts = p.parse_args(argv)
    big = cached_ledger(opts.workdir / "cache", 1, opts.readings)
    device = big.devices[0]
    cache_dir = opts.workdir / "run" / "web-view-cache"
    if cache_dir.exists():
        for f in cache_dir.iterdir():
            f.unlink()
    proc, base = _start_view(big.files.db, cache_dir)
    results: dict[str, Any] = {"readings": big.readings, "device": device,
                               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "load_average_before": os.getloadavg()[0]}
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            # The plot cache folds every reading in once, in the background.
            start = time.perf_counter()
            while True:
                cache = client.get("/api/v1/overview").json()["plot_cache"]
                if cache["upto_reading_id"] >= big.readings:
                    break
                time.sleep(0.5)
            results["plot_cache_build_s"] = round(time.perf_counter() - start, 1)
            dev = client.get(f"/api/v1/devices/{device}").json()
            last_seq = dev["last_seq"]
            page = client.get(f"/api/v1/devices/{device}/readings/{last_seq}").json()
            last_ms = page["time_ms"]
            first_ms = client.get(f"/api/v1/devices/{device}/readings/0").json()["time_ms"]
            results["device_page_all"] = _page_times(client, f"/devices/{device}", 10)
            results["device_page_1h"] = _page_times(
                client, f"/devices/{device}?from={last_ms - 3_600_000}&to={last_ms + 1}", 10)
            results["device_page_5h"] = _page_times(
                client, f"/devices/{device}?from={last_ms - 18_000_000}&to={last_ms + 1}", 5)
        results["api_load"] = asyncio.run(_load(base, device, first_ms, last_ms, last_seq,
                                                opts.clients, opts.seconds))
        results["load_average_after"] = os.getloadavg()[0]
    finally:
        proc.terminate()
        proc.wait(15)
    text = json.dumps(results, indent=2)
    print(text)
    if opts.out:
        opts.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
