"""Two models on the same cases: the paired table, the difference with its interval and
p-value from one method (``stats.paired_*``), the swap question (is the candidate at most
a margin worse?), and Holm's adjustment over a candidate's several comparisons."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from pytest_llmeval.results.records import Record, Summary
from pytest_llmeval.results.stats import (
    ONE_SIDED_95,
    Z95,
    holm,
    non_inferiority_p,
    paired_interval,
    paired_p,
)

SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Paired:
    """The cases both models were asked, by who got them right (an error is not right)."""

    both: int
    neither: int
    only_reference: int
    only_candidate: int

    @property
    def cases(self) -> int:
        return self.both + self.neither + self.only_reference + self.only_candidate

    @property
    def reference_accuracy(self) -> float:
        return (self.both + self.only_reference) / self.cases

    @property
    def candidate_accuracy(self) -> float:
        return (self.both + self.only_candidate) / self.cases

    @property
    def difference(self) -> float:
        """Candidate minus reference."""
        return self.candidate_accuracy - self.reference_accuracy

    @property
    def p_value(self) -> float:
        """Two-sided, of no difference: below 0.05 exactly when ``interval()`` excludes 0."""
        return paired_p(self.only_candidate, self.only_reference, self.cases)

    def interval(self, z: float = Z95) -> tuple[float, float]:
        """Candidate minus reference: the paired score interval (see ``stats``)."""
        return paired_interval(self.only_candidate, self.only_reference, self.cases, z)

    def worst(self) -> float:
        """The one-sided 95% lower bound of the difference: how much worse the candidate
        could be."""
        return self.interval(ONE_SIDED_95)[0]

    def decisive(self, family: int = 1) -> int:
        """How many cases must differ, all one way, before any split of them can show a
        difference at 5% on this many cases; with ``family`` comparisons Holm-adjusted,
        at 5% / family (what the smallest of them is held to)."""
        level = SIGNIFICANCE / family
        return next(k for k in range(1, self.cases + 2)
                    if k > self.cases or paired_p(k, 0, self.cases) < level)  # fmt: skip


def pair(reference: Iterable[Record], candidate: Iterable[Record]) -> Paired:
    """The cases both were asked; an errored answer is a loss for the side that errored
    (an error is no escape from a comparison). With --llm-repeat, the first asking of
    each: the pairs must be independent, and repeats of one case are not."""

    def verdicts(records: Iterable[Record]) -> dict[str, bool]:
        return {r.case: r.outcome == "pass" for r in records if r.repeat == 0}

    ref, cand = verdicts(reference), verdicts(candidate)
    shared = [(ref[case], cand[case]) for case in ref if case in cand]
    return Paired(
        both=sum(r and c for r, c in shared),
        neither=sum(not r and not c for r, c in shared),
        only_reference=sum(r and not c for r, c in shared),
        only_candidate=sum(c and not r for r, c in shared),
    )


@dataclass(frozen=True)
class Comparison:
    """One model against the reference on one suite's cases, as decided with the other
    comparisons of the same candidate (its family: one per suite)."""

    suite: str
    reference: str
    candidate: str
    paired: Paired
    margin: float | None = None  # --llm-swap-margin, as a share
    family: int = 1  # comparisons of this candidate in the run
    adjusted_p: float = 1.0  # the p-value of no difference, Holm-adjusted over the family
    adjusted_margin_p: float = 1.0  # that of "worse by the margin or more", likewise

    @property
    def significant(self) -> bool:
        return bool(self.paired.cases) and self.adjusted_p < SIGNIFICANCE

    @property
    def worse(self) -> bool:
        return self.significant and self.paired.difference < 0

    @property
    def better(self) -> bool:
        return self.significant and self.paired.difference > 0

    @property
    def too_few(self) -> bool:
        """So few cases differ that even all of them going one way would show nothing."""
        differing = self.paired.only_reference + self.paired.only_candidate
        return differing < self.paired.decisive(self.family)

    @property
    def within_margin(self) -> bool | None:
        """The swap question: is the candidate shown at most ``margin`` worse? None
        without a margin."""
        if self.margin is None:
            return None
        return bool(self.paired.cases) and self.adjusted_margin_p < SIGNIFICANCE


def compare_with(
    reference: Summary, candidates: Iterable[Summary], margin: float | None = None
) -> list[Comparison]:
    """Each candidate against the reference on one suite (not yet adjusted: ``adjust``)."""
    return [
        Comparison(c.suite, reference.model, c.model, pair(reference.records, c.records), margin)
        for c in candidates
    ]


def adjust(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """Holm's adjustment of every candidate's comparisons (one per suite), for the verdict
    and for the margin alike: a candidate's chance of any false verdict stays at 5%."""
    out = list(comparisons)
    for candidate in dict.fromkeys(c.candidate for c in comparisons):
        places = [i for i, c in enumerate(comparisons) if c.candidate == candidate]
        family = [comparisons[i] for i in places]
        raw = [c.paired.p_value if c.paired.cases else 1.0 for c in family]
        margins = [_margin_p(c) for c in family]
        for i, c, p, q in zip(places, family, holm(raw), holm(margins), strict=True):
            out[i] = replace(c, family=len(family), adjusted_p=p, adjusted_margin_p=q)
    return out


def _margin_p(c: Comparison) -> float:
    if c.margin is None or not c.paired.cases:
        return 1.0
    paired = c.paired
    return non_inferiority_p(paired.only_candidate, paired.only_reference, paired.cases, c.margin)
