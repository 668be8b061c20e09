"""The terminal summary: per-suite model table, per-field rates, misses, the gate's decision."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from typing import Protocol

from pytest_llmeval.engine.engine import PlanRow
from pytest_llmeval.engine.limits import AdaptiveLimit
from pytest_llmeval.langsmith.upload import UploadReport
from pytest_llmeval.results.baseline import Change
from pytest_llmeval.results.comparison import pair
from pytest_llmeval.results.gate import CONFIDENCE, Failure, RegressionFailure
from pytest_llmeval.results.records import Record, Summary, pct, threshold_label
from pytest_llmeval.results.stats import mcnemar_exact

HEADER = (
    "model", "cases", "pass", "miss", "error", "accuracy", "95% CI",
    "fields", "p50", "p99", "tokens in", "tokens out", "cost",
)  # fmt: skip


class Writer(Protocol):
    """The part of pytest's TerminalReporter used here."""

    def write(self, content: str, **markup: bool) -> None: ...
    def write_line(self, line: str, **markup: bool) -> None: ...
    def write_sep(self, sep: str, title: str | None = None, **markup: bool) -> None: ...


def write_summary(
    tw: Writer,
    summaries: Sequence[Summary],
    failures: Sequence[Failure],
    *,
    misses_shown: int | None,
    reference: str | None = None,
    baseline: tuple[str, Sequence[Change]] | None = None,
    confidence: str = "point",
    verbosity: int = 0,
    width: int = 80,
) -> None:
    """The summary; with -q (``verbosity`` < 0) one line per suite and model. ``width`` is
    the terminal's, to which long diff lines are folded."""
    if verbosity < 0:
        _write_quiet(tw, summaries, failures, confidence)
        return
    failed = {(f.suite, f.model) for f in failures}
    suites = list(dict.fromkeys(s.suite for s in summaries))
    for suite in suites:
        rows = [s for s in summaries if s.suite == suite]
        threshold = rows[0].threshold
        tw.write_sep("-", f"llmeval: {suite} ({threshold_label(threshold)})")
        _table(tw, suite_table(rows), [(), *(_row_styles(s, failed) for s in rows)])
        fields = list(dict.fromkeys(name for s in rows for name in s.field_rates))
        if fields:
            tw.write_line("")
            header = ("field", *(s.model for s in rows))
            lines = [(name, *(pct(s.field_rates.get(name)) for s in rows)) for name in fields]
            _table(tw, [header, *lines])
        if any(s.repeats > 1 for s in rows):
            _write_repeats(tw, rows)
        against = next((s for s in rows if s.model == reference), None)
        if against is not None and len(rows) > 1:
            _write_paired(tw, against, [s for s in rows if s is not against])
    if baseline is not None:
        _write_baseline(tw, *baseline)
    misses = [r for s in summaries for r in s.missed()]
    if misses:
        _write_misses(tw, misses, misses_shown, all_diff=verbosity > 0, width=width)
    _write_gate(tw, summaries, failures, confidence)


def _row_styles(s: Summary, failed: set[tuple[str, str]]) -> tuple[Markup, ...]:
    """The cells a reader's eye should go to: misses, errors, and the accuracy in the
    gate's colour."""
    styles: list[Markup] = [{}] * len(HEADER)
    styles[3] = {"yellow": True} if s.misses else {}
    styles[4] = {"red": True, "bold": True} if s.errors else {}
    if (s.suite, s.model) in failed:
        styles[5] = {"red": True, "bold": True}
    elif s.threshold is not None and s.accuracy is not None:
        styles[5] = {"green": True, "bold": True}
    return tuple(styles)


