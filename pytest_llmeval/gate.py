"""The pass/fail decision: every model's accuracy against its suite's threshold, and
against a baseline run's when a regression limit is set."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pytest_llmeval.baseline import Change
from pytest_llmeval.results import Summary

LISTED = 10


@dataclass(frozen=True)
class GateFailure:
    suite: str
    model: str
    accuracy: float
    threshold: float
    missed: tuple[str, ...]

    def describe(self) -> str:
        shown = ", ".join(self.missed[:LISTED])
        more = f" (+{len(self.missed) - LISTED} more)" if len(self.missed) > LISTED else ""
        return (
            f"{self.suite} / {self.model}: accuracy {self.accuracy:.1%} is below the threshold "
            f"{self.threshold:.1%} by {(self.threshold - self.accuracy) * 100:.1f} points; "
            f"missed: {shown}{more}"
        )


def evaluate(summaries: Iterable[Summary]) -> list[GateFailure]:
    """The (suite, model) pairs whose accuracy falls below their threshold."""
    failures = []
    for summary in summaries:
        accuracy, threshold = summary.accuracy, summary.threshold
        # The epsilon keeps 27/30 >= 0.9 true despite binary floating point.
        if accuracy is None or threshold is None or accuracy + 1e-9 >= threshold:
            continue
        missed = tuple(r.case for r in summary.missed())
        failures.append(GateFailure(summary.suite, summary.model, accuracy, threshold, missed))
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
