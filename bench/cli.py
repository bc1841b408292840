"""``python -m bench [--quick] [--only NAME ...] [--out FILE]``; ``... plot|report FILE``; ``list``.

A run prints a table of every figure beside its target and writes the figures, the machine and
the command to JSON; ``plot`` turns such a file into the PNGs in docs/benchmarks/.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .context import Sizes
from .suite import BENCHMARKS

__all__ = ["main"]

DEFAULT_WORKDIR = Path("bench-results")


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run SensorLedger's benchmarks. `python -m bench plot RESULTS.json` draws "
                    "the plots, `python -m bench report RESULTS.json` prints Markdown tables, "
                    "`python -m bench list` names the benchmarks.",
    )
    p.add_argument("--quick", action="store_true",
                   help="small sizes (about a tenth); figures are not comparable to targets")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="run only these benchmarks (and those whose figures they need)")
    p.add_argument("--out", type=Path, help="results JSON (default bench-results/results.json)")
    p.add_argument("--settle", type=float, default=0.0, metavar="SECONDS",
                   help="before each benchmark, wait up to SECONDS for the machine to go quiet "
                        "(under a quarter of a core busy); for shared machines")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                   help="caches and scratch databases (default bench-results/)")
    return p


def _plot_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench plot",
                                description="Draw PNG plots from a results JSON file.")
    p.add_argument("results", type=Path)
    p.add_argument("--outdir", type=Path, default=Path("docs/benchmarks"))
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["list"]:
        for bench in BENCHMARKS:
            print(f"{bench.name:16} {bench.summary}")
        return
    if args[:1] == ["report"]:
        from .report import markdown

        if len(args) != 2:
            sys.exit("usage: python -m bench report RESULTS.json")
        print(markdown(Path(args[1])), end="")
        return
    if args[:1] == ["plot"]:
        from .plot import plot_results  # matplotlib only when plotting

        opts = _plot_parser().parse_args(args[1:])
        for path in plot_results(opts.results, opts.outdir):
            print(path)
        return
    opts = _run_parser().parse_args(args)
    from .runner import run

    sizes = Sizes.quick() if opts.quick else Sizes.full()
    try:
        results = run(opts.only, sizes, opts.workdir, argv=args, settle=opts.settle)
    except KeyError as exc:
        sys.exit(str(exc.args[0]))
    out = opts.out or opts.workdir / "results.json"
    results.write(out)
    print(results.table())
    print(f"\nresults written to {out}")
    if any(r.error for r in results.results):
        sys.exit(1)