def _write_quiet(
    tw: Writer, summaries: Sequence[Summary], failures: Sequence[Failure], confidence: str
) -> None:
    """-q: one line per suite and model, and the gate's decision."""
    failed = {(f.suite, f.model) for f in failures}
    for s in summaries:
        figures = [
            f"{pct(s.accuracy)} ({s.passes} of {s.answered}"
            + (f", 95% CI {s.interval[0]:.1%} to {s.interval[1]:.1%})" if s.interval else ")"),
            f"errors {s.errors}" if s.errors else "",
            f"fields {pct(s.field_accuracy)}" if s.field_rates else "",
            f"p50 {_seconds(s.latency(0.5))} p99 {_seconds(s.latency(0.99))}",
            f"tokens {s.input_tokens:,} in {s.output_tokens:,} out",
            dollars(s.cost),
        ]
        verdict = (
            "FAILED" if (s.suite, s.model) in failed
            else "passed" if s.threshold is not None and s.accuracy is not None
            else "not gated"
        )  # fmt: skip
        line = f"llmeval {s.suite} / {s.model}: {', '.join(f for f in figures if f)}"
        tw.write_line(f"{line}: {verdict} ({threshold_label(s.threshold)})",
                      red=verdict == "FAILED", green=verdict == "passed")  # fmt: skip
    regressed = [f for f in failures if isinstance(f, RegressionFailure)]
    for failure in regressed:
        tw.write_line(f"llmeval gate FAILED: {failure.describe()}", red=True, bold=True)
    if failures:
        below = len(failures) - len(regressed)
        tw.write_line(f"llmeval gate FAILED: {below} suite/model pair(s) below threshold"
                      + (f", {len(regressed)} regressed" if regressed else ""),
                      red=True, bold=True)  # fmt: skip
    else:
        _write_gate(tw, summaries, failures, confidence)


BASELINE_HEADER = (
    "suite / model", "accuracy then", "now", "change", "p50 then", "now", "cost then", "now",
)  # fmt: skip


def _write_baseline(tw: Writer, name: str, changes: Sequence[Change]) -> None:
    """Accuracy, latency and cost then and now, and the cases that changed side."""
    tw.write_sep("-", f"llmeval: against the baseline {name}")
    if not changes:
        tw.write_line("no suite and model of this run is in the baseline")
        return
    change_styles = [
        tuple({"red": True} if i == 3 and (c.drop_points or 0) > 0 else
              {"green": True} if i == 3 and (c.drop_points or 0) < 0 else {}
              for i in range(len(BASELINE_HEADER)))
        for c in changes
    ]  # fmt: skip
    _table(tw, [BASELINE_HEADER, *baseline_rows(changes)], [(), *change_styles])
    for line in change_lines(changes):
        tw.write_line(line)


def baseline_rows(changes: Sequence[Change]) -> list[tuple[str, ...]]:
    return [
        (f"{c.suite} / {c.model}", pct(c.before.accuracy), pct(c.now.accuracy),
         "-" if c.drop_points is None else _points(-c.drop_points / 100),
         _seconds(c.before.latency(0.5)), _seconds(c.now.latency(0.5)),
         dollars(c.before.cost), dollars(c.now.cost))
        for c in changes
    ]  # fmt: skip


def change_lines(changes: Sequence[Change]) -> list[str]:
    """The cases that changed side since the baseline (shared with `llmeval gate`)."""
    return [
        f"{change.suite} / {change.model} {what}: {', '.join(cases)}"
        for change in changes
        for what, cases in (("newly failing", change.newly_failing),
                            ("newly passing", change.newly_passing))
        if cases
    ]  # fmt: skip


def _write_repeats(tw: Writer, rows: Sequence[Summary]) -> None:
    tw.write_line("")
    tw.write_line(f"each case asked {max(s.repeats for s in rows)} times:")
    _table(tw, repeat_table(rows))


def repeat_table(rows: Sequence[Summary]) -> list[tuple[str, ...]]:
    """Asked several times: accuracy over all answers, pass^N over cases, the flaky ones
    (header first)."""
    repeats = max(s.repeats for s in rows)
    lines: list[tuple[str, ...]] = [
        ("model", "answers", "accuracy", f"pass^{repeats}", "flaky cases")
    ]
    for s in rows:
        flaky = ", ".join(f"{case} ({right} of {asked})" for case, (right, asked)
                          in sorted(s.flaky.items()))  # fmt: skip
        right, cases = s.always_right
        lines.append((s.model, str(s.answered), pct(s.accuracy),
                      f"{pct(s.pass_all)} ({right} of {cases})", flaky or "none"))  # fmt: skip
    return lines


