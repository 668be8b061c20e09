"""The terminal summary: per-suite model table, per-field rates, misses, the gate's decision."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

from pytest_llmeval.gate import GateFailure
from pytest_llmeval.results import Record, Summary

HEADER = (
    "model", "cases", "pass", "miss", "error", "accuracy", "95% CI",
    "fields", "p50", "p99", "tokens in", "tokens out", "cost",
)  # fmt: skip


class Writer(Protocol):
    """The part of pytest's TerminalReporter used here."""

    def write_line(self, line: str, **markup: bool) -> None: ...
    def write_sep(self, sep: str, title: str | None = None, **markup: bool) -> None: ...


def write_summary(
    tw: Writer,
    summaries: Sequence[Summary],
    failures: Sequence[GateFailure],
    *,
    misses_shown: int | None,
) -> None:
    suites = list(dict.fromkeys(s.suite for s in summaries))
    for suite in suites:
        rows = [s for s in summaries if s.suite == suite]
        threshold = rows[0].threshold
        # :g keeps 99.5% from showing as 100%.
        gate = f"threshold {threshold * 100:g}%" if threshold is not None else "no threshold"
        tw.write_sep("-", f"llmeval: {suite} ({gate})")
        _table(tw, [HEADER, *(_row(s) for s in rows)])
        fields = list(dict.fromkeys(name for s in rows for name in s.field_rates))
        if fields:
            tw.write_line("")
            header = ("field", *(s.model for s in rows))
            lines = [(name, *(_pct(s.field_rates.get(name)) for s in rows)) for name in fields]
            _table(tw, [header, *lines])
    misses = [r for s in summaries for r in s.missed()]
    if misses:
        _write_misses(tw, misses, misses_shown)
    _write_gate(tw, summaries, failures)


def _row(s: Summary) -> tuple[str, ...]:
    interval = s.interval
    ci = f"{interval[0]:.1%} to {interval[1]:.1%}" if interval else "-"
    cost = f"${s.cost:.4f}" if s.cost is not None else "unknown"
    return (
        s.model, str(len(s.records)), str(s.passes), str(s.misses), str(s.errors),
        _pct(s.accuracy), ci, _pct(s.field_accuracy),
        _seconds(s.latency(0.5)), _seconds(s.latency(0.99)),
        f"{s.input_tokens:,}", f"{s.output_tokens:,}", cost,
    )  # fmt: skip


def _table(tw: Writer, rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        tw.write_line("  ".join(cells).rstrip(), bold=n == 0)


def _write_misses(tw: Writer, misses: Sequence[Record], shown: int | None) -> None:
    tw.write_sep("-", f"llmeval: {len(misses)} missed")
    limit = len(misses) if shown is None else shown
    for record in misses[:limit]:
        tw.write_line(f"MISS {record.nodeid}  ({record.location})", yellow=True)
        tw.write_line(f"  {record.reason}")
        for line in record.diff:
            tw.write_line(f"    {line}")
    if len(misses) > limit:
        tw.write_line(
            f"... and {len(misses) - limit} more misses (-v or --llm-misses-shown=N shows them)"
        )


def _write_gate(tw: Writer, summaries: Sequence[Summary], failures: Sequence[GateFailure]) -> None:
    gated = [s for s in summaries if s.threshold is not None and s.accuracy is not None]
    if failures:
        for failure in failures:
            tw.write_line(f"llmeval gate FAILED: {failure.describe()}", red=True, bold=True)
    elif gated:
        tw.write_line(
            f"llmeval gate passed: {len(gated)} suite/model pair(s) at or above threshold",
            green=True,
        )
    else:
        tw.write_line("llmeval: no threshold set (--llm-threshold or a suite's `threshold:`)")


def _pct(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "-"


def _seconds(value: float | None) -> str:
    return f"{value:.2f}s" if value is not None else "-"


def miss_text(record: Record) -> str:
    """A miss as a failure (--llm-strict): where the case is, the diff, expected and answer."""
    lines = [
        f"{record.location}: case {record.case!r} of suite {record.suite!r}, "
        f"model {record.model}: MISS ({record.reason})",
        *(f"  {line}" for line in record.diff),
        "expected:",
        "  " + json.dumps(record.expected, ensure_ascii=False),
    ]
    if record.answer is not None:
        lines += ["answer:", "  " + " ".join(record.answer.split())]
    return "\n".join(lines)
