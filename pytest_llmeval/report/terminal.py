"""The terminal summary: per suite the model table, per-field rates, repeats and the
comparison with the reference; the baseline's changes, the misses, the gate's decision;
the dry run's estimate and where the answers came from. Rows and wording come from
`view`; this module lays them out and colours them."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from pytest_llmeval.engine.engine import PlanRow
from pytest_llmeval.engine.limits import AdaptiveLimit
from pytest_llmeval.report import view
from pytest_llmeval.report.view import GateLine, LineKind, pct, rate_limit_text, threshold_label
from pytest_llmeval.results.baseline import Change
from pytest_llmeval.results.comparison import Comparison
from pytest_llmeval.results.gate import Decision, Failure
from pytest_llmeval.results.records import Record, Summary, rate_limits


class Writer(Protocol):
    """The part of pytest's TerminalReporter used here."""

    def write(self, content: str, **markup: bool) -> None: ...
    def write_line(self, line: str, **markup: bool) -> None: ...
    def write_sep(self, sep: str, title: str | None = None, **markup: bool) -> None: ...


def write_summary(
    tw: Writer,
    decision: Decision,
    *,
    misses_shown: int | None,
    baseline: str | None = None,
    verbosity: int = 0,
    width: int = 80,
    models: Mapping[str, object] | None = None,
    cost_at: int | None = None,
) -> None:
    """The summary; with -q (``verbosity`` < 0) one line per suite and model. ``baseline``
    is the baseline's file as shown; ``width`` the terminal's, to which long diff lines
    are folded; ``cost_at`` (--llm-cost-at) projects each model's cost at its price in
    ``models`` (as the results file has them)."""
    if verbosity < 0:
        _write_quiet(tw, decision)
        return
    for suite, rows in decision.suites():
        tw.write_sep("-", f"llmeval: {suite} ({view.threshold_heading(decision, rows)})")
        _table(tw, view.suite_table(rows), [(), *(_row_styles(s, decision) for s in rows)])
        if cost_at is not None:
            tw.write_line("")
            tw.write_line(view.cost_at_heading(cost_at))
            _table(tw, view.cost_at_table(rows, models or {}, cost_at))
        fields = view.field_table(rows)
        if fields:
            tw.write_line("")
            _table(tw, fields)
        if any(s.repeats > 1 for s in rows):
            tw.write_line("")
            tw.write_line(f"each case asked {max(s.repeats for s in rows)} times:")
            _table(tw, view.repeat_table(rows))
        comparisons = decision.comparisons_in(suite)
        if comparisons and len(rows) > 1:
            _write_paired(tw, comparisons)
    if baseline is not None:
        _write_baseline(tw, baseline, decision.changes)
    misses = [r for s in decision.summaries for r in s.missed()]
    if misses:
        _write_misses(tw, misses, misses_shown, all_diff=verbosity > 0, width=width)
    write_gate(tw, view.gate_lines(decision))


def _row_styles(s: Summary, decision: Decision) -> tuple[Markup, ...]:
    """The cells a reader's eye should go to: misses, errors, and the accuracy in the
    gate's colour."""
    styles: list[Markup] = [{}] * len(view.HEADER)
    styles[3] = {"yellow": True} if s.misses else {}
    styles[4] = {"red": True, "bold": True} if s.errors else {}
    state = decision.state_of(s)
    if state != "not gated":
        styles[5] = {"red" if state == "FAILED" else "green": True, "bold": True}
    return tuple(styles)