PAIRED_HEADER = (
    "candidate", "cases", "both right", "both wrong", "only reference", "only candidate",
    "difference", "95% CI", "McNemar p",
)  # fmt: skip
SIGNIFICANCE = 0.05
# Cases where two models differ that McNemar's exact test needs before any split of them
# can be significant at 5%: 2 x (1/2)^6 = 0.031, where 5 give 0.0625.
DECISIVE = 6


def _write_paired(tw: Writer, reference: Summary, candidates: Sequence[Summary]) -> None:
    tw.write_line("")
    tw.write_line(f"against {reference.model} (reference), on the cases both answered:")
    rows, verdicts = paired_table(reference, candidates)
    if len(rows) > 1:
        _table(tw, rows)
    for verdict in verdicts:
        tw.write_line(verdict)


def paired_table(
    reference: Summary, candidates: Sequence[Summary]
) -> tuple[list[tuple[str, ...]], list[str]]:
    """Each model against the reference on the cases both answered (header first), and
    what it shows."""
    rows: list[tuple[str, ...]] = [PAIRED_HEADER]
    verdicts = []
    for candidate in candidates:
        paired = pair(reference.records, candidate.records)
        if not paired.cases:
            verdicts.append(f"{candidate.model}: no case answered by both")
            continue
        low, high = paired.interval()
        rows.append((
            candidate.model, str(paired.cases), str(paired.both), str(paired.neither),
            str(paired.only_reference), str(paired.only_candidate),
            _points(paired.difference), f"{_points(low)} to {_points(high)}",
            f"{paired.p_value:.3f}",
        ))  # fmt: skip
        if paired.p_value < SIGNIFICANCE:
            direction = "WORSE" if paired.difference < 0 else "BETTER"
            verdicts.append(f"{candidate.model}: {direction} than {reference.model} "
                            f"(p = {paired.p_value:.3f} < {SIGNIFICANCE:g})")  # fmt: skip
        else:
            verdict = (
                f"{candidate.model}: no significant difference from {reference.model} "
                f"(p = {paired.p_value:.3f}); the data does not show it worse or better"
            )
            differing = paired.only_reference + paired.only_candidate
            if mcnemar_exact(differing, 0) >= SIGNIFICANCE:  # even if all went one way
                verdict += (
                    f": they differ on {differing} case(s), and it takes at least "
                    f"{DECISIVE} to show anything"
                )
            verdicts.append(verdict)
    return rows, verdicts


def _points(value: float) -> str:
    return f"{value * 100:+.1f} pts"


def suite_table(rows: Sequence[Summary]) -> list[tuple[str, ...]]:
    """A suite's model table, header first; the judge's cost apart from the model's."""
    if any(s.judged for s in rows):
        return [(*HEADER, "judge cost"), *((*row(s), dollars(s.judge_cost)) for s in rows)]
    return [HEADER, *(row(s) for s in rows)]


def row(s: Summary) -> tuple[str, ...]:
    """A model's row of the suite table, as the terminal and the Markdown report show it."""
    interval = s.interval
    ci = f"{interval[0]:.1%} to {interval[1]:.1%}" if interval else "-"
    cost = dollars(s.cost)
    return (
        s.model, str(len(s.records)), str(s.passes), str(s.misses), str(s.errors),
        pct(s.accuracy), ci, pct(s.field_accuracy),
        _seconds(s.latency(0.5)), _seconds(s.latency(0.99)),
        f"{s.input_tokens:,}", f"{s.output_tokens:,}", cost,
    )  # fmt: skip


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


def _write_gate(
    tw: Writer, summaries: Sequence[Summary], failures: Sequence[Failure], confidence: str
) -> None:
    for line in gate_lines(summaries, failures, confidence):
        failed = line.startswith("llmeval gate FAILED")
        tw.write_line(line, red=failed, bold=failed, green=line.startswith("llmeval gate passed"))


