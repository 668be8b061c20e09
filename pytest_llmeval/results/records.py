"""Result records and their aggregation per suite and model, with the statistics shown."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal

from pytest_llmeval.results.stats import clustered_wilson, percentile

RecordOutcome = Literal["pass", "miss", "error"]


# Slotted: a run keeps every record to its end, and without a __dict__ each takes a
# fifth of the memory (a 40,000-item replay's peak RSS fell by ~70 MB).
@dataclass(frozen=True, slots=True)
class Record:
    """One item's result: plain data, so it travels on a test report (and across xdist)."""

    suite: str
    case: str
    model: str
    nodeid: str
    file: str
    line: int
    outcome: RecordOutcome
    threshold: float | None = None
    own_threshold: bool = False  # the suite's own `threshold:` (--llm-threshold leaves it)
    score: float | None = None
    fields: dict[str, bool] = field(default_factory=dict)
    reason: str = ""
    diff: tuple[str, ...] = ()
    expected: Any = None
    answer: str | None = None
    latency_s: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: float | None = None
    cached: bool = False  # the answer was replayed from the response cache
    attempts: int = 0  # HTTP attempts made for it (0 when replayed)
    rate_limited: int = 0  # of those, answered 429
    in_flight: int = 0  # its model's requests in flight as its last attempt began, itself too
    judge_calls: int = 0  # the judge's answers used to score it
    judge_cached: bool = False  # all of them replayed
    judge_cost: float | None = None  # what they cost (None: no judge, or no price)
    # The judge's grades: {"field": name or None (the whole answer), "grade", "reasoning"}.
    judge_grades: tuple[dict[str, Any], ...] = ()
    # A YAML case's inputs as written (or its own turns); None for a Python test.
    inputs: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    parsed: Any = None  # the answer as JSON, when it is JSON
    finished_at: float | None = None  # epoch seconds when the answer came (or was replayed)
    repeat: int = 0  # which asking of the case this is (--llm-repeat), from 0
    suite_version: str | None = None  # the suite's digest (Suite.version); None: a Python test

    def to_dict(self) -> dict[str, Any]:
        # Field by field, not dataclasses.asdict: its deep copy of every value (no value here
        # is a dataclass, and a record is never changed) was a third of an item's own time.
        return {name: getattr(self, name) for name in _RECORD_FIELDS}

    def to_report(self) -> dict[str, Any]:
        """The fields whose values are not their defaults, which ``from_dict`` fills back
        in: the dict rides on a test report, which pytest keeps to the run's end (about
        half a record's fields are defaults: no judge, no retries, no repeat)."""
        return {
            name: value
            for name in _RECORD_FIELDS
            if not _is_default(name, value := getattr(self, name))
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        # JSON (and xdist's report channel) turns tuples into lists.
        tuples = {name: tuple(data.get(name, ())) for name in ("diff", "tags", "judge_grades")}
        return cls(**{**data, **tuples})

    @property
    def started_at(self) -> float | None:
        if self.finished_at is None or self.latency_s is None:
            return None
        return self.finished_at - self.latency_s

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"


_RECORD_FIELDS = tuple(f.name for f in fields(Record))
_DEFAULTS: dict[str, Any] = {
    f.name: f.default_factory() if callable(f.default_factory) else f.default
    for f in fields(Record)
    if f.default is not MISSING or f.default_factory is not MISSING
}


def _is_default(name: str, value: Any) -> bool:
    # By type too: a score of 0 is not the default None, nor is 0.0 the default 0.
    default = _DEFAULTS.get(name, MISSING)
    return type(value) is type(default) and value == default


@dataclass(frozen=True)
class RateLimits:
    """How one model's rate limits were met over a run's called answers."""

    model: str
    called: int  # answers asked of the endpoint (errored ones too)
    rate_limited: int  # 429s among their attempts
    most_in_flight: int  # the most of its requests in flight at once (per xdist worker)


def rate_limits(records: Iterable[Record]) -> list[RateLimits]:
    """Per model, in the order first seen, over the records that were not replayed."""
    found: dict[str, RateLimits] = {}
    for r in records:
        if r.cached or not r.attempts:
            continue
        seen = found.get(r.model, RateLimits(r.model, 0, 0, 0))
        found[r.model] = RateLimits(r.model, seen.called + 1, seen.rate_limited + r.rate_limited,
                                    max(seen.most_in_flight, r.in_flight))  # fmt: skip
    return list(found.values())


@dataclass(frozen=True)
class Summary:
    """The figures for one suite and model: the row a person deciding a swap reads."""

    suite: str
    model: str
    records: tuple[Record, ...]

    def _count(self, outcome: RecordOutcome) -> int:
        return sum(r.outcome == outcome for r in self.records)

    @property
    def passes(self) -> int:
        return self._count("pass")

    @property
    def misses(self) -> int:
        return self._count("miss")

    @property
    def errors(self) -> int:
        return self._count("error")

    @property
    def asked(self) -> int:
        """Answers asked for (every repeat of every case), errored ones included."""
        return len(self.records)

    @property
    def cases(self) -> int:
        return len(self._by_case())

    @property
    def accuracy(self) -> float | None:
        """passes / answers asked: an errored answer is one not passed (a model that answers
        nothing is at 0%, never spared a verdict). None when nothing was asked."""
        return self.passes / self.asked if self.asked else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """The accuracy's 95% interval, each case one cluster of its repeats."""
        if not self.asked:
            return None
        means = [sum(v) / len(v) for v in self._verdicts().values()]
        return clustered_wilson(means, self.asked)

    @property
    def field_rates(self) -> dict[str, float]:
        """Per top-level field, the share of answered cases that got it right."""
        totals: dict[str, list[bool]] = {}
        for record in self.records:
            if record.outcome != "error":
                for name, ok in record.fields.items():
                    totals.setdefault(name, []).append(ok)
        return {name: sum(oks) / len(oks) for name, oks in totals.items()}

    @property
    def field_accuracy(self) -> float | None:
        scores = [r.score for r in self.records if r.outcome != "error" and r.score is not None]
        return sum(scores) / len(scores) if scores else None

    def latency(self, quantile: float) -> float | None:
        values = [r.latency_s for r in self.records if r.latency_s is not None]
        return percentile(values, quantile) if values else None

    @property
    def input_tokens(self) -> int:
        return sum(r.input_tokens or 0 for r in self.records)

    @property
    def output_tokens(self) -> int:
        return sum(r.output_tokens or 0 for r in self.records)

    @property
    def cost(self) -> float | None:
        """Dollars spent; None when a call's price is unknown (so no partial sum poses as total)."""
        called = [r for r in self.records if r.latency_s is not None]
        if not called or any(r.cost is None for r in called):
            return None
        return sum(r.cost or 0.0 for r in called)

    @property
    def judged(self) -> bool:
        return any(r.judge_calls for r in self.records)

    @property
    def judge_cost(self) -> float | None:
        """Dollars spent on the judge, apart from the model's; None when a price is unknown."""
        judged = [r for r in self.records if r.judge_calls]
        if not judged or any(r.judge_cost is None for r in judged):
            return None
        return sum(r.judge_cost or 0.0 for r in judged)

    @property
    def threshold(self) -> float | None:
        """The suite's threshold (every record of a suite carries the same one)."""
        return next((r.threshold for r in self.records if r.threshold is not None), None)

    def missed(self) -> list[Record]:
        return [r for r in self.records if r.outcome == "miss"]

    @property
    def repeats(self) -> int:
        return 1 + max((r.repeat for r in self.records), default=0)

    def _by_case(self) -> dict[str, list[Record]]:
        by_case: dict[str, list[Record]] = {}
        for record in self.records:
            by_case.setdefault(record.case, []).append(record)
        return by_case

    def _verdicts(self) -> dict[str, list[bool]]:
        """Each case's verdicts over its repeats; an errored answer is not right."""
        return {case: [r.outcome == "pass" for r in records]
                for case, records in self._by_case().items()}  # fmt: skip

    @property
    def always_passed(self) -> set[str]:
        """The cases right every time they were asked (once, without --llm-repeat)."""
        return {case for case, verdicts in self._verdicts().items() if all(verdicts)}

    @property
    def always_right(self) -> tuple[int, int]:
        """(cases right in every repeat, cases asked): pass^N's parts."""
        verdicts = self._verdicts().values()
        return sum(all(v) for v in verdicts), len(verdicts)

    @property
    def pass_all(self) -> float | None:
        """pass^N: the share of cases right every time they were asked."""
        right, cases = self.always_right
        return right / cases if cases else None

    @property
    def flaky(self) -> dict[str, tuple[int, int]]:
        """Cases both right and wrong across repeats: case → (times right, times asked)."""
        return {case: (sum(v), len(v)) for case, v in self._verdicts().items()
                if any(v) and not all(v)}  # fmt: skip


def summarize(records: Iterable[Record], model_order: Sequence[str] = ()) -> list[Summary]:
    """One Summary per (suite, model): suites in first-seen order, models as configured."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        groups.setdefault((record.suite, record.model), []).append(record)
    suites = list(dict.fromkeys(suite for suite, _ in groups))
    rank = {name: i for i, name in enumerate(model_order)}
    keys = sorted(groups, key=lambda k: (suites.index(k[0]), rank.get(k[1], len(rank)), k[1]))
    return [
        Summary(suite, model, tuple(sorted(groups[suite, model], key=lambda r: r.case)))
        for suite, model in keys
    ]
