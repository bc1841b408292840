"""Plots drawn on the server as inline SVG: no JavaScript, no plotting library.

Each series is one ``<path class="series">``: per bucket a vertical stroke from its minimum to
its maximum, joined to the next bucket, so a spike inside a bucket still shows (min/max
decimation). Buckets further apart than the data's usual spacing start a new sub-path: a gap in
the data is a gap in the line. Events are vertical marks whose text is in a ``<title>``. Every
text that comes from a device (measurement names, units, event text) is escaped.
"""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup, escape

from collector.web.plotdata import Panel, PlotData

__all__ = ["render_panel"]

WIDTH, HEIGHT = 960, 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 12, 22, 26
_COLOURS = ("#1f6fb2", "#c2410c", "#15803d", "#7e22ce")


def _utc(ms: int, span_ms: int) -> str:
    fmt = "%Y-%m-%d %H:%M" if span_ms > 120_000 else "%H:%M:%S"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime(fmt)


def _num(v: float) -> str:
    return f"{v:.4g}"


def _isolate(text: str) -> str:
    return f"\u2068{text}\u2069"


def render_panel(panel: Panel, data: PlotData) -> Markup:
    """One panel: its series, axes in UTC, and the range's marks."""
    t0, t1 = data.since_ms, data.until_ms
    span = max(1, t1 - t0)
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    series = {n: data.series.get(n, []) for n in panel.names}
    values = [v for buckets in series.values() for b in buckets for v in (b.vmin, b.vmax)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad

    def x(t: int) -> float:
        return _LEFT + (t - t0) / span * plot_w

    def y(v: float) -> float:
        return _TOP + (hi - v) / (hi - lo) * plot_h

    half = data.width_ms / 2
    parts: list[str] = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" role="img" data-series-count="{len(panel.names)}" '
        f'aria-label="{escape(panel.title)}">',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" class="frame"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        v = hi - frac * (hi - lo)
        yy = _TOP + frac * plot_h
        parts.append(f'<text x="{_LEFT - 4}" y="{yy + 4:.1f}" class="ytick">{_num(v)}</text>')
        parts.append(f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}" '
                     'class="grid"/>')
    for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        t = int(t0 + frac * span)
        parts.append(f'<text x="{_LEFT + frac * plot_w:.1f}" y="{HEIGHT - 8}" class="xtick" '
                     f'text-anchor="{anchor}">{_utc(t, span)} UTC</text>')
    for mark in data.marks:
        mx = x(mark.time_ms)
        parts.append(f'<line class="mark" x1="{mx:.1f}" x2="{mx:.1f}" y1="{_TOP}" '
                     f'y2="{_TOP + plot_h}"><title>seq {mark.seq}: {escape(mark.text)}'
                     '</title></line>')
    legend_x = _LEFT
    for i, (name, unit) in enumerate(zip(panel.names, panel.units, strict=True)):
        colour = _COLOURS[i % len(_COLOURS)]
        d: list[str] = []
        prev_t: int | None = None
        for b in series[name]:
            bx = x(int(b.start_ms + half))
            cmd = "M" if prev_t is None or b.start_ms - prev_t > data.gap_ms else "L"
            d.append(f"{cmd}{bx:.1f},{y(b.vmax):.1f}")
            if cmd == "M" and b.vmin == b.vmax:
                d.append("h0.6")  # a lone point still shows (round caps)
            if b.vmin != b.vmax:
                d.append(f"L{bx:.1f},{y(b.vmin):.1f}")
            prev_t = b.start_ms
        label = f"{name} ({unit})" if unit else name
        # Names and units are isolated (FSI ... PDI; SVG text has no <bdi>): a direction mark
        # inside one cannot reorder the rest of the label.
        shown = escape(f"{_isolate(name)} ({_isolate(unit)})" if unit else _isolate(name))
        parts.append(f'<path class="series" data-series="{escape(name)}" stroke="{colour}" '
                     f'fill="none" d="{" ".join(d) or "M0,0"}"><title>{escape(label)}</title>'
                     '</path>')
        parts.append(f'<text x="{legend_x}" y="14" class="legend" fill="{colour}">'
                     f'{shown}</text>')
        legend_x += 16 + 7 * len(label)
    parts.append("</svg>")
    return Markup("".join(parts))
