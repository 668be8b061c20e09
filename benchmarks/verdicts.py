"""The statistics behind the verdicts, measured through the plugin's own decision code.

Each simulated run is a set of hand-made records (``results.records.Record``) drawn from
a known truth and handed to ``results.gate.decide``, which makes the one Decision that a
run and ``llmeval gate`` make; a figure is the share of simulated runs whose decision did
something. No pytest, no server: standard library only, every setting seeded.

Targets (a "discordant" case is one that exactly one of the two models gets right; a
difference is candidate minus reference, in points):

1. size: at no true difference, a comparison is WORSE or BETTER (``significant``) in at
   most 5% of runs: 60, 142 and 500 cases, 5% and 15% discordant, both models at 70%;
2. power: how often a candidate truly 2, 5 or 10 points worse is WORSE (a table, no bound);
3. coverage: the paired 95% interval (``Paired.interval``) holds the true difference in
   at least 94% of runs, in every setting: 60, 142 and 500 cases, 1%, 5% and 15%
   discordant, the reference at 55% or 70%, true difference 0, -2 or -5 where the
   discordance allows it;
4. coverage: the accuracy's 95% interval (``Summary.interval``, each case one cluster of
   its 3 or 5 askings) holds the true accuracy in at least 94% of runs, 60 and 142 cases
   drawn afresh in each run from a population of cases with real spread between them;
5. the swap margin: a candidate truly 5 points worse is accepted (``within_margin``) with
   ``swap_margin=5`` in at most 5.5% of runs: 142 and 500 cases, 15% discordant;
6. the regression gate: one model run twice, each case changing side between the runs
   with chance 4%, 10% or 21% (as often either way, so no true change): a regression
   (``Decision.regressed``) at ``max_regression`` 2 or 5 in at most 5% of runs, 60 and
   142 cases;
7. multiplicity: 3 candidates each as good as the reference on each of 3 suites: a
   candidate is WORSE or BETTER on any of its suites in at most 5% of runs (Holm over its
   suites); how often any of the 9 comparisons is, is printed beside it.

    python3 benchmarks/verdicts.py          # 408,000 runs: about 3.5 CPU-minutes, over the cores
    python3 benchmarks/verdicts.py --quick  # a tenth of them: about 20 CPU-seconds

``--quick`` judges every bound too, each loosened by 3 Monte Carlo standard errors of
its smaller count (at the bound), and by nothing else.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pytest_llmeval.results.gate import decide  # noqa: E402
from pytest_llmeval.results.records import Record, RecordOutcome  # noqa: E402

QUICK_SHARE = 10  # --quick runs a tenth of each count
QUICK_SLACK = 3.0  # ... and loosens each bound by this many standard errors at that count

REFERENCE, CANDIDATE = "reference", "candidate"
CANDIDATES = ("candidate-1", "candidate-2", "candidate-3")
SUITES = ("suite-1", "suite-2", "suite-3")

SIZE_LIMIT = 0.05  # target 1
COVERAGE_LIMIT = 0.94  # targets 3 and 4
MARGIN_LIMIT = 0.055  # target 5
REGRESSION_LIMIT = 0.05  # target 6
FAMILY_LIMIT = 0.05  # target 7

CASES = (60, 142, 500)
SIZE_DISCORDANCE = (0.05, 0.15)
COVERAGE_DISCORDANCE = (0.01, 0.05, 0.15)
POWER_DELTAS = (0.0, -0.02, -0.05, -0.10)
COVERAGE_DELTAS = (0.0, -0.02, -0.05)
ACCURACY = 0.70  # targets 1, 2, 5, 6, 7; target 3 also at 55%
COVERAGE_ACCURACIES = (0.70, 0.55)
REPEATS = (3, 5)
CLUSTER_CASES = (60, 142)
MARGIN = 5.0  # points
MARGIN_CASES = (142, 500)
MARGIN_DISCORDANCE = 0.15
FLIPS = (0.04, 0.10, 0.21)
REGRESSION_CASES = (60, 142)
REGRESSION_LIMITS = (2.0, 5.0)  # points
FAMILY_SETTINGS = ((142, 0.15), (500, 0.15))

# The full counts: each chosen so that its Monte Carlo standard error is a small part of
# the gap between the figure and its bound (the figures are printed with their errors).
SIZE_SIMS = 10_000  # target 1's settings (their Δ = 0 runs also count for 2 and 3)
PAIRED_SIMS = 3_000  # every other paired setting (targets 2 and 3)
CLUSTER_SIMS = {60: 30_000, 142: 15_000}  # target 4: the figures sit near 94.5-95%
MARGIN_SIMS = 10_000
REGRESSION_SIMS = 4_000
FAMILY_SIMS = {142: 4_000, 500: 3_000}

# Target 4's populations of cases: each case's own chance of being right.
POPULATIONS = {
    # 45% of cases always right, 15% always wrong, 40% flaky with a chance ~ Beta(2, 2).
    "mixture": "45% always right, 15% always wrong, 40% flaky ~ Beta(2,2)",
    # Mean 70%; a third of an answer's variance lies between cases (1 / (a + b + 1)).
    "beta": "each case's chance ~ Beta(1.4, 0.6)",
}
TRUE_ACCURACY = {"mixture": 0.45 + 0.40 * 0.5, "beta": 1.4 / (1.4 + 0.6)}


# -- records ------------------------------------------------------------------------------

_MADE: dict[tuple[str, str, int], list[tuple[Record, Record]]] = {}


def answers(suite: str, model: str, cases: int, repeat: int = 0) -> list[tuple[Record, Record]]:
    """Per case, its (missed, passed) record: made once, as a Record takes some 10 µs to
    build and ``decide`` reads only what a record says, not which object it is."""
    made = _MADE.setdefault((suite, model, repeat), [])
    for i in range(len(made), cases):
        case = f"case-{i:04d}"

        def record(outcome: RecordOutcome, case: str = case, line: int = 3 + 4 * i) -> Record:
            return Record(suite=suite, case=case, model=model, file=f"{suite}.llmeval.yaml",
                          nodeid=f"{suite}.llmeval.yaml::{case}[{model}]", line=line,
                          outcome=outcome, threshold=None, repeat=repeat)  # fmt: skip

        made.append((record("miss"), record("pass")))
    return made


def paired_truth(accuracy: float, discordance: float, delta: float) -> tuple[float, float, float]:
    """Cumulative chances of (both right, reference only, candidate only); neither is the
    rest. The reference is right with chance ``accuracy``, the candidate ``delta`` more."""
    only_reference = (discordance - delta) / 2
    only_candidate = (discordance + delta) / 2
    both = accuracy - only_reference
    neither = 1 - both - only_reference - only_candidate
    if min(only_reference, only_candidate, both, neither) < -1e-12:
        raise ValueError(f"no such truth: {accuracy=}, {discordance=}, {delta=}")
    return both, both + only_reference, both + only_reference + only_candidate


def paired_records(
    rng: random.Random,
    cases: int,
    truth: tuple[float, float, float],
    suite: str = "suite",
    candidate: str = CANDIDATE,
) -> list[Record]:
    """One run of the reference and a candidate on ``cases`` cases."""
    both, reference_only, candidate_only = truth
    reference, other = answers(suite, REFERENCE, cases), answers(suite, candidate, cases)
    records = []
    for i in range(cases):
        u = rng.random()
        records.append(reference[i][u < reference_only])
        records.append(other[i][u < both or reference_only <= u < candidate_only])
    return records


# -- the simulations ----------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One setting, simulated ``sims`` times from its own seed (its other fields)."""

    kind: str
    sims: int
    cases: int
    accuracy: float = ACCURACY
    discordance: float = 0.0
    delta: float = 0.0  # candidate minus reference, a share
    repeats: int = 1
    population: str = ""
    flip: float = 0.0

    @property
    def seed(self) -> str:
        return repr(replace(self, sims=0))