def _write_quiet(tw: Writer, decision: Decision) -> None:
    """-q: one line per suite and model, and the gate's decision."""
    for s in decision.summaries:
        figures = [
            f"{pct(s.accuracy)} ({s.passes} of {s.asked}"
            + (f", 95% CI {view.interval_text(s)})" if s.interval else ")"),
            f"errors {s.errors}" if s.errors else "",
            f"fields {pct(s.field_accuracy)}" if s.field_rates else "",
            f"p50 {view.seconds(s.latency(0.5))} p99 {view.seconds(s.latency(0.99))}",
            f"tokens {s.input_tokens:,} in {s.output_tokens:,} out",
            view.dollars(s.cost),
        ]
        state = decision.state_of(s)
        line = f"llmeval {s.suite} / {s.model}: {', '.join(f for f in figures if f)}"
        tw.write_line(f"{line}: {state} ({threshold_label(s.threshold)})",
                      red=state == "FAILED", green=state == "passed")  # fmt: skip
    regressed, against = decision.regressed, decision.against_reference
    own_lines: list[Failure] = [*regressed, *against]  # not "below threshold": said whole
    for failure in own_lines:
        tw.write_line(f"llmeval gate FAILED: {view.failure_text(failure)}", red=True, bold=True)
    if decision.failures:
        write_gate(tw, [line for line in view.gate_lines(decision) if line.kind == "rule"])
        below = len(decision.below_threshold)
        tw.write_line(f"llmeval gate FAILED: {below} suite/model pair(s) below threshold"
                      + (f", {len(regressed)} regressed" if regressed else "")
                      + (f", {len(against)} against the reference" if against else ""),
                      red=True, bold=True)  # fmt: skip
    else:
        write_gate(tw, view.gate_lines(decision))


def _write_baseline(tw: Writer, name: str, changes: Sequence[Change]) -> None:
    """Accuracy, latency and cost then and now, and the cases that changed side."""
    tw.write_sep("-", f"llmeval: against the baseline {name}")
    if not changes:
        tw.write_line("no suite and model of this run is in the baseline")
        return
    change_styles = [
        tuple({"red": True} if i == 3 and (c.drop_points or 0) > 0 else
              {"green": True} if i == 3 and (c.drop_points or 0) < 0 else {}
              for i in range(len(view.BASELINE_HEADER)))
        for c in changes
    ]  # fmt: skip
    _table(tw, [view.BASELINE_HEADER, *view.baseline_rows(changes)], [(), *change_styles])
    for line in view.change_lines(changes):
        tw.write_line(line)


def _write_paired(tw: Writer, comparisons: Sequence[Comparison]) -> None:
    tw.write_line("")
    tw.write_line(view.paired_heading(comparisons))
    rows, verdicts = view.paired_table(comparisons)
    if len(rows) > 1:
        _table(tw, rows)
    for verdict in verdicts:
        tw.write_line(verdict)


Markup = dict[str, bool]


def _table(
    tw: Writer, rows: Sequence[Sequence[str]], styles: Sequence[Sequence[Markup]] = ()
) -> None:
    """Aligned columns, the first left, the rest right, the header bold; ``styles`` colours
    single cells (on a terminal: pytest drops the markup when output is not one)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        marks = styles[n] if n < len(styles) else ()
        if not any(marks):
            tw.write_line("  ".join(cells).rstrip(), bold=n == 0)
            continue
        for i, cell in enumerate(cells):
            tw.write(("  " if i else "") + cell, **(marks[i] if i < len(marks) else {}))
        tw.write("\n")


DIFF_SHOWN = 5


def _write_misses(
    tw: Writer, misses: Sequence[Record], shown: int | None, *, all_diff: bool, width: int
) -> None:
    """Each miss: where it is, why, and its first differences, folded to the terminal."""
    tw.write_sep("-", f"llmeval: {len(misses)} missed")
    limit = len(misses) if shown is None else shown
    for record in misses[:limit]:
        tw.write_line(f"MISS {record.nodeid}  ({record.location})", yellow=True)
        tw.write_line(f"  {record.reason}")
        diff = record.diff if all_diff else record.diff[:DIFF_SHOWN]
        for line in diff:
            for folded in textwrap.wrap(line, max(width - 1, 40), initial_indent="    ",
                                        subsequent_indent="      "):  # fmt: skip
                tw.write_line(folded)
        if len(record.diff) > len(diff):
            tw.write_line(f"    ... {len(record.diff) - len(diff)} more (-v shows them)")
    if len(misses) > limit:
        tw.write_line(
            f"... and {len(misses) - limit} more misses (-v or --llm-misses-shown=N shows them)"
        )


# The gate's colours, by the kind of line.
GATE_MARKUP: dict[LineKind, Markup] = {
    "failed": {"red": True, "bold": True},
    "passed": {"green": True},
    "rule": {},
    "unset": {},
}


def write_gate(tw: Writer, lines: Iterable[GateLine]) -> None:
    for line in lines:
        tw.write_line(line.line, **GATE_MARKUP[line.kind])


def write_prices(tw: Writer, models: Mapping[str, object], names: Sequence[str]) -> None:
    """Each model's price and where it came from (``models`` as the results file has them)."""
    for line in view.price_lines(models, names):
        tw.write_line(f"llmeval {line}")


