"""What an emulator said, in engineering values: the ground truth for driver tests.

Every frame a device model sends is recorded here with the values it encodes, named exactly
as the driver publishes them, and whether the frame left intact. In-process tests read
:meth:`Transcript.entries`; the command line writes the same records as JSON lines
(``--log``) so a person can compare an agent's output with what the emulator sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

__all__ = ["Report", "Transcript"]


@dataclass(frozen=True, slots=True)
class Report:
    index: int
    what: str
    values: Mapping[str, Any]
    intact: bool


class Transcript:
    def __init__(self, path: str | Path | None = None, *, keep: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._entries: list[Report] = []
        self._keep = keep
        self._count = 0
        self._file: TextIO | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def record(self, what: str, values: Mapping[str, Any], *, intact: bool = True) -> Report:
        with self._lock:
            report = Report(self._count, what, dict(values), intact)
            self._count += 1
            self._entries.append(report)
            if len(self._entries) > self._keep:
                del self._entries[: len(self._entries) - self._keep]
            if self._file is not None:
                line = {"index": report.index, "what": what, "intact": intact, **report.values}
                self._file.write(json.dumps(line, default=str) + "\n")
                self._file.flush()
        return report

    def entries(self, what: str | None = None) -> list[Report]:
        with self._lock:
            return [e for e in self._entries if what is None or e.what == what]

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
