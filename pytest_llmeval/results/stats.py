"""The statistics the verdicts rest on, each the one method behind both an interval and
the decision beside it:

- a share (accuracy): Wilson's score interval, with the case as the unit: asked several
  times, a case's answers are one cluster, and the interval is Wilson's at the effective
  number of cases (Kish's), so asking again for the same answers changes no bound;
- two models on the same cases: the score interval for a paired difference (Tango's),
  with its numerator moved half a case towards zero (a continuity correction, which keeps
  the size of its test at or under 5% where the plain score test runs slightly over), and
  the p-value of the same statistic, so the interval excludes 0 exactly when p < 0.05;
- a regression against a baseline: McNemar's exact one-sided test on the cases that
  newly fail against those that newly pass;
- several decisions for one candidate: Holm's step-down adjustment;
- latency: percentiles."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist

Z95 = 1.959963984540054
ONE_SIDED_95 = 1.6448536269514722
NORMAL = NormalDist()
# Half a case: the continuity correction of the paired score statistic.
CORRECTION = 0.5


def wilson(successes: float, trials: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default)."""
    if trials <= 0:
        raise ValueError("trials must be positive")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(max(0.0, p * (1 - p) / trials + z * z / (4 * trials * trials)))
    return max(0.0, centre - half / denominator), min(1.0, centre + half / denominator)


def clustered_wilson(
    case_means: Sequence[float], answers: int, z: float = Z95
) -> tuple[float, float]:
    """Wilson's interval for the mean of per-case shares right, each case one cluster.

    The effective number of cases is n·p(1-p)/s², s² the between-case variance of the
    shares (Kish's design effect): with every case answered the same way each time it is
    n, exactly the interval of asking once; cases right some of the times count for more,
    up to every answer counting alone."""
    n = len(case_means)
    if n == 0:
        raise ValueError("no cases")
    p = sum(case_means) / n
    spread = sum((m - p) ** 2 for m in case_means) / n
    bernoulli = p * (1 - p)  # the spread were every case all right or all wrong
    if spread > 0:
        effective = min(float(answers), n * bernoulli / spread)
    else:  # every case the same share: all right, all wrong, or each as often right
        effective = float(answers) if bernoulli > 0 else float(n)
    return wilson(p * effective, effective, z)


def paired_statistic(b: int, c: int, n: int, delta: float) -> float:
    """The score statistic for "candidate minus reference = ``delta``" on ``n`` paired
    cases, ``b`` right only by the candidate and ``c`` only by the reference: positive
    when the data shows the difference above ``delta``. Tango's, with the restricted
    maximum-likelihood estimate of the reference-only share, and half a case of
    continuity correction."""
    big_a = 2 * n
    big_b = -b - c + (2 * n - b + c) * delta
    big_c = -c * delta * (1 - delta)
    only_reference = (math.sqrt(max(0.0, big_b * big_b - 4 * big_a * big_c)) - big_b) / (2 * big_a)
    spread = n * (2 * only_reference + delta * (1 - delta))
    gap = b - c - n * delta
    gap = math.copysign(max(0.0, abs(gap) - CORRECTION), gap)
    if spread <= 0:
        return 0.0 if gap == 0 else math.copysign(math.inf, gap)
    return gap / math.sqrt(spread)


def paired_interval(b: int, c: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Every difference the statistic does not reject at ``z``: (lower, upper)."""
    estimate = (b - c) / n
    # The statistic falls as delta rises: each bound is where it crosses ±z.
    low = -1.0 if estimate <= -1 else _root(lambda d: paired_statistic(b, c, n, d) - z,
                                            -1.0, estimate)  # fmt: skip
    high = 1.0 if estimate >= 1 else _root(lambda d: paired_statistic(b, c, n, d) + z,
                                           estimate, 1.0)  # fmt: skip
    return low, high


def paired_p(b: int, c: int, n: int) -> float:
    """Two-sided p-value of "no difference", from the same statistic as the interval."""
    return min(1.0, 2 * NORMAL.cdf(-abs(paired_statistic(b, c, n, 0.0))))


def non_inferiority_p(b: int, c: int, n: int, margin: float) -> float:
    """One-sided p-value of "the candidate is ``margin`` (a share) or more worse": small
    when the data shows it less worse than that."""
    return NORMAL.cdf(-paired_statistic(b, c, n, -margin))


def mcnemar_one_sided(worse: int, better: int) -> float:
    """Exact one-sided McNemar: the chance of ``worse`` or more of the ``worse + better``
    cases that changed side going the bad way, were either way as likely."""
    n = worse + better
    if n == 0:
        return 1.0
    tail: float = sum(math.comb(n, i) for i in range(worse, n + 1)) / 2**n
    return tail


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def percentile(values: Sequence[float], quantile: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * quantile
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _root(f: Callable[[float], float], low: float, high: float) -> float:
    """Where a falling ``f`` crosses 0 between ``low`` and ``high`` (bisection)."""
    for _ in range(60):
        middle = (low + high) / 2
        if f(middle) > 0:
            low = middle
        else:
            high = middle
    return (low + high) / 2