Tally = dict[str, int]


def run(job: Job) -> Tally:
    rng = random.Random(job.seed)
    tally: Tally = {"sims": job.sims}
    simulate = SIMULATIONS[job.kind]
    for _ in range(job.sims):
        for name, value in simulate(job, rng).items():
            tally[name] = tally.get(name, 0) + value
    return tally


def simulate_paired(job: Job, rng: random.Random) -> Tally:
    """Targets 1-3: a reference and a candidate on one suite."""
    truth = paired_truth(job.accuracy, job.discordance, job.delta)
    decision = decide(paired_records(rng, job.cases, truth), (REFERENCE, CANDIDATE),
                      reference=REFERENCE)  # fmt: skip
    (comparison,) = decision.comparisons
    assert comparison.paired.cases == job.cases
    low, high = comparison.paired.interval()
    return {
        "significant": comparison.significant,
        "worse": comparison.worse,
        "covered": low <= job.delta <= high,
    }


def simulate_margin(job: Job, rng: random.Random) -> Tally:
    """Target 5: the candidate truly ``delta`` worse, held to the margin."""
    truth = paired_truth(job.accuracy, job.discordance, job.delta)
    decision = decide(paired_records(rng, job.cases, truth), (REFERENCE, CANDIDATE),
                      reference=REFERENCE, swap_margin=MARGIN)  # fmt: skip
    (comparison,) = decision.comparisons
    assert comparison.margin is not None
    assert abs(comparison.margin - MARGIN / 100) < 1e-12
    return {"accepted": comparison.within_margin is True}


