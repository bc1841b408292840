"""PNG plots of a results file: throughputs side by side, each target's margin, live latency."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server or in CI
import matplotlib.pyplot as plt

from .results import RunResults

__all__ = ["plot_results"]

# (benchmark, figure key, bar label): the readings/s figures worth seeing side by side.
_THROUGHPUT = (
    ("verify", "per_s", "raw ES256 verify\n(1 core)"),
    ("mosquitto-sub", "per_s", "mosquitto_sub\ndrain"),
    ("baseline", "ack-on-receipt.per_s", "baseline\nack on receipt"),
    ("baseline", "ack-after-commit.per_s", "baseline\nack after commit"),
    ("ingest", "per_s", "collector\ningest"),
    ("audit", "per_s", "collector\naudit"),
    ("agent", "max_rate.per_s", "agent sign+\nspool+publish"),
)


def _subtitle(results: RunResults) -> str:
    m = results.machine
    gib = m["memory_bytes"] / 2**30
    return (f"{results.date[:10]} · {m['cores']} cores, {gib:.0f} GiB, {m['cpu_model']} · "
            f"Python {m['python']} · sizes: {m.get('sizes', '?')}")


def _throughput(results: RunResults, out: Path) -> Path | None:
    by_name = {r.name: r for r in results.results if not r.error}
    bars = []
    for bench, key, label in _THROUGHPUT:
        if bench in by_name:
            try:
                bars.append((label, by_name[bench].value(key)))
            except KeyError:
                continue
    if not bars:
        return None
    fig, ax = plt.subplots(figsize=(10, 4.8))
    labels = [b[0] for b in bars]
    values = [b[1] for b in bars]
    colors = ["#4c72b0" if "collector" in lab or "agent" in lab else "#999999" for lab in labels]
    ax.bar(labels, values, color=colors)
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
    if "ingest" in by_name:
        ax.axhline(10_000, color="#c44e52", linestyle="--", linewidth=1)
        ax.text(len(values) - 0.5, 10_000, "ingest target 10,000/s", color="#c44e52",
                ha="right", va="bottom", fontsize=8)
    ax.set_ylabel("readings (or verifies) per second")
    ax.set_title("Throughput, one run\n" + _subtitle(results), fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    path = out / "throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _targets(results: RunResults, out: Path) -> Path | None:
    rows = []
    for r in results.results:
        for m in r.metrics:
            if m.target is None or m.target.value == 0:
                continue
            # Normalised so that 1.0 is the target and bigger is always better.
            score = m.value / m.target.value if m.target.op == ">=" else (
                m.target.value / m.value if m.value else float("inf"))
            rows.append((f"{r.name}: {m.label} ({m.target} {m.unit})".strip(), score,
                         m.target.met(m.value)))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.6))
    labels = [row[0] for row in rows][::-1]
    scores = [min(row[1], 10.0) for row in rows][::-1]
    colors = ["#55a868" if row[2] else "#c44e52" for row in rows][::-1]
    ax.barh(labels, scores, color=colors)
    ax.axvline(1.0, color="black", linewidth=1)
    for i, row in enumerate(rows[::-1]):
        ax.text(min(row[1], 10.0), i, f" {row[1]:.2f}×", va="center", fontsize=8)
    ax.set_xlabel("measured ÷ target (for 'at most' targets: target ÷ measured); ≥ 1 is met")
    ax.set_title("Targets, one run\n" + _subtitle(results), fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    path = out / "targets.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _latency(results: RunResults, out: Path) -> Path | None:
    live = next((r for r in results.results if r.name == "live" and not r.error), None)
    if live is None or "latency_percentiles_ms" not in live.params:
        return None
    pct = live.params["latency_percentiles_ms"]  # {percentile: ms}
    xs = [float(p) for p in pct]
    ys = [pct[p] / 1000 for p in pct]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(ys, xs, color="#4c72b0")
    ax.axvline(2.0, color="#c44e52", linestyle="--", linewidth=1, label="p99 target 2 s")
    for q in ("50", "99"):
        if q in pct:
            ax.plot([pct[q] / 1000], [float(q)], "o", color="black")
            ax.annotate(f"p{q} {pct[q] / 1000:.2f} s", (pct[q] / 1000, float(q)),
                        textcoords="offset points", xytext=(6, -10), fontsize=8)
    ax.set_xlabel("latency from signing to sealed block (s)")
    ax.set_ylabel("percentile of readings")
    ax.set_title("Live ingest latency, one run\n" + _subtitle(results), fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = out / "live-latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_results(results_path: Path, out: Path) -> list[Path]:
    """Write every plot the results support into ``out``; return the files written."""
    results = RunResults.read(results_path)
    out.mkdir(parents=True, exist_ok=True)
    made = [_throughput(results, out), _targets(results, out), _latency(results, out)]
    return [p for p in made if p is not None]
