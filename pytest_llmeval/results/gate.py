"""The pass/fail decision: every model's accuracy against its suite's threshold, against a
baseline run's when a regression limit is set, and each model against the reference.

``decide`` makes the one ``Decision`` that the run, ``llmeval gate``, ``llmeval report``
and every report take: states and figures, never words to be parsed back."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pytest_llmeval.results.baseline import Change, compare
from pytest_llmeval.results.comparison import SIGNIFICANCE, Comparison, adjust, compare_with
from pytest_llmeval.results.records import Record, Summary, summarize
from pytest_llmeval.results.stats import wilson

# What is held against the threshold: the accuracy itself, or a bound of its 95% Wilson
# interval: `lenient` fails only when even the upper bound is below (the data shows the
# model short of it), `strict` unless the lower bound reaches it (the data shows it there).
CONFIDENCE = {"point": "", "lenient": "upper 95% bound", "strict": "lower 95% bound"}

GateState = Literal["FAILED", "passed", "not set"]
PairState = Literal["FAILED", "passed", "not gated"]


@dataclass(frozen=True)
class GateFailure:
    suite: str
    model: str
    value: float  # the measure: accuracy, or pass^N
    threshold: float
    missed: tuple[str, ...]
    errored: tuple[str, ...] = ()
    measure: str = "accuracy"
    confidence: str = "point"
    bound: float | None = None  # the bound held against the threshold (lenient, strict)

    @property
    def held(self) -> float:
        """What was held against the threshold: the measure or its bound."""
        return self.value if self.bound is None else self.bound


def threshold_failures(
    summaries: Iterable[Summary], confidence: str = "point", repeat_gate: str = "mean"
) -> list[GateFailure]:
    """The (suite, model) pairs whose accuracy (or pass^N, or a bound of either) falls
    below their threshold."""
    failures = []
    for summary in summaries:
        if summary.threshold is None or not summary.asked:
            continue
        measure = "accuracy"
        value, interval = summary.accuracy or 0.0, summary.interval
        if repeat_gate == "all" and summary.repeats > 1:
            measure = f"pass^{summary.repeats}"
            right, cases = summary.always_right
            value, interval = right / cases, wilson(right, cases)
        assert interval is not None  # something was asked
        low, high = interval
        bound = {"point": None, "lenient": high, "strict": low}[confidence]
        # The epsilon keeps 27/30 >= 0.9 true despite binary floating point.
        if (value if bound is None else bound) + 1e-9 >= summary.threshold:
            continue
        missed = tuple(dict.fromkeys(r.case for r in summary.missed()))
        errored = tuple(dict.fromkeys(r.case for r in summary.records if r.outcome == "error"))
        failures.append(GateFailure(summary.suite, summary.model, value, summary.threshold,
                                    missed, errored, measure, confidence, bound))  # fmt: skip
    return failures


@dataclass(frozen=True)
class RegressionFailure:
    """A drop beyond the limit that McNemar's exact test says is real."""

    change: Change
    limit: float  # points

    @property
    def suite(self) -> str:
        return self.change.suite

    @property
    def model(self) -> str:
        return self.change.model


@dataclass(frozen=True)
class ComparisonFailure:
    """A candidate shown worse than the reference, or not shown within the swap margin."""

    comparison: Comparison
    reason: Literal["worse", "margin"]

    @property
    def suite(self) -> str:
        return self.comparison.suite

    @property
    def model(self) -> str:
        return self.comparison.candidate


Failure = GateFailure | RegressionFailure | ComparisonFailure


def regressions(changes: Iterable[Change], limit: float | None) -> list[RegressionFailure]:
    """Drops of more than ``limit`` points that are more than run-to-run noise: the exact
    one-sided McNemar test on newly failing against newly passing cases, at 5%."""
    if limit is None:
        return []
    return [
        RegressionFailure(change, limit)
        for change in changes
        if change.drop_points is not None
        and change.drop_points > limit + 1e-9
        and change.p_value < SIGNIFICANCE
    ]


def comparison_failures(comparisons: Iterable[Comparison]) -> list[ComparisonFailure]:
    failures = []
    for c in comparisons:
        if c.worse:
            failures.append(ComparisonFailure(c, "worse"))
        elif c.within_margin is False:
            failures.append(ComparisonFailure(c, "margin"))
    return failures


