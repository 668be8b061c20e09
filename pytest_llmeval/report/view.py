"""What every report shows, as rows and lines of text: the suite table, repeats, the paired
comparison, the baseline's changes, the gate's decision, a miss. The terminal, Markdown,
HTML and the ``llmeval`` command lay these out each in its own way; none of them words a
figure or a verdict itself."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pytest_llmeval.results.baseline import Change
from pytest_llmeval.results.comparison import SIGNIFICANCE, Comparison
from pytest_llmeval.results.gate import (
    CONFIDENCE,
    ComparisonFailure,
    Decision,
    Failure,
    GateFailure,
    RegressionFailure,
)
from pytest_llmeval.results.projection import Projection, project
from pytest_llmeval.results.records import RateLimits, Record, Summary
from pytest_llmeval.results.saved_run import price_of

LISTED = 10  # cases named in a gate failure's line

HEADER = (
    "model", "cases", "pass", "miss", "error", "accuracy", "95% CI",
    "fields", "p50", "p99", "tokens in", "tokens out", "cost",
)  # fmt: skip
Row = tuple[str, ...]


def pct(value: float | None) -> str:
    """A share as the reports show it: 66.7%, or "-" when there is none."""
    return "-" if value is None else f"{value:.1%}"


def threshold_label(threshold: float | None) -> str:
    """A suite's gate as the reports head it: "threshold 90%" (:g keeps 99.5% from
    showing as 100%)."""
    return f"threshold {threshold * 100:g}%" if threshold is not None else "no threshold"


def threshold_heading(decision: Decision, rows: Sequence[Summary]) -> str:
    """A suite's threshold as its heading says it, with what it takes: "threshold 90%:
    needs 54 of 60"."""
    label = threshold_label(rows[0].threshold)
    if rows[0].threshold is None:
        return label
    need = decision.threshold_need(rows[0])
    cases = rows[0].cases
    if need is None:
        return f"{label}: not reachable with {cases} cases"
    return f"{label}: needs {need} of {cases}"


def dollars(value: float | None) -> str:
    return f"${value:.4f}" if value is not None else "unknown"


def price_text(described: Mapping[str, Any]) -> str:
    """A model's price and where it came from, from what the results file says of the model
    (``describe_models``; a file may be old or edited, so nothing in it is taken as given):
    "genai-prices 0.2.3 (openai gpt-4o-mini): $0.00015 in, $0.0006 out per 1K tokens"."""
    said = price_source_text(described)
    price = price_of(described)
    if price is not None:
        said += f": ${price.input_per_1k:g} in, ${price.output_per_1k:g} out per 1K tokens"
    return said


def price_source_text(described: Mapping[str, Any]) -> str:
    """Where a model's price came from, as ``price_text`` begins: "pyproject.toml"."""
    source = described.get("price_source")
    source = source if isinstance(source, Mapping) else {}
    kind, version = source.get("kind"), source.get("version") or "?"
    provider, model = source.get("provider") or "", source.get("model") or ""
    if kind == "genai-prices":
        return f"genai-prices {version} ({provider} {model})"
    if kind == "pyproject":
        return "pyproject.toml"
    if kind == "august-2023":
        return f"OpenAI list price of August 2023 ({model})"
    if kind == "none" and provider:
        return f"none (genai-prices {version} does not know {provider} {model}; tokens only)"
    if kind == "none":
        return "none (local model, tokens only)"
    return "source not recorded"