def bare(line: str) -> str:
    """A gate line without its "llmeval gate"/"llmeval:" prefix, for a report that has a
    heading of its own."""
    return line.removeprefix("llmeval gate ").removeprefix("llmeval: ")


def _gated(summaries: Sequence[Summary]) -> list[Summary]:
    return [s for s in summaries if s.threshold is not None and s.accuracy is not None]


def gate_state(summaries: Sequence[Summary], failures: Sequence[Failure]) -> str:
    """The decision in a word, for a report's heading: FAILED, passed, or not set."""
    return "FAILED" if failures else "passed" if _gated(summaries) else "not set"


def gate_lines(
    summaries: Sequence[Summary], failures: Sequence[Failure], confidence: str = "point"
) -> list[str]:
    """The gate's decision in words (shared with `llmeval gate`)."""
    gated = _gated(summaries)
    rule = [] if confidence == "point" or not gated else [
        f"llmeval gate: --llm-confidence={confidence}: the {CONFIDENCE[confidence]} of each "
        "accuracy (or pass^N) is held against the threshold"
    ]  # fmt: skip
    if failures:
        return rule + [f"llmeval gate FAILED: {failure.describe()}" for failure in failures]
    if gated:
        return [
            *rule,
            f"llmeval gate passed: {len(gated)} suite/model pair(s) at or above threshold",
        ]
    return ["llmeval: no threshold set (--llm-threshold or a suite's `threshold:`)"]


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
    refusals: dict[str, int] = {}
    for record in called:
        refusals[record.model] = refusals.get(record.model, 0) + record.rate_limited
    for name, count in refusals.items():
        if not count:
            continue
        line = f"llmeval rate limits: {name} answered 429 {count} time{'s' if count > 1 else ''}"
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
         f"{row.tokens_in:,}", f"{row.tokens_out:,}", dollars(row.cost))
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


def write_published(
    tw: Writer, upload: UploadReport | None, saved: str | None, save_error: str | None
) -> None:
    """Where the results file is; what reached LangSmith, where to look at it, and what to
    do when not all of it did."""
    if upload is None:
        if save_error is not None:
            tw.write_line(f"llmeval: WARNING: results file not written: {save_error}",
                          yellow=True, bold=True)  # fmt: skip
        else:
            tw.write_line(f"llmeval results: {saved}")
        return
    for line, warning in upload_lines(upload, saved, save_error):
        tw.write_line(line, yellow=warning, bold=warning)


def upload_lines(
    upload: UploadReport, saved: str | None, save_error: str | None = None
) -> list[tuple[str, bool]]:
    """The lines, each with whether it is a warning (shared with `llmeval upload`)."""
    lines: list[tuple[str, bool]] = []
    done = f"{upload.runs_done} of {upload.results} results"
    if upload.complete:
        parts = [
            f"{upload.runs_sent} runs",
            f"{upload.feedback_sent} feedback scores",
            f"examples {upload.examples_created} created, {upload.examples_updated} updated",
        ]
        if upload.runs_before:
            parts.append(f"{upload.runs_before} runs sent before")
        lines.append(
            (f"llmeval langsmith: {done} sent to {upload.endpoint}: " + ", ".join(parts), False)
        )
    else:
        why = (
            f"stopped: {upload.failure}"
            if upload.failure is not None
            else f"not finished after {upload.timed_out:g}s (--llm-langsmith-timeout)"
        )
        warning = (
            f"llmeval: WARNING: LangSmith upload {why}; {done} sent to {upload.endpoint}. "
            "Test outcomes and the gate do not depend on it."
        )
        lines.append((warning, True))
        if saved is not None:
            lines.append(
                (
                    f"  all results are in {saved}; send them later with: llmeval upload {saved}",
                    True,
                )
            )
    for link in upload.experiments:
        lines.append((f"  {link.suite} / {link.model}: {link.url or link.name}", False))
    if save_error is not None:
        lines.append((f"llmeval: WARNING: results file not written: {save_error}", True))
    elif saved is not None and upload.complete:
        lines.append((f"llmeval results: {saved}", False))
    return lines


def dollars(value: float | None) -> str:
    return f"${value:.4f}" if value is not None else "unknown"


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