def chance_right(population: str, rng: random.Random) -> float:
    if population == "mixture":
        u = rng.random()
        return 1.0 if u < 0.45 else 0.0 if u < 0.60 else rng.betavariate(2, 2)
    return rng.betavariate(1.4, 0.6)


def simulate_clustered(job: Job, rng: random.Random) -> Tally:
    """Target 4: one model, each case asked ``repeats`` times."""
    askings = [answers("suite", "model", job.cases, r) for r in range(job.repeats)]
    records = []
    for i in range(job.cases):
        p = chance_right(job.population, rng)
        records += [asking[i][rng.random() < p] for asking in askings]
    (summary,) = decide(records, ("model",)).summaries
    assert summary.cases == job.cases
    assert summary.asked == job.cases * job.repeats
    assert summary.interval is not None
    low, high = summary.interval
    truth = TRUE_ACCURACY[job.population]
    return {"covered": low <= truth <= high, "low": truth < low}


def simulate_regression(job: Job, rng: random.Random) -> Tally:
    """Target 6: the same model twice; (right, right) with chance accuracy - flip/2, each
    change of side with chance flip/2."""
    made = answers("suite", "model", job.cases)
    kept, lost, regained = (job.accuracy - job.flip / 2, job.accuracy,
                            job.accuracy + job.flip / 2)  # fmt: skip
    before, after = [], []
    for i in range(job.cases):
        u = rng.random()
        before.append(made[i][u < lost])
        after.append(made[i][u < kept or lost <= u < regained])
    tally: Tally = {}
    for limit in REGRESSION_LIMITS:
        decision = decide(after, ("model",), baseline=before, max_regression=limit)
        assert decision.changes[0].shared == job.cases
        tally[f"alarm {limit:g}"] = bool(decision.regressed)
    return tally


def simulate_family(job: Job, rng: random.Random) -> Tally:
    """Target 7: three candidates, each as good as the reference, on three suites; each
    candidate's answers drawn apart given the reference's."""
    share = job.discordance / 2
    wrong_if_right, right_if_wrong = share / job.accuracy, share / (1 - job.accuracy)
    records: list[Record] = []
    for suite in SUITES:
        reference = answers(suite, REFERENCE, job.cases)
        others = [answers(suite, c, job.cases) for c in CANDIDATES]
        for i in range(job.cases):
            right = rng.random() < job.accuracy
            records.append(reference[i][right])
            for other in others:
                flipped = rng.random() < (wrong_if_right if right else right_if_wrong)
                records.append(other[i][right != flipped])
    decision = decide(records, (REFERENCE, *CANDIDATES), reference=REFERENCE)
    assert len(decision.comparisons) == 9
    assert all(c.family == 3 for c in decision.comparisons)
    flagged = sum(
        any(c.significant for c in decision.comparisons if c.candidate == candidate)
        for candidate in CANDIDATES
    )
    return {"flagged": flagged, "flagged²": flagged * flagged, "any": flagged > 0}


SIMULATIONS: dict[str, Callable[[Job, random.Random], Tally]] = {
    "paired": simulate_paired,
    "margin": simulate_margin,
    "clustered": simulate_clustered,
    "regression": simulate_regression,
    "family": simulate_family,
}


