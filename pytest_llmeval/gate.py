"""The pass/fail decision: every model's accuracy against its suite's threshold, and
against a baseline run's when a regression limit is set."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pytest_llmeval.baseline import Change
from pytest_llmeval.results import Summary

LISTED = 10
# What is held against the threshold: the accuracy itself, or a bound of its 95% Wilson
# interval: `lenient` fails only when even the upper bound is below (the data shows the
# model short of it), `strict` unless the lower bound reaches it (the data shows it there).
CONFIDENCE = {"point": "accuracy", "lenient": "upper 95% bound", "strict": "lower 95% bound"}


@dataclass(frozen=True)
class GateFailure:
    suite: str
    model: str
    accuracy: float
    threshold: float
    missed: tuple[str, ...]
    confidence: str = "point"
    measured: float | None = None  # the bound held against the threshold, if not accuracy

    def describe(self) -> str:
        shown = ", ".join(self.missed[:LISTED])
        more = f" (+{len(self.missed) - LISTED} more)" if len(self.missed) > LISTED else ""
        value = self.accuracy if self.measured is None else self.measured
        held = "" if self.measured is None else f" (accuracy {self.accuracy:.1%})"
        return (
            f"{self.suite} / {self.model}: {CONFIDENCE[self.confidence]} {value:.1%}{held} is "
            f"below the threshold {self.threshold:.1%} by {(self.threshold - value) * 100:.1f} "
            f"points; missed: {shown or 'none'}{more}"
        )


def evaluate(summaries: Iterable[Summary], confidence: str = "point") -> list[GateFailure]:
    """The (suite, model) pairs whose accuracy (or its bound) falls below their threshold."""
    failures = []
    for summary in summaries:
        accuracy, threshold, interval = summary.accuracy, summary.threshold, summary.interval
        if accuracy is None or threshold is None or interval is None:
            continue
        measured = {"point": None, "lenient": interval[1], "strict": interval[0]}[confidence]
        # The epsilon keeps 27/30 >= 0.9 true despite binary floating point.
        if (accuracy if measured is None else measured) + 1e-9 >= threshold:
            continue
        missed = tuple(r.case for r in summary.missed())
        failures.append(GateFailure(summary.suite, summary.model, accuracy, threshold, missed,
                                    confidence, measured))  # fmt: skip
    return failures


@dataclass(frozen=True)
class RegressionFailure:
    change: Change
    limit: float  # points

    def describe(self) -> str:
        change = self.change
        failing = ", ".join(change.newly_failing[:LISTED])
        more = len(change.newly_failing) - LISTED
        return (
            f"{change.suite} / {change.model}: accuracy fell {change.drop_points:.1f} points "
            f"against the baseline ({_pct(change.before.accuracy)} to "
            f"{_pct(change.now.accuracy)}), more than --llm-max-regression={self.limit:g}; "
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


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
