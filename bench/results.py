"""Results of a benchmark run: figures with their targets, the machine, JSON in and out."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil  # type: ignore[import-untyped]

__all__ = ["BenchResult", "Metric", "RunResults", "Target", "fmt_value", "machine_info",
           "source_state"]


@dataclass(frozen=True, slots=True)
class Target:
    op: Literal[">=", "<="]
    value: float

    def met(self, measured: float) -> bool:
        return measured >= self.value if self.op == ">=" else measured <= self.value

    def verdict(self, measured: float) -> str:
        """``met`` or ``missed by N %`` (how far the measured value falls short)."""
        if self.met(measured):
            return "met"
        if self.op == ">=":
            short = (self.value - measured) / self.value
        else:
            short = (measured - self.value) / self.value
        return f"missed by {short:.0%}"

    def __str__(self) -> str:
        return f"{'≥' if self.op == '>=' else '≤'} {fmt_value(self.value)}"


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    label: str
    value: float
    unit: str
    target: Target | None = None

    @property
    def verdict(self) -> str:
        return self.target.verdict(self.value) if self.target else ""


@dataclass
class BenchResult:
    name: str
    title: str
    metrics: list[Metric] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def add(self, key: str, label: str, value: float, unit: str,
            target: Target | None = None) -> Metric:
        metric = Metric(key, label, value, unit, target)
        self.metrics.append(metric)
        return metric

    def value(self, key: str) -> float:
        for metric in self.metrics:
            if metric.key == key:
                return metric.value
        raise KeyError(f"{self.name} has no figure {key!r}")


@dataclass
class RunResults:
    date: str
    command: str
    quick: bool
    machine: dict[str, Any]
    results: list[BenchResult] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> RunResults:
        data = json.loads(path.read_text())
        results = []
        for r in data.pop("results"):
            metrics = [
                Metric(m["key"], m["label"], m["value"], m["unit"],
                       Target(**m["target"]) if m["target"] else None)
                for m in r.pop("metrics")
            ]
            results.append(BenchResult(metrics=metrics, **r))
        return cls(results=results, **data)

    def table(self) -> str:
        rows = [("benchmark", "figure", "measured", "target", "verdict")]
        for r in self.results:
            if r.error:
                rows.append((r.name, "ERROR", r.error.splitlines()[0][:60], "", ""))
            for m in r.metrics:
                rows.append((r.name, m.label, f"{fmt_value(m.value)} {m.unit}".strip(),
                             f"{m.target} {m.unit}".strip() if m.target else "", m.verdict))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def fmt_value(value: float) -> str:
    if value == int(value) and abs(value) >= 100:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def source_state() -> dict[str, Any]:
    """The commit measured, and any uncommitted source files (the tree is shared while people
    work, so a run may include someone's edits in progress)."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                                  check=True).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = [line[3:] for line in git("status", "--porcelain").splitlines()
             if line[3:].endswith(".py")]
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_py": dirty}


def machine_info() -> dict[str, Any]:
    freq = psutil.cpu_freq()
    return {
        "cores": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "cpu_model": _cpu_model(),
        "cpu_mhz": round(freq.current) if freq else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }
