"""The HTML report's charts, drawn here as inline SVG: they need no script, no network and
no library, print as they show, and what they plot is the same figures as the tables."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

from pytest_llmeval.report.view import pct, threshold_label
from pytest_llmeval.results.records import Summary
from pytest_llmeval.results.stats import percentile

# Okabe and Ito's palette: told apart with any common colour-vision deficiency.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999933", "#000")
WIDTH = 600  # about the width a chart gets on a laptop screen, so text shows at its size
LABELS = 125  # the left margin, for model names
VALUES = 170  # the right margin, for the figures written out
ROW = 30


def colour(model: str, models: Sequence[str]) -> str:
    """A model's colour: by its place among all the run's models, so it keeps one colour
    across every suite's charts."""
    return PALETTE[models.index(model) % len(PALETTE)]


def accuracy(summaries: Sequence[Summary], threshold: float | None, models: Sequence[str]) -> str:
    """Accuracy per model as a bar, its 95% interval as an error bar, the threshold as a
    dashed line."""
    plot = _Rows(len(summaries), 0.0, 1.0)
    parts = plot.axis(lambda v: f"{v:.0%}", (0.0, 0.25, 0.5, 0.75, 1.0))
    for i, s in enumerate(summaries):
        y = plot.middle(i)
        parts.append(plot.label(i, s.model))
        if s.accuracy is None or s.interval is None:
            parts.append(plot.value(i, "no answers"))
            continue
        low, high = s.interval
        figure = f"{pct(s.accuracy)} ({low:.1%} to {high:.1%})"
        paint = colour(s.model, models)
        parts += [
            f'<rect class="bar" x="{plot.x(0)}" y="{y - 8}" '
            f'width="{plot.x(s.accuracy) - plot.x(0):.1f}" height="16" fill="{paint}" '
            f'fill-opacity="0.35"><title>{escape(s.model)}: '
            f"{figure}, {s.passes} of {s.asked}</title></rect>",
            _error_bar(plot.x(low), plot.x(high), y, horizontal=True),
            f'<circle cx="{plot.x(s.accuracy):.1f}" cy="{y}" r="4" fill="{paint}"/>',
            plot.value(i, figure),
        ]
    if threshold is not None:
        x = plot.x(threshold)
        parts.append(
            f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="{plot.top - 4}" '
            f'y2="{plot.bottom}" stroke="#c0392b" stroke-dasharray="4 3"/>'
            f'<text x="{x:.1f}" y="{plot.top - 8}" text-anchor="middle" fill="#c0392b">'
            f"{threshold_label(threshold)}</text>"
        )
    return _svg("accuracy", "Accuracy with its 95% interval", plot.height, parts)


def latency(summaries: Sequence[Summary], models: Sequence[str]) -> str:
    """Every answer's latency as a dot, the middle half as a box, p50 and p99 marked."""
    values = [[r.latency_s for r in s.records if r.latency_s is not None] for s in summaries]
    highest = max((max(v) for v in values if v), default=0.0)
    top, ticks = _nice(highest)
    plot = _Rows(len(summaries), 0.0, top)
    parts = plot.axis(lambda v: f"{v:g}s", ticks)
    for i, (s, seconds) in enumerate(zip(summaries, values, strict=True)):
        y = plot.middle(i)
        parts.append(plot.label(i, s.model))
        if not seconds:
            parts.append(plot.value(i, "no latency"))
            continue
        q1, p50, q3, p99 = (percentile(seconds, q) for q in (0.25, 0.5, 0.75, 0.99))
        for n, value in enumerate(sorted(seconds)):
            jitter = ((n * 7919) % 17 - 8) * 0.9  # spread the dots; the same every time
            parts.append(
                f'<circle class="dot" cx="{plot.x(value):.1f}" cy="{y + jitter:.1f}" r="2.2" '
                f'fill="{colour(s.model, models)}" fill-opacity="0.45"/>'
            )
        parts += [
            f'<rect x="{plot.x(q1):.1f}" y="{y - 9}" width="{max(plot.x(q3) - plot.x(q1), 1):.1f}"'
            f' height="18" fill="none" stroke="{colour(s.model, models)}" stroke-width="1.5">'
            f"<title>{escape(s.model)}: middle half {q1:.2f}s to {q3:.2f}s</title></rect>",
            f'<line x1="{plot.x(p50):.1f}" x2="{plot.x(p50):.1f}" y1="{y - 11}" y2="{y + 11}" '
            f'stroke="#222" stroke-width="2.5"><title>p50 {p50:.2f}s</title></line>',
            f'<path d="M{plot.x(p99):.1f} {y - 12} l-4 -6 h8 z" fill="#222">'
            f"<title>p99 {p99:.2f}s</title></path>",
            plot.value(i, f"p50 {p50:.2f}s · p99 {p99:.2f}s"),
        ]
    return _svg(
        "latency",
        "Latency of each answer: box = middle half, bar = p50, ▼ = p99",
        plot.height,
        parts,
    )


def cost_accuracy(summaries: Sequence[Summary], models: Sequence[str]) -> str:
    """Each model at its cost (or, when a price is unknown, its tokens) and its accuracy,
    with the accuracy's 95% interval: the better trade is up and to the left."""
    shown = [s for s in summaries if s.accuracy is not None]
    priced = all(s.cost is not None for s in shown)
    if priced:
        spent = [s.cost or 0.0 for s in shown]
        title, unit = "Cost against accuracy", "cost"
        top, ticks = _nice(max(spent, default=0.0), floor=0.0001)
        fmt: Callable[[float], str] = _dollars_tick(ticks)
        if not any(spent):
            title += " (every model here cost $0)"
    else:
        spent = [float(s.input_tokens + s.output_tokens) for s in shown]
        unknown = ", ".join(s.model for s in shown if s.cost is None)
        title = f"Tokens against accuracy (no price for {unknown})"
        unit = "tokens in + out"
        top, ticks = _nice(max(spent, default=0.0), floor=1.0)
        fmt = "{:,.0f}".format

    left, right, top_y, bottom = 70, WIDTH - 110, 16, 196
    height = bottom + 44

    def x(v: float) -> float:
        return left + (right - left) * v / top

    def y(v: float) -> float:
        return bottom - (bottom - top_y) * v

    parts = [
        f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#888"/>',
        f'<line x1="{left}" x2="{left}" y1="{top_y}" y2="{bottom}" stroke="#888"/>',
    ]
    for tick in ticks:
        parts.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top_y}" y2="{bottom}" '
            f'stroke="#eee"/><text x="{x(tick):.1f}" y="{bottom + 16}" text-anchor="middle">'
            f"{escape(fmt(tick))}</text>"
        )
    for share in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{left}" x2="{right}" y1="{y(share):.1f}" y2="{y(share):.1f}" '
            f'stroke="#eee"/><text x="{left - 6}" y="{y(share) + 4:.1f}" text-anchor="end">'
            f"{share:.0%}</text>"
        )
    parts.append(
        f'<text x="{(left + right) / 2}" y="{bottom + 36}" text-anchor="middle">{unit}</text>'
    )
    placed: dict[tuple[int, int], int] = {}  # labels already at a spot: stack the next
    for s, value in zip(shown, spent, strict=True):
        low, high = s.interval or (0.0, 0.0)
        cx, cy = x(value), y(s.accuracy or 0.0)
        paint = colour(s.model, models)
        spot = (round(cx / 8), round(cy / 8))
        below = placed.get(spot, 0)
        placed[spot] = below + 1
        parts += [
            _error_bar(y(low), y(high), cx, horizontal=False),
            f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="{paint}" '
            f'fill-opacity="0.8"><title>{escape(s.model)}: {pct(s.accuracy)} at '
            f"{escape(fmt(value))}</title></circle>",
            # Left of the point when it is near the right edge, so the name stays inside.
            f'<text x="{cx + (10 if cx < right - 60 else -10):.1f}" '
            f'y="{cy - 6 - 15 * below:.1f}" fill="{colour(s.model, models)}" '
            f'text-anchor="{"start" if cx < right - 60 else "end"}">{escape(short(s.model, 24))}'
            "</text>",
        ]
    if not shown:
        parts.append(f'<text x="{left + 10}" y="{top_y + 20}">no answers</text>')
    return _svg("cost", title, height, parts)


class _Rows:
    """A chart of one horizontal row per model over a shared value axis."""

    def __init__(self, rows: int, low: float, high: float) -> None:
        self.low, self.high = low, high
        self.top = 34
        self.bottom = self.top + rows * ROW
        self.height = self.bottom + 26

    def x(self, value: float) -> float:
        span = (self.high - self.low) or 1.0
        return LABELS + (WIDTH - LABELS - VALUES) * (value - self.low) / span

    def middle(self, row: int) -> float:
        return self.top + row * ROW + ROW / 2

    def axis(self, fmt: Callable[[float], str], ticks: Sequence[float]) -> list[str]:
        return [
            f'<line x1="{self.x(t):.1f}" x2="{self.x(t):.1f}" y1="{self.top}" '
            f'y2="{self.bottom}" stroke="#e4e4e4"/><text x="{self.x(t):.1f}" '
            f'y="{self.bottom + 16}" text-anchor="middle">{escape(fmt(t))}</text>'
            for t in ticks
        ]

    def label(self, row: int, text: str) -> str:
        y = self.middle(row) + 4
        return (
            f'<text class="model" x="{LABELS - 8}" y="{y}" text-anchor="end">'
            f"{escape(short(text))}<title>{escape(text)}</title></text>"
        )

    def value(self, row: int, text: str) -> str:
        y = self.middle(row) + 4
        return f'<text x="{WIDTH - VALUES + 10}" y="{y}">{escape(text)}</text>'


def short(name: str, room: int = 18) -> str:
    """A model name that fits a chart's margin: both ends kept, the middle elided (the
    full name is the label's tooltip, and in every table)."""
    if len(name) <= room:
        return name
    head = (room - 1) // 2
    return f"{name[:head]}…{name[-(room - 1 - head) :]}"


def _error_bar(start: float, end: float, at: float, *, horizontal: bool) -> str:
    if horizontal:
        path = f"M{start:.1f} {at - 5}v10M{start:.1f} {at}H{end:.1f}M{end:.1f} {at - 5}v10"
    else:
        path = f"M{at - 5} {start:.1f}h10M{at} {start:.1f}V{end:.1f}M{at - 5} {end:.1f}h10"
    return f'<path class="interval" d="{path}" stroke="#222" stroke-width="1.5" fill="none"/>'


def _nice(highest: float, floor: float = 0.1) -> tuple[float, tuple[float, ...]]:
    """An axis end at or above ``highest`` and four or five round ticks up to it."""
    span = max(highest, floor)
    raw = span / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    count = math.ceil(span / step - 1e-9)
    return step * count, tuple(step * n for n in range(count + 1))


def _dollars_tick(ticks: Sequence[float]) -> Callable[[float], str]:
    """Dollars with as many decimals as the ticks need to read exactly ($0.000025)."""
    decimals = next(d for d in range(10) if all(abs(round(t, d) - t) < 1e-12 for t in ticks))

    def fmt(v: float) -> str:
        return f"${v:.{decimals}f}"

    return fmt


def _svg(name: str, title: str, height: float, parts: Sequence[str]) -> str:
    return (
        f'<figure class="chart" data-chart="{name}"><figcaption>{escape(title)}</figcaption>'
        f'<svg viewBox="0 0 {WIDTH} {height:.0f}" role="img" aria-label="{escape(title)}">'
        f"{''.join(parts)}</svg></figure>"
    )