def price_lines(models: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """One line per model run (in ``names``' order) saying what its price is and whence."""
    return [
        f"price of {name}: {price_text(models[name])}"
        for name in names
        if isinstance(models.get(name), Mapping)
    ]


def seconds(value: float | None) -> str:
    return f"{value:.2f}s" if value is not None else "-"


def points(value: float) -> str:
    shown = f"{value * 100:+.1f}"
    return f"{'0.0' if shown in ('+0.0', '-0.0') else shown} pts"


def interval_text(s: Summary) -> str:
    interval = s.interval
    return f"{interval[0]:.1%} to {interval[1]:.1%}" if interval else "-"


def row(s: Summary) -> Row:
    """A model's row of the suite table: answers asked, and how they went."""
    return (
        s.model, str(s.asked), str(s.passes), str(s.misses), str(s.errors),
        pct(s.accuracy), interval_text(s), pct(s.field_accuracy),
        seconds(s.latency(0.5)), seconds(s.latency(0.99)),
        f"{s.input_tokens:,}", f"{s.output_tokens:,}", dollars(s.cost),
    )  # fmt: skip


def suite_table(rows: Sequence[Summary]) -> list[Row]:
    """A suite's model table, header first; the judge's cost apart from the model's. Asked
    several times, a case's answers are counted each: the column says answers."""
    header = HEADER if all(s.repeats == 1 for s in rows) else ("model", "answers", *HEADER[2:])
    if any(s.judged for s in rows):
        return [(*header, "judge cost"), *((*row(s), dollars(s.judge_cost)) for s in rows)]
    return [header, *(row(s) for s in rows)]


def cost_at_heading(requests: int) -> str:
    return f"at {requests:,} requests, from each model's mean tokens per answered request:"


def cost_at_table(rows: Sequence[Summary], models: Mapping[str, Any], requests: int) -> list[Row]:
    """Each model's cost projected to ``requests`` requests (header first), its price read
    from what the results file says of it (``models``), so a live run and ``llmeval
    report`` project alike."""
    table: list[Row] = [("model", "mean tokens in", "mean tokens out", "price source",
                         f"cost at {requests:,} requests")]  # fmt: skip
    for s in rows:
        described = models.get(s.model)
        described = described if isinstance(described, Mapping) else {}
        p = project(s, price_of(described), requests)
        table.append((s.model, _mean(p.mean_input), _mean(p.mean_output),
                      price_source_text(described), _projected(p)))  # fmt: skip
    return table


def _mean(tokens: float | None) -> str:
    return "-" if tokens is None else f"{tokens:,.1f}"


def _projected(p: Projection) -> str:
    """The projection in dollars and cents, thousands grouped (a volume's cost is no
    fraction of a cent), or why there is none."""
    if not p.answered:
        return "no answered request"
    if p.mean_input is None:
        return "no token counts"
    return "unpriced" if p.cost is None else f"${p.cost:,.2f}"


def field_table(rows: Sequence[Summary]) -> list[Row]:
    """Each field's pass rate per model, header first; empty when no answer had fields."""
    fields = list(dict.fromkeys(name for s in rows for name in s.field_rates))
    if not fields:
        return []
    header = ("field", *(s.model for s in rows))
    return [header, *((name, *(pct(s.field_rates.get(name)) for s in rows)) for name in fields)]


def repeat_table(rows: Sequence[Summary]) -> list[Row]:
    """Asked several times: accuracy over all answers, pass^N over cases, the flaky ones
    (header first)."""
    repeats = max(s.repeats for s in rows)
    lines: list[Row] = [("model", "answers", "accuracy", f"pass^{repeats}", "flaky cases")]
    for s in rows:
        flaky = ", ".join(f"{case} ({right} of {asked})" for case, (right, asked)
                          in sorted(s.flaky.items()))  # fmt: skip
        right, cases = s.always_right
        lines.append((s.model, str(s.asked), pct(s.accuracy),
                      f"{pct(s.pass_all)} ({right} of {cases})", flaky or "none"))  # fmt: skip
    return lines


PAIRED_HEADER = (
    "candidate", "cases", "both right", "both wrong", "only reference", "only candidate",
    "difference", "95% CI", "p",
)  # fmt: skip


def paired_heading(comparisons: Sequence[Comparison]) -> str:
    return f"against {comparisons[0].reference} (reference), on the cases both were asked:"


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _adjusted(c: Comparison, p: float, bar: str = "") -> str:
    """A p-value as the verdict uses it (``bar``: what it is held against), saying when it
    is Holm-adjusted over the candidate's several comparisons."""
    said = p_text(p) + bar
    if c.family == 1:
        return said
    return f"{said}; Holm-adjusted over {c.family} comparisons of {c.candidate}"


def paired_table(comparisons: Sequence[Comparison]) -> tuple[list[Row], list[str]]:
    """Each model against the reference on the cases both were asked (header first), and
    what it shows: the verdict, and with a swap margin whether the candidate is within it."""
    rows: list[Row] = [PAIRED_HEADER]
    verdicts = []
    for c in comparisons:
        paired = c.paired
        if not paired.cases:
            verdicts.append(f"{c.candidate}: no case asked of both")
            continue
        low, high = paired.interval()
        rows.append((
            c.candidate, str(paired.cases), str(paired.both), str(paired.neither),
            str(paired.only_reference), str(paired.only_candidate),
            points(paired.difference), f"{points(low)} to {points(high)}",
            p_text(paired.p_value).removeprefix("p = "),
        ))  # fmt: skip
        verdicts.append(verdict_text(c))
        if c.margin is not None:
            verdicts.append(margin_text(c))
    return rows, verdicts


def verdict_text(c: Comparison) -> str:
    paired = c.paired
    if c.significant:
        direction = "WORSE" if c.worse else "BETTER"
        return (f"{c.candidate}: {direction} than {c.reference} "
                f"({_adjusted(c, c.adjusted_p, f' < {SIGNIFICANCE:g}')})")  # fmt: skip
    verdict = (
        f"{c.candidate}: no significant difference from {c.reference} "
        f"({_adjusted(c, c.adjusted_p)}); the data does not show it worse or better"
    )
    if c.too_few:
        differing = paired.only_reference + paired.only_candidate
        needed = paired.decisive(c.family)
        verdict += f": they differ on {differing} case(s), and " + (
            f"it takes at least {needed} to show anything"
            if needed <= paired.cases
            else f"no split of {paired.cases} cases can show anything"
        )
    return verdict


def margin_text(c: Comparison) -> str:
    """The swap question's answer: how much worse the candidate could be, against the margin."""
    assert c.margin is not None
    worst = -c.paired.worst() * 100
    could = (
        f"could be up to {worst:.1f} points worse than {c.reference}"
        if worst > 0.05
        else f"is shown no worse than {c.reference}"
    )
    said = f"{c.candidate}: {could} (one-sided 95% bound; margin {c.margin * 100:g})"
    if c.within_margin:
        return f"{said}: within the margin"
    held = f" ({_adjusted(c, c.adjusted_margin_p)})" if c.family > 1 else ""
    return f"{said}: not shown within the margin{held}"


BASELINE_HEADER = (
    "suite / model", "accuracy then", "now", "change", "p50 then", "now", "cost then", "now",
)  # fmt: skip


def baseline_rows(changes: Sequence[Change]) -> list[Row]:
    return [
        (f"{c.suite} / {c.model}", pct(c.before.accuracy), pct(c.now.accuracy),
         "-" if c.drop_points is None else points(-c.drop_points / 100),
         seconds(c.before.latency(0.5)), seconds(c.now.latency(0.5)),
         dollars(c.before.cost), dollars(c.now.cost))
        for c in changes
    ]  # fmt: skip


def change_lines(changes: Sequence[Change]) -> list[str]:
    """The cases that changed side since the baseline."""
    return [
        f"{change.suite} / {change.model} {what}: {', '.join(cases)}"
        for change in changes
        for what, cases in (("newly failing", change.newly_failing),
                            ("newly passing", change.newly_passing))
        if cases
    ]  # fmt: skip


def failure_text(failure: Failure) -> str:
    """Which suite and model failed, by how much, and the cases behind it."""
    if isinstance(failure, RegressionFailure):
        change = failure.change
        flips = (
            f"{len(change.newly_failing)} newly failing, {len(change.newly_passing)} newly passing"
        )
        return (
            f"{change.suite} / {change.model}: accuracy fell {change.drop_points:.1f} points "
            f"against the baseline ({pct(change.before.accuracy)} to "
            f"{pct(change.now.accuracy)}), more than --llm-max-regression={failure.limit:g} "
            f"and more than run-to-run noise ({flips}, McNemar {p_text(change.p_value)}; "
            f"flip rate {pct(change.flip_rate)}); newly failing: " + _listed(change.newly_failing)
        )
    if isinstance(failure, ComparisonFailure):
        c = failure.comparison
        if failure.reason == "worse":
            return (
                f"{c.suite} / {c.candidate}: WORSE than {c.reference} by "
                f"{-c.paired.difference * 100:.1f} points on {c.paired.cases} cases "
                f"({_adjusted(c, c.adjusted_p)}): {c.paired.only_reference} right only by "
                f"{c.reference}, {c.paired.only_candidate} only by {c.candidate}"
            )
        return f"{c.suite} / {margin_text(c)}"
    return _below_text(failure)


def _listed(cases: Sequence[str]) -> str:
    more = f" (+{len(cases) - LISTED} more)" if len(cases) > LISTED else ""
    return (", ".join(cases[:LISTED]) or "none") + more


def _below_text(f: GateFailure) -> str:
    what = (
        f"{f.measure} {f.value:.1%}"
        if f.bound is None
        else f"{CONFIDENCE[f.confidence]} {f.bound:.1%} ({f.measure} {f.value:.1%})"
    )
    return (
        f"{f.suite} / {f.model}: {what} is below the threshold {f.threshold:.1%} "
        f"by {(f.threshold - f.held) * 100:.1f} points; missed: {_listed(f.missed)}"
        + (f"; errored: {_listed(f.errored)}" if f.errored else "")
    )


LineKind = Literal["rule", "failed", "passed", "unset"]


@dataclass(frozen=True)
class GateLine:
    """One line of the gate's decision: its kind (which decides its colour) and its text
    as a report with a heading of its own shows it."""

    kind: LineKind
    text: str

    @property
    def line(self) -> str:
        """As the terminal and ``llmeval gate`` print it, where no heading says whose it is."""
        return PREFIX[self.kind] + self.text


PREFIX: dict[LineKind, str] = {
    "rule": "llmeval gate: ",
    "failed": "llmeval gate ",
    "passed": "llmeval gate ",
    "unset": "llmeval: ",
}


def gate_lines(decision: Decision) -> list[GateLine]:
    """The gate's decision in words."""
    gated = decision.gated
    confidence = decision.confidence
    rule = [] if confidence == "point" or not gated else [GateLine(
        "rule", f"--llm-confidence={confidence}: the {CONFIDENCE[confidence]} of each "
        "accuracy (or pass^N) is held against the threshold"
    )]  # fmt: skip
    if decision.failures:
        return rule + [GateLine("failed", f"FAILED: {failure_text(f)}") for f in decision.failures]
    if gated:
        passed = f"passed: {len(gated)} suite/model pair(s) at or above threshold"
        return [*rule, GateLine("passed", passed)]
    return [GateLine("unset", "no threshold set (--llm-threshold or a suite's `threshold:`)")]


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


def rate_limit_text(limits: RateLimits) -> str:
    """One model's 429s and the concurrency its requests reached."""
    count = limits.rate_limited
    return (f"{limits.model} answered 429 {count} time{'s' if count != 1 else ''}; "
            f"at most {limits.most_in_flight} in flight")  # fmt: skip
