"""Issue #17 part 4: what ``--metrics-listen`` costs the ingest rate.

The same queued backlog is drained by a fresh collector into a fresh ledger, alternately
without metrics and with ``--metrics-listen`` while a scraper reads ``/metrics`` and
``/health`` every half second (Prometheus' default interval is 15 s: this is thirty times
harsher). Pairs alternate their order (off, on; on, off; ...) so a machine that slows down
during the run does not favour one side. The rate is timed as in ``ingest``: first reading's
arrival to the seal of the block that holds the last one, read back from the ledger.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .collector_proc import CollectorProcess, cpu_seconds
from .context import RunContext, sessions
from .ledger import enrol, init_ledger, totals
from .queued import broker_with_backlog
from .results import BenchResult

__all__ = ["run_metrics_overhead"]

SCRAPE_EVERY_S = 0.5


def _listen_url(log_path: Path, timeout: float = 30) -> str:
    """The ``/metrics`` URL from the collector's ``metrics_listening`` log event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if '"metrics_listening"' in line:
                return str(json.loads(line)["url"])
        time.sleep(0.02)
    raise TimeoutError("the collector did not report its metrics listener")


class _Scraper:
    """Reads ``/metrics`` and ``/health`` every ``SCRAPE_EVERY_S`` until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.scrapes = 0
        self.bytes = 0
        self.seconds: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        base = self.url.removesuffix("/metrics")
        while not self._done.wait(SCRAPE_EVERY_S):
            started = time.perf_counter()
            with urllib.request.urlopen(self.url, timeout=10) as resp:
                self.bytes += len(resp.read())
            with contextlib.suppress(urllib.error.HTTPError):  # 503 is an answer too
                urllib.request.urlopen(f"{base}/health", timeout=10).close()
            self.seconds.append(time.perf_counter() - started)
            self.scrapes += 1

    def stop(self) -> None:
        self._done.set()
        self._thread.join(15)


def _drain(ctx: RunContext, name: str, metrics: bool) -> dict[str, Any]:
    backlog = ctx.backlog()
    count = len(backlog)
    workdir = ctx.scratch(name)
    broker = broker_with_backlog(workdir / "broker", ctx.snapshot())
    extra = ("--metrics-listen", "127.0.0.1:0") if metrics else ()
    scraper: _Scraper | None = None
    try:
        files = init_ledger(workdir)
        enrol(files.db, [(d.device_id, d.public) for d in backlog.devices])
        client_id, _ = sessions()["collector"]
        log_path = workdir / "collector.log"
        with CollectorProcess(files, broker.url, client_id, log_path, extra) as col:
            if metrics:
                scraper = _Scraper(_listen_url(log_path))
            col.wait_until(lambda: totals(files.db).sealed >= count, timeout=900)
            main_cpu, workers_cpu = cpu_seconds(col.pid)
            if scraper is not None:
                scraper.stop()
            code = col.stop()
    finally:
        if scraper is not None:
            scraper.stop()
        broker.stop()
    t = totals(files.db)
    if t.readings != count or t.quarantined or code != 0:
        raise RuntimeError(f"ledger holds {t.readings} readings, {t.quarantined} quarantined, "
                           f"of {count} sent; collector exit {code}")
    assert t.first_received_ms is not None and t.last_sealed_ms is not None
    drain_s = (t.last_sealed_ms - t.first_received_ms) / 1000
    out: dict[str, Any] = {
        "metrics": metrics, "per_s": round(count / drain_s, 1), "drain_seconds": round(drain_s, 3),
        # CPU per reading is steadier than the rate on a shared machine: other guests' work
        # stretches the wall clock, much less the CPU a drain needs.
        "main_cpu_us_per_reading": round(main_cpu / count * 1e6, 1),
        "cpu_us_per_reading": round((main_cpu + workers_cpu) / count * 1e6, 1),
    }
    if scraper is not None:
        out.update(scrapes=scraper.scrapes,
                   scrape_ms_median=round(statistics.median(scraper.seconds) * 1000, 2)
                   if scraper.seconds else None,
                   scrape_bytes=scraper.bytes // max(1, scraper.scrapes))
    return out


def run_metrics_overhead(ctx: RunContext) -> BenchResult:
    result = BenchResult("metrics", "Ingest rate with /metrics scraped vs without")
    drains: list[dict[str, Any]] = []
    for pair in range(max(2, ctx.sizes.drain_repeats)):
        order = (False, True) if pair % 2 == 0 else (True, False)
        for metrics in order:
            drains.append(_drain(ctx, f"metrics-{pair}-{'on' if metrics else 'off'}", metrics))
    off = statistics.median(d["per_s"] for d in drains if not d["metrics"])
    on = statistics.median(d["per_s"] for d in drains if d["metrics"])
    result.add("off_per_s", "readings/s without metrics (median)", off, "/s")
    result.add("on_per_s", f"readings/s with /metrics scraped every {SCRAPE_EVERY_S} s (median)",
               on, "/s")
    result.add("on_vs_off", "with ÷ without", on / off, "×")
    cpu_off = statistics.median(d["main_cpu_us_per_reading"] for d in drains if not d["metrics"])
    cpu_on = statistics.median(d["main_cpu_us_per_reading"] for d in drains if d["metrics"])
    result.add("main_cpu_off", "collector main process CPU µs/reading without (median)",
               cpu_off, "µs")
    result.add("main_cpu_on", "collector main process CPU µs/reading with (median)", cpu_on,
               "µs")
    result.add("main_cpu_on_vs_off", "main process CPU with ÷ without", cpu_on / cpu_off, "×")
    scraped = [d for d in drains if d["metrics"]]
    result.params = {"readings": len(ctx.backlog()), "devices": len(ctx.backlog().devices),
                     "scrape_every_s": SCRAPE_EVERY_S, "drains": drains,
                     "scrapes": sum(d["scrapes"] for d in scraped),
                     "collector_args": [*CollectorProcess.ARGS, "--metrics-listen",
                                        "127.0.0.1:0"]}
    return result
