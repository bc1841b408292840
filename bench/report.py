"""Markdown tables from a results file, for docs/benchmarks.md (so no figure is copied by hand)."""

from __future__ import annotations

from pathlib import Path

from .results import RunResults, fmt_value

__all__ = ["markdown"]


def _machine(results: RunResults) -> str:
    m = results.machine
    src = m.get("source", {})
    return "\n".join([
        "| | |", "|---|---|",
        f"| date (UTC) | {results.date} |",
        f"| CPU | {m['cpu_model']}, {m['cores']} cores"
        + (f", {m['cpu_mhz']} MHz" if m.get("cpu_mhz") else "") + " |",
        f"| memory | {m['memory_bytes'] / 2**30:.1f} GiB |",
        f"| Python | {m['python']} |",
        f"| platform | {m['platform']} |",
        f"| load average at start | {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])} |",
        f"| sizes | {m.get('sizes', '?')} |",
        f"| source | commit {src.get('commit', '?')}"
        + (f"; uncommitted: {', '.join(src['uncommitted_py'])}" if src.get("uncommitted_py")
           else "; no uncommitted source files") + " |",
        f"| command | `{results.command}` |",
    ])


def _figures(results: RunResults) -> str:
    lines = ["| benchmark | figure | measured | target | verdict |", "|---|---|---|---|---|"]
    for r in results.results:
        if r.error:
            lines.append(f"| {r.name} | **failed** | {r.error} | | |")
        for m in r.metrics:
            value = f"{fmt_value(m.value)} {m.unit}".strip()
            target = f"{m.target} {m.unit}".strip() if m.target else ""
            verdict = m.verdict
            if verdict and verdict != "met":
                verdict = f"**{verdict}**"
            lines.append(f"| {r.name} | {m.label} | {value} | {target} | {verdict} |")
    return "\n".join(lines)


def _load(results: RunResults) -> str:
    cores = results.machine["cores"]
    lines = [f"| benchmark | wall time (s) | cores busy just before (of {cores}) "
             f"| cores busy during, whole machine | of which other people's work |",
             "|---|---|---|---|---|"]
    for r in results.results:
        busy = r.params.get("machine_busy_cores", "")
        before = r.params.get("machine_busy_cores_before", "")
        others = r.params.get("others_busy_cores", "")
        lines.append(f"| {r.name} | {r.seconds:.1f} | {before} | {busy} | {others} |")
    return "\n".join(lines)


def markdown(path: Path) -> str:
    results = RunResults.read(path)
    return "\n\n".join([_machine(results), _figures(results), _load(results)]) + "\n"
