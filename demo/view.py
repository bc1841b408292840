"""The demo's public view: ``ledger-collector serve`` on the demo's ledger, read-only, from the
moment the ledger exists until the demo ends (or, with ``--keep-serving``, until Ctrl-C)."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

from .processes import Child, Processes

__all__ = ["start_view"]


def start_view(procs: Processes, bin_dir: Path, db: Path, cache_dir: Path,
               listen: str) -> tuple[Child, str]:
    """Start the view and return it with its address, once it answers."""
    child = procs.start("view", [str(bin_dir / "ledger-collector"), "serve", "--db", str(db),
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
