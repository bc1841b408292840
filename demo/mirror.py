"""The demo's mirror: another party's verified copy of the log, made with ``ledger-mirror``.

It reads the log as C2SP tlog-tiles from the running view's ``/log``; when there is no view
(``--cluster``), from ``ledger-collector tiles export`` served by a plain static web server
(``python -m http.server``), as a party without our software would publish it. The copy is its
own ledger: the demo compares its checkpoint with the log's and runs ``audit`` on it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .broker import free_port
from .ledger import LedgerCli, _indent
from .processes import Processes

__all__ = ["DemoMirror", "checkpoint_head"]


def checkpoint_head(note: str) -> tuple[str, int, str]:
    """A checkpoint note's origin, tree size and base64 root (its first three lines)."""
    lines = note.splitlines()
    if len(lines) < 3 or not lines[1].isdigit():
        from .run import DemoError

        raise DemoError(f"not a checkpoint note:\n{note}")
    return lines[0], int(lines[1]), lines[2]


@dataclass
class DemoMirror:
    root: Path
    bin_dir: Path

    @property
    def db(self) -> Path:
        return self.root / "mirror.db"

    @property
    def site(self) -> Path:
        """Where the tiles are exported when there is no view to read them from."""
        return self.root / "published"

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True)

    def publish_static(self, procs: Processes, ledger: LedgerCli, out: IO[str]) -> str:
        """Export the log's tiles and serve them with a static web server; its URL."""
        exported = ledger._run("tiles", "export", "--db", ledger.db, self.site)
        out.write(_indent(exported.stdout))
        port = free_port()
        child = procs.start("tiles-http", [sys.executable, "-m", "http.server", "--bind",
                                           "127.0.0.1", "--directory", str(self.site),
                                           str(port)])
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or not child.running():
                    from .run import DemoError

                    raise DemoError("the static tiles server did not start:\n"
                                    + child.tail()) from None
                time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    def catch_up(self, url: str, policy: Path, out: IO[str]) -> bool:
        """``ledger-mirror DB --url URL --policy FILE``: fetch and verify the whole log."""
        self.root.mkdir(parents=True, exist_ok=True)
        result = self._run([str(self.bin_dir / "ledger-mirror"), str(self.db), "--url", url,
                            "--policy", str(policy), "--workers", "1"])
        out.write(_indent(result.stdout + result.stderr))
        return result.returncode == 0

    def same_checkpoint(self, saved: Path, out: IO[str]) -> bool:
        """Whether the copy holds the log's checkpoint: same origin, tree size and root."""
        result = self._run([str(self.bin_dir / "ledger-collector"), "checkpoint", "--db",
                            str(self.db)])
        if result.returncode != 0:
            out.write(_indent(result.stdout + result.stderr))
            return False
        theirs = checkpoint_head(result.stdout)
        ours = checkpoint_head(saved.read_text())
        if theirs == ours:
            out.write(f"    mirror reached the same checkpoint: {theirs[0]}, tree size "
                      f"{theirs[1]}, root {theirs[2]}\n")
            return True
        out.write(f"    mirror checkpoint differs: tree size {theirs[1]} root {theirs[2]}, the "
                  f"log's tree size {ours[1]} root {ours[2]}\n")
        return False

    def audit(self, collector_key: Path, checkpoint: Path, out: IO[str]) -> bool:
        """``ledger-collector audit`` on the copy, held to the log's saved checkpoint."""
        result = self._run([str(self.bin_dir / "ledger-collector"), "audit", "--db",
                            str(self.db), "--collector-key", str(collector_key), "--checkpoint",
                            str(checkpoint), "--no-progress"])
        out.write(_indent(result.stdout + result.stderr))
        return result.returncode == 0
