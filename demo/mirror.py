"""The demo's mirror: another party's verified copy of the log, made with ``ledger-mirror``.

It reads the log as C2SP tlog-tiles from the running view's ``/log`` (the view serves the
SQLite ledger, or with ``--cluster`` the PostgreSQL one). The copy is its own ledger: the demo
compares its checkpoint with the log's and runs ``audit`` on it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .ledger import _indent

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

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True)

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