def write_lines(tw: Writer, lines: Iterable[tuple[str, bool]]) -> None:
    """Lines each marked as a warning or not (where a run's results went)."""
    for line, warning in lines:
        tw.write_line(line, yellow=warning, bold=warning)


def write_engine_notes(
    tw: Writer, records: Sequence[Record], limits: Mapping[str, AdaptiveLimit], cache: str
) -> None:
    """Where the answers came from, what was spent, and how rate limits were met."""
    answered = [r for r in records if r.cached or r.attempts]
    if not answered:
        return
    replayed = sum(r.cached for r in answered)
    called = [r for r in answered if not r.cached]
    parts = [f"{replayed} replayed from {cache}/", f"{len(called)} called"]
    retried = sum(r.attempts > 1 for r in called)
    if retried:
        parts[-1] += f" ({retried} after retries)"
    priced = [r.cost for r in called if r.cost is not None]
    if priced:
        unpriced = " + calls of unknown price" if len(priced) < len(called) else ""
        parts.append(f"spent ${sum(priced):.4f}{unpriced}")
    elif called:
        parts.append("spend unknown (no price)")
    tw.write_line("llmeval answers: " + ", ".join(parts))
    judged = [r for r in records if r.judge_calls]
    if judged:
        replayed_judged = sum(r.judge_cached for r in judged)
        tw.write_line(
            f"llmeval judge: {sum(r.judge_calls for r in judged)} grades for {len(judged)} "
            f"answers, {replayed_judged} of those answers judged from recordings"
        )
    for met in rate_limits(called):
        if not met.rate_limited:
            continue
        name = met.model
        line = f"llmeval rate limits: {rate_limit_text(met)}"
        limit = limits.get(name)  # this process's (none on the xdist controller)
        if limit is not None and limit.lowest < limit.maximum:
            line += (
                f"; concurrency lowered from {limit.maximum} to {limit.lowest}, "
                f"{limit.limit} at the end"
            )
        elif limit is not None:
            line += f"; concurrency kept at {limit.maximum}"
        tw.write_line(line)


def write_plan(tw: Writer, rows: Sequence[PlanRow], max_cost: float | None, record: str) -> None:
    """The dry run's estimate, per model."""
    tw.write_sep("-", "llmeval dry run: nothing was called")
    header = ("model", "requests", "recorded", "to call", "~tokens in", "~tokens out", "~cost")
    costs = [row.cost for row in rows]
    total = None if None in costs else sum(c or 0.0 for c in costs)
    unrecorded = sum(row.to_call for row in rows)
    if len(rows) > 1:
        rows = [*rows, PlanRow(
            "total", sum(r.requests for r in rows), sum(r.recorded for r in rows),
            sum(r.tokens_in for r in rows), sum(r.tokens_out for r in rows), total,
        )]  # fmt: skip
    lines = [
        (row.model, str(row.requests), str(row.recorded), str(row.to_call),
         f"{row.tokens_in:,}", f"{row.tokens_out:,}", view.dollars(row.cost))
        for row in rows
    ]  # fmt: skip
    _table(tw, [header, *lines])
    tw.write_line(
        "~ estimates: 4 characters a token in; out, the expected answer's length or max_tokens."
        " Recorded answers are replayed and cost nothing."
    )
    if record == "none" and unrecorded:
        tw.write_line(
            f"--llm-record=none: the {unrecorded} requests not recorded would be errors, not calls"
        )
    if max_cost is not None and total is not None:
        verdict = "within" if total <= max_cost else "OVER"
        tw.write_line(f"--llm-max-cost ${max_cost:g}: the estimate is {verdict} it")
