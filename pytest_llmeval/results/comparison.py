"""Two models on the same cases: the paired table, the accuracy difference with its
confidence interval, and McNemar's exact test, so "the candidate is worse" is said only
when the data supports it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from pytest_llmeval.results.records import Record, Summary
from pytest_llmeval.results.stats import Z95, mcnemar_exact, wilson


@dataclass(frozen=True)
class Paired:
    """Cases both models answered, by who got them right."""

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
        return mcnemar_exact(self.only_reference, self.only_candidate)

    def interval(self, z: float = Z95) -> tuple[float, float]:
        """Newcombe's score interval for a paired difference (his method 10), candidate
        minus reference: it stays inside [-1, 1] and behaves at 0 and at tiny samples,
        where the Wald interval does not."""
        n = self.cases
        a, b, c, d = self.both, self.only_candidate, self.only_reference, self.neither
        p1, p2 = (a + b) / n, (a + c) / n  # candidate right, reference right
        l1, u1 = wilson(a + b, n, z)
        l2, u2 = wilson(a + c, n, z)
        margins = (a + b) * (c + d) * (a + c) * (b + d)
        phi = (a * d - b * c) / math.sqrt(margins) if margins else 0.0
        theta = p1 - p2
        delta = math.sqrt(
            max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
        )
        epsilon = math.sqrt(
            max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
        )
        return max(-1.0, theta - delta), min(1.0, theta + epsilon)


def pair(reference: Iterable[Record], candidate: Iterable[Record]) -> Paired:
    """The cases both answered (an error has no verdict to pair). With --llm-repeat, the
    first asking of each: McNemar's pairs must be independent, and repeats of one case
    are not."""

    def verdicts(records: Iterable[Record]) -> dict[str, bool]:
        return {r.case: r.outcome == "pass" for r in records
                if r.outcome != "error" and r.repeat == 0}  # fmt: skip

    ref, cand = verdicts(reference), verdicts(candidate)
    shared = [(ref[case], cand[case]) for case in ref if case in cand]
    return Paired(
        both=sum(r and c for r, c in shared),
        neither=sum(not r and not c for r, c in shared),
        only_reference=sum(r and not c for r, c in shared),
        only_candidate=sum(c and not r for r, c in shared),
    )


SIGNIFICANCE = 0.05
# Cases where two models differ that McNemar's exact test needs before any split of them
# can be significant at 5%: 2 x (1/2)^6 = 0.031, where 5 give 0.0625.
DECISIVE = 6


@dataclass(frozen=True)
class Comparison:
    """One model against the reference on one suite's cases."""

    suite: str
    reference: str
    candidate: str
    paired: Paired

    @property
    def significant(self) -> bool:
        return bool(self.paired.cases) and self.paired.p_value < SIGNIFICANCE

    @property
    def worse(self) -> bool:
        return self.significant and self.paired.difference < 0

    @property
    def too_few(self) -> bool:
        """So few cases differ that even all of them going one way would show nothing."""
        differing = self.paired.only_reference + self.paired.only_candidate
        return mcnemar_exact(differing, 0) >= SIGNIFICANCE


def compare_with(reference: Summary, candidates: Iterable[Summary]) -> list[Comparison]:
    return [
        Comparison(c.suite, reference.model, c.model, pair(reference.records, c.records))
        for c in candidates
    ]
