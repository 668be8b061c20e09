"""The pass/fail decision: every model's accuracy against its suite's threshold, and
against a baseline run's when a regression limit is set."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pytest_llmeval.results.baseline import Change
from pytest_llmeval.results.records import Summary, pct
from pytest_llmeval.results.stats import wilson

LISTED = 10
# What is held against the threshold: the accuracy itself, or a bound of its 95% Wilson
# interval: `lenient` fails only when even the upper bound is below (the data shows the
# model short of it), `strict` unless the lower bound reaches it (the data shows it there).
CONFIDENCE = {"point": "", "lenient": "upper 95% bound", "strict": "lower 95% bound"}


@dataclass(frozen=True)
class GateFailure:
    suite: str
    model: str
    value: float  # the measure: accuracy, or pass^N
    threshold: float
    missed: tuple[str, ...]
    measure: str = "accuracy"
    confidence: str = "point"
    bound: float | None = None  # the bound held against the threshold (lenient, strict)

    def describe(self) -> str:
        shown = ", ".join(self.missed[:LISTED])
        more = f" (+{len(self.missed) - LISTED} more)" if len(self.missed) > LISTED else ""
        held = self.value if self.bound is None else self.bound
        what = (
            f"{self.measure} {self.value:.1%}"
            if self.bound is None
            else f"{CONFIDENCE[self.confidence]} {self.bound:.1%} ({self.measure} {self.value:.1%})"
        )
        return (
            f"{self.suite} / {self.model}: {what} is below the threshold {self.threshold:.1%} "
            f"by {(self.threshold - held) * 100:.1f} points; missed: {shown or 'none'}{more}"
        )


def evaluate(
    summaries: Iterable[Summary], confidence: str = "point", repeat_gate: str = "mean"
) -> list[GateFailure]:
    """The (suite, model) pairs whose accuracy (or pass^N, or a bound of either) falls
    below their threshold."""
    failures = []
    for summary in summaries:
        measure = "accuracy"
        right, asked = summary.passes, summary.answered
        if repeat_gate == "all" and summary.repeats > 1:
            measure = f"pass^{summary.repeats}"
            right, asked = summary.always_right
        if summary.threshold is None or not asked:
            continue
        value = right / asked
        low, high = wilson(right, asked)
        bound = {"point": None, "lenient": high, "strict": low}[confidence]
        # The epsilon keeps 27/30 >= 0.9 true despite binary floating point.
        if (value if bound is None else bound) + 1e-9 >= summary.threshold:
            continue
        missed = tuple(dict.fromkeys(r.case for r in summary.missed()))
        failures.append(GateFailure(summary.suite, summary.model, value, summary.threshold,
                                    missed, measure, confidence, bound))  # fmt: skip
    return failures


@dataclass(frozen=True)
class RegressionFailure:
    change: Change
    limit: float  # points

    @property
    def suite(self) -> str:
        return self.change.suite

    @property
    def model(self) -> str:
        return self.change.model

    def describe(self) -> str:
        change = self.change
        failing = ", ".join(change.newly_failing[:LISTED])
        more = len(change.newly_failing) - LISTED
        return (
            f"{change.suite} / {change.model}: accuracy fell {change.drop_points:.1f} points "
            f"against the baseline ({pct(change.before.accuracy)} to "
            f"{pct(change.now.accuracy)}), more than --llm-max-regression={self.limit:g}; "
            f"newly failing: {failing or 'none'}" + (f" (+{more} more)" if more > 0 else "")
        )


Failure = GateFailure | RegressionFailure


def regressions(changes: Iterable[Change], limit: float | None) -> list[RegressionFailure]:
    if limit is None:
        return []
    return [
        RegressionFailure(change, limit)
        for change in changes
        if change.drop_points is not None and change.drop_points > limit + 1e-9
    ]