def needed(threshold: float, cases: int, confidence: str = "point") -> int | None:
    """The fewest of ``cases`` (each asked once) that must pass for the rule to hold the
    threshold; None when even all of them would not."""
    for right in range(cases + 1):
        low, high = wilson(right, cases)
        held = {"point": right / cases, "lenient": high, "strict": low}[confidence]
        if held + 1e-9 >= threshold:
            return right
    return None


def _gated(summary: Summary) -> bool:
    return summary.threshold is not None and summary.accuracy is not None


@dataclass(frozen=True)
class Decision:
    """What the gate decided, with everything it was decided from."""

    summaries: tuple[Summary, ...]
    failures: tuple[Failure, ...]
    changes: tuple[Change, ...] = ()  # against the baseline, when there is one
    comparisons: tuple[Comparison, ...] = ()  # each model against the reference, per suite
    confidence: str = "point"

    @property
    def gated(self) -> tuple[Summary, ...]:
        """The suite/model pairs held against a threshold."""
        return tuple(s for s in self.summaries if _gated(s))

    @property
    def state(self) -> GateState:
        return "FAILED" if self.failures else "passed" if self.gated else "not set"

    def failed(self, summary: Summary) -> bool:
        return any((f.suite, f.model) == (summary.suite, summary.model) for f in self.failures)

    def state_of(self, summary: Summary) -> PairState:
        if self.failed(summary):
            return "FAILED"
        return "passed" if _gated(summary) else "not gated"

    @property
    def below_threshold(self) -> tuple[GateFailure, ...]:
        return tuple(f for f in self.failures if isinstance(f, GateFailure))

    @property
    def regressed(self) -> tuple[RegressionFailure, ...]:
        return tuple(f for f in self.failures if isinstance(f, RegressionFailure))

    @property
    def against_reference(self) -> tuple[ComparisonFailure, ...]:
        return tuple(f for f in self.failures if isinstance(f, ComparisonFailure))

    @property
    def records(self) -> list[Record]:
        return [r for s in self.summaries for r in s.records]

    def suites(self) -> list[tuple[str, list[Summary]]]:
        """Each suite with its models' summaries, in the order the run met them."""
        names = dict.fromkeys(s.suite for s in self.summaries)
        return [(name, [s for s in self.summaries if s.suite == name]) for name in names]

    def threshold_need(self, summary: Summary) -> int | None:
        """How many of its cases must pass, by this decision's confidence rule."""
        if summary.threshold is None or not summary.cases:
            return None
        return needed(summary.threshold, summary.cases, self.confidence)

    def comparisons_in(self, suite: str) -> list[Comparison]:
        return [c for c in self.comparisons if c.suite == suite]


def decide(
    records: Sequence[Record],
    model_order: Sequence[str] = (),
    *,
    confidence: str = "point",
    repeat_gate: str = "mean",
    baseline: Sequence[Record] | None = None,
    max_regression: float | None = None,
    reference: str | None = None,
    swap_margin: float | None = None,
) -> Decision:
    """``swap_margin`` in points: with a reference, each candidate must be shown at most
    that much worse than it (one-sided 95%, Holm-adjusted over its suites)."""
    summaries = summarize(records, model_order)
    changes = compare(baseline, records) if baseline is not None else []
    comparisons: list[Comparison] = []
    margin = None if swap_margin is None else swap_margin / 100
    if reference is not None:
        for suite in dict.fromkeys(s.suite for s in summaries):
            rows = [s for s in summaries if s.suite == suite]
            against = next((s for s in rows if s.model == reference), None)
            if against is not None:
                others = [s for s in rows if s is not against]
                comparisons += compare_with(against, others, margin)
    comparisons = adjust(comparisons)
    failures: list[Failure] = [
        *threshold_failures(summaries, confidence, repeat_gate),
        *regressions(changes, max_regression),
        *comparison_failures(comparisons),
    ]
    return Decision(tuple(summaries), tuple(failures), tuple(changes), tuple(comparisons),
                    confidence)  # fmt: skip