def plan(scale: int) -> list[Job]:
    """Every setting, its count divided by ``scale``."""

    def count(full: int) -> int:
        return max(1, full // scale)

    jobs = []
    for cases in CASES:
        for accuracy in COVERAGE_ACCURACIES:
            for discordance in COVERAGE_DISCORDANCE:
                for delta in POWER_DELTAS:
                    power = accuracy == ACCURACY and discordance in SIZE_DISCORDANCE
                    coverage = delta in COVERAGE_DELTAS
                    if abs(delta) > discordance + 1e-12 or not (power or coverage):
                        continue
                    sims = SIZE_SIMS if power and delta == 0 else PAIRED_SIMS
                    jobs.append(Job("paired", count(sims), cases, accuracy, discordance, delta))
    for cases in CLUSTER_CASES:
        for repeats in REPEATS:
            for population in POPULATIONS:
                jobs.append(Job("clustered", count(CLUSTER_SIMS[cases]), cases,
                                repeats=repeats, population=population))  # fmt: skip
    for cases in MARGIN_CASES:
        jobs.append(Job("margin", count(MARGIN_SIMS), cases, discordance=MARGIN_DISCORDANCE,
                        delta=-MARGIN / 100))  # fmt: skip
    for cases in REGRESSION_CASES:
        for flip in FLIPS:
            jobs.append(Job("regression", count(REGRESSION_SIMS), cases, flip=flip))
    for cases, discordance in FAMILY_SETTINGS:
        jobs.append(Job("family", count(FAMILY_SIMS[cases]), cases, discordance=discordance))
    return jobs


def run_all(jobs: Sequence[Job], processes: int) -> dict[Job, Tally]:
    # The costliest first, so that the processes finish together.
    order = sorted(jobs, key=lambda j: -j.sims * j.cases * j.repeats * (12 if j.kind == "family"
                                                                        else 2))  # fmt: skip
    if processes <= 1:
        return {job: run(job) for job in order}
    with ProcessPoolExecutor(processes) as pool:
        return dict(zip(order, pool.map(run, order), strict=True))


# -- judging and printing -----------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A share of simulated runs, with its bound (``at_most``: an upper bound)."""

    hits: int
    sims: int
    bound: float
    at_most: bool
    slack: float  # standard errors the bound is loosened by (0 at full size)
    spread: float | None = None  # the standard error, when not the binomial one

    @property
    def share(self) -> float:
        return self.hits / self.sims

    @property
    def error(self) -> float:
        """The Monte Carlo standard error of the share."""
        if self.spread is not None:
            return self.spread
        return math.sqrt(self.share * (1 - self.share) / self.sims)

    @property
    def limit(self) -> float:
        """The bound, loosened by ``slack`` standard errors at the bound for this count."""
        loosen = self.slack * math.sqrt(self.bound * (1 - self.bound) / self.sims)
        return self.bound + loosen if self.at_most else self.bound - loosen

    @property
    def met(self) -> bool:
        return self.share <= self.limit if self.at_most else self.share >= self.limit

    @property
    def room(self) -> float:
        """How far inside its limit the figure is (negative: outside)."""
        return self.limit - self.share if self.at_most else self.share - self.limit

    def cell(self) -> str:
        return f"{pct(self.share)} ±{self.error * 100:.2f}" + ("" if self.met else " <-")


def pct(share: float) -> str:
    return f"{share * 100:.2f}%"


def points(delta: float) -> str:
    return f"{delta * 100:+.0f}" if delta else "0"


@dataclass(frozen=True)
class Target:
    name: str
    figures: list[tuple[str, Figure]]  # (setting, figure)

    def line(self) -> str:
        where, worst = min(self.figures, key=lambda f: f[1].room)
        met = sum(f.met for _, f in self.figures)
        sign = "<=" if worst.at_most else ">="
        counts = sorted({f.sims for _, f in self.figures})
        runs = "/".join(f"{c:,}" for c in counts)
        verdict = "PASS" if met == len(self.figures) else "FAIL"
        return (
            f"{verdict}  {self.name:<44} {pct(worst.share):>7} ±{worst.error * 100:.2f}  "
            f"(limit {sign} {pct(worst.limit)})  nearest its limit: {where}; "
            f"{met} of {len(self.figures)} within; {runs} runs each"
        )

    @property
    def met(self) -> bool:
        return all(f.met for _, f in self.figures)


class Report:
    def __init__(self, results: dict[Job, Tally], slack: float) -> None:
        self.results = results
        self.slack = slack

    def tally(self, **fields: object) -> Tally:
        (found,) = (t for j, t in self.results.items()
                    if all(getattr(j, k) == v for k, v in fields.items()))  # fmt: skip
        return found

    def figure(self, tally: Tally, name: str, bound: float, at_most: bool) -> Figure:
        return Figure(tally[name], tally["sims"], bound, at_most, self.slack)


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    rows = [list(header), *map(list, rows)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("   " + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def size_and_power(report: Report) -> Target:
    print(f"\n1  WORSE or BETTER at no true difference (both at {ACCURACY:.0%})")
    figures, rows = [], []
    for cases in CASES:
        for discordance in SIZE_DISCORDANCE:
            tally = report.tally(kind="paired", cases=cases, accuracy=ACCURACY,
                                 discordance=discordance, delta=0.0)  # fmt: skip
            found = report.figure(tally, "significant", SIZE_LIMIT, at_most=True)
            setting = f"{cases} cases, {discordance:.0%} discordant"
            figures.append((setting, found))
            rows.append([str(cases), f"{discordance:.0%}", f"{found.sims:,}", found.cell(),
                         f"<= {pct(found.limit)}"])  # fmt: skip
    table(["cases", "discordant", "runs", "WORSE or BETTER ±se", "limit"], rows)

    print(f"\n2  power: WORSE when the candidate is truly worse (the reference at {ACCURACY:.0%})")
    rows = []
    for cases in CASES:
        for discordance in SIZE_DISCORDANCE:
            row = [str(cases), f"{discordance:.0%}"]
            for delta in POWER_DELTAS:
                if abs(delta) > discordance + 1e-12:
                    row.append("-")
                    continue
                tally = report.tally(kind="paired", cases=cases, accuracy=ACCURACY,
                                     discordance=discordance, delta=delta)  # fmt: skip
                row.append(pct(tally["worse"] / tally["sims"]))
            rows.append(row)
    table(["cases", "discordant", *(f"Δ {points(d)}" for d in POWER_DELTAS)], rows)
    zero = report.tally(kind="paired", cases=CASES[0], accuracy=ACCURACY,
                        discordance=SIZE_DISCORDANCE[0], delta=0.0)["sims"]  # fmt: skip
    other = report.tally(kind="paired", cases=CASES[0], accuracy=ACCURACY,
                         discordance=SIZE_DISCORDANCE[0], delta=-0.02)["sims"]  # fmt: skip
    print(f"   {zero:,} runs at Δ 0 (WORSE only: half of target 1's verdicts), {other:,} otherwise;"
          " '-': the discordance cannot hold that difference")  # fmt: skip
    return Target("1 WORSE or BETTER at Δ 0", figures)


def paired_coverage(report: Report) -> Target:
    print("\n3  coverage of the paired 95% interval (the reference at 55% or 70%)")
    figures, rows = [], []
    for cases in CASES:
        for accuracy in COVERAGE_ACCURACIES:
            for discordance in COVERAGE_DISCORDANCE:
                row = [str(cases), f"{accuracy:.0%}", f"{discordance:.0%}"]
                for delta in COVERAGE_DELTAS:
                    if abs(delta) > discordance + 1e-12:
                        row.append("-")
                        continue
                    tally = report.tally(kind="paired", cases=cases, accuracy=accuracy,
                                         discordance=discordance, delta=delta)  # fmt: skip
                    found = report.figure(tally, "covered", COVERAGE_LIMIT, at_most=False)
                    setting = (f"{cases} cases, reference {accuracy:.0%}, "
                               f"{discordance:.0%} discordant, Δ {points(delta)}")  # fmt: skip
                    figures.append((setting, found))
                    row.append(found.cell())
                rows.append(row)
    table(["cases", "reference", "discordant", *(f"Δ {points(d)} ±se" for d in COVERAGE_DELTAS)],
          rows)  # fmt: skip
    return Target("3 paired interval holds the true Δ", figures)


def clustered_coverage(report: Report) -> Target:
    print("\n4  coverage of the accuracy's 95% interval, each case asked 3 or 5 times")
    for population, text in POPULATIONS.items():
        print(f"   {population}: {text}; true accuracy {pct(TRUE_ACCURACY[population])}")
    figures, rows = [], []
    for cases in CLUSTER_CASES:
        for repeats in REPEATS:
            for population in POPULATIONS:
                tally = report.tally(kind="clustered", cases=cases, repeats=repeats,
                                     population=population)  # fmt: skip
                found = report.figure(tally, "covered", COVERAGE_LIMIT, at_most=False)
                figures.append((f"{cases} cases x {repeats}, {population}", found))
                rows.append([str(cases), str(repeats), population, f"{found.sims:,}",
                             found.cell(), pct(tally["low"] / tally["sims"]),
                             f">= {pct(found.limit)}"])  # fmt: skip
    table(["cases", "askings", "population", "runs", "coverage ±se", "truth below", "limit"],
          rows)  # fmt: skip
    return Target("4 accuracy interval holds the truth", figures)


def margin(report: Report) -> Target:
    print(f"\n5  swap margin {MARGIN:g}: a candidate truly {MARGIN:g} points worse, accepted")
    figures, rows = [], []
    for cases in MARGIN_CASES:
        tally = report.tally(kind="margin", cases=cases)
        found = report.figure(tally, "accepted", MARGIN_LIMIT, at_most=True)
        figures.append((f"{cases} cases", found))
        rows.append([str(cases), f"{MARGIN_DISCORDANCE:.0%}", f"{found.sims:,}", found.cell(),
                     f"<= {pct(found.limit)}"])  # fmt: skip
    table(["cases", "discordant", "runs", "accepted ±se", "limit"], rows)
    return Target(f"5 accepted {MARGIN:g} points worse", figures)


def regression(report: Report) -> Target:
    print("\n6  regression gate: the same model twice, no true change (accuracy "
          f"{ACCURACY:.0%})")  # fmt: skip
    figures, rows = [], []
    for cases in REGRESSION_CASES:
        for flip in FLIPS:
            tally = report.tally(kind="regression", cases=cases, flip=flip)
            row = [str(cases), f"{flip:.0%}", f"{tally['sims']:,}"]
            for limit in REGRESSION_LIMITS:
                found = report.figure(tally, f"alarm {limit:g}", REGRESSION_LIMIT, at_most=True)
                figures.append((f"{cases} cases, {flip:.0%} flip, limit {limit:g}", found))
                row.append(found.cell())
            row.append(f"<= {pct(found.limit)}")
            rows.append(row)
    table(["cases", "flip", "runs", *(f"alarm at {p:g} ±se" for p in REGRESSION_LIMITS), "limit"],
          rows)  # fmt: skip
    return Target("6 regression false alarms", figures)


def multiplicity(report: Report) -> Target:
    print("\n7  3 suites x 3 candidates, each as good as the reference (Holm over a "
          "candidate's suites)")  # fmt: skip
    figures, rows = [], []
    for cases, discordance in FAMILY_SETTINGS:
        tally = report.tally(kind="family", cases=cases, discordance=discordance)
        sims = tally["sims"]
        # A run's three candidates count as three trials; the error is taken from the
        # runs' own spread, as they share the reference's answers.
        mean = tally["flagged"] / sims
        spread = max(0.0, tally["flagged²"] / sims - mean * mean)
        found = Figure(tally["flagged"], 3 * sims, FAMILY_LIMIT, True, report.slack,
                       math.sqrt(spread / sims) / 3)  # fmt: skip
        figures.append((f"{cases} cases, {discordance:.0%} discordant", found))
        rows.append([str(cases), f"{discordance:.0%}", f"{sims:,}",
                     found.cell(),
                     f"<= {pct(found.limit)}", pct(tally["any"] / sims)])  # fmt: skip
    table(["cases", "discordant", "runs", "per candidate ±se", "limit", "any of 9"], rows)
    return Target("7 per candidate WORSE or BETTER, Δ 0", figures)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"1/{QUICK_SHARE} of the simulations; each bound loosened by "
                             f"{QUICK_SLACK:g} standard errors of that count")  # fmt: skip
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    scale, slack = (QUICK_SHARE, QUICK_SLACK) if args.quick else (1, 0.0)
    jobs = plan(scale)
    print(f"{sum(j.sims for j in jobs):,} simulated runs in {len(jobs)} settings, each a "
          f"gate.decide over hand-made records ({args.processes} processes)")  # fmt: skip
    if args.quick:
        print(f"--quick: 1/{QUICK_SHARE} of the runs; each bound loosened by {QUICK_SLACK:g} "
              "Monte Carlo standard errors at the bound for the smaller count (the limits "
              "shown), nothing else")  # fmt: skip
    start = time.perf_counter()
    report = Report(run_all(jobs, args.processes), slack)
    wall = time.perf_counter() - start
    found = [
        size_and_power(report),
        paired_coverage(report),
        clustered_coverage(report),
        margin(report),
        regression(report),
        multiplicity(report),
    ]
    print(f"\n{wall:.0f} s of simulation; ±se: the Monte Carlo standard error; "
          "'<-': outside its limit\n")  # fmt: skip
    for target in found:
        print(target.line())
    return 0 if all(target.met for target in found) else 1


if __name__ == "__main__":
    sys.exit(main())
