"""The demo's public view: ``ledger-collector serve`` on the demo's ledger (the SQLite file, or
with ``--cluster`` the PostgreSQL URL), read-only, from the moment the ledger exists until the
demo ends (or, with ``--keep-serving``, until Ctrl-C).

After ingest, :func:`check_view` holds what the view shows to the ledger itself: its JSON API
gives the saved checkpoint and the numbers ``ledger-collector stats`` gives, and its pages load.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from .processes import Child, Processes

__all__ = ["VIEW_PAGES", "check_view", "start_view"]

#: Pages the demo loads from the view (``{device}`` is one demo device).
VIEW_PAGES = ("", "devices", "devices/{device}", "devices/{device}/readings", "blocks",
              "checkpoints", "quarantine")


def start_view(procs: Processes, bin_dir: Path, database: str, cache_dir: Path,
               listen: str) -> tuple[Child, str]:
    """Start the view and return it with its address, once it answers."""
    child = procs.start("view", [str(bin_dir / "ledger-collector"), "serve", "--db", database,
                                 "--listen", listen, "--cache-dir", str(cache_dir)])
    deadline = time.monotonic() + 30
    url = None
    while time.monotonic() < deadline and child.running():
        m = re.search(r"on (http://\S+/)", child.log_path.read_text(errors="replace"))
        if m:
            url = m.group(1)
            break
        time.sleep(0.1)
    if url is None:
        raise RuntimeError(f"the view did not start:\n{child.tail()}")
    with urllib.request.urlopen(url + "api/v1/overview", timeout=10) as r:
        json.load(r)  # it answers from the ledger
    return child, url


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.headers.get_content_type(), r.read()


def _json(url: str) -> Any:
    kind, body = _get(url)
    if kind != "application/json":
        raise ValueError(f"{url} answered {kind}, not JSON")
    return json.loads(body)


def check_view(url: str, checkpoint: Path, stats: dict[str, Any], device: str,
               out: IO[str]) -> bool:
    """Whether the view shows the ledger as it is: the saved checkpoint (with the
    cosignatures saved with it), the reading, block and device counts of ``stats``, nothing
    unsealed, one device's readings, and every page of :data:`VIEW_PAGES`."""
    problems: list[str] = []
    try:
        overview = _json(url + "api/v1/overview")
        note = _get(url + "api/v1/checkpoint?format=note")[1].decode()
        latest = _json(url + "api/v1/checkpoint")
        page = _json(url + f"api/v1/devices/{device}/readings?limit=5")
        for path in VIEW_PAGES:
            kind, _ = _get(url + path.format(device=device))
            if kind != "text/html":
                problems.append(f"/{path.format(device=device)} answered {kind}")
    except (OSError, ValueError, urllib.error.URLError) as exc:
        out.write(f"    the view failed: {exc}\n")
        return False
    devices = len([d for d in stats.get("devices", {}) if not d.startswith("@")])
    want = {"readings": stats.get("readings"), "blocks": stats.get("blocks"),
            "devices": devices, "unsealed": 0, "tree_size": int(note.splitlines()[1])}
    for key, value in want.items():
        if overview.get(key) != value:
            problems.append(f"overview {key} {overview.get(key)}, the ledger's {value}")
    # The saved note is the log's note plus the witnesses' cosignature lines kept for it.
    saved = checkpoint.read_text()
    if note.split("\n\n")[0] != saved.split("\n\n")[0] or not saved.startswith(note):
        problems.append("its latest checkpoint is not the saved one")
    cosigned = {c.get("line") for c in latest.get("cosignatures", [])}
    if cosigned != set(saved[len(note):].splitlines()):
        problems.append("its latest checkpoint's cosignatures are not those saved with it")
    if not page.get("readings"):
        problems.append(f"no readings of {device}")
    out.write(f"    /api/v1/overview: {overview.get('readings')} readings, "
              f"{overview.get('blocks')} blocks, tree size {overview.get('tree_size')}, "
              f"{overview.get('devices')} devices, {overview.get('unsealed')} unsealed\n")
    out.write(f"    /api/v1/checkpoint: the saved checkpoint of tree size {want['tree_size']}, "
              f"with "
              f"{len(latest.get('cosignatures', []))} cosignatures ("
              + ", ".join(c["witness"] for c in latest.get("cosignatures", [])) + ")\n")
    out.write(f"    /api/v1/devices/{device}/readings: {len(page.get('readings', []))} "
              "readings on the first page\n")
    out.write(f"    pages: {', '.join('/' + p for p in VIEW_PAGES)} (device {device})\n")
    for problem in problems:
        out.write(f"    MISMATCH: {problem}\n")
    if not problems:
        out.write("    the view shows the ledger as it is\n")
    return not problems
