"""This run against a saved one, per suite and model: accuracy then and now, the cases that
newly fail and newly pass, and how latency and cost moved."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_llmeval.results.records import Record, Summary, summarize
from pytest_llmeval.results.saved_run import ResultsFileError, SavedRun
from pytest_llmeval.results.stats import mcnemar_one_sided


@dataclass(frozen=True)
class Change:
    before: Summary
    now: Summary
    newly_failing: tuple[str, ...]  # passed (every time) then; not now
    newly_passing: tuple[str, ...]
    shared: int = 0  # cases in both runs

    @property
    def flip_rate(self) -> float | None:
        """The share of the cases in both runs that changed side, either way: how much a
        model moves from run to run (at temperature 0, a changed model or prompt)."""
        if not self.shared:
            return None
        return (len(self.newly_failing) + len(self.newly_passing)) / self.shared

    @property
    def p_value(self) -> float:
        """McNemar's exact one-sided test that the drop is real: the newly failing against
        the newly passing cases, were either as likely."""
        return mcnemar_one_sided(len(self.newly_failing), len(self.newly_passing))

    @property
    def suite(self) -> str:
        return self.now.suite

    @property
    def model(self) -> str:
        return self.now.model

    @property
    def drop_points(self) -> float | None:
        """Accuracy lost, in percentage points (negative when it rose)."""
        if self.before.accuracy is None or self.now.accuracy is None:
            return None
        return (self.before.accuracy - self.now.accuracy) * 100


def compare(before: Sequence[Record], now: Sequence[Record]) -> list[Change]:
    """Every (suite, model) present in both runs."""
    earlier = {(s.suite, s.model): s for s in summarize(before)}
    changes = []
    for summary in summarize(now):
        then = earlier.get((summary.suite, summary.model))
        if then is None:
            continue
        passed_then, passed_now = then.always_passed, summary.always_passed
        cases_now = {r.case for r in summary.records}
        cases_then = {r.case for r in then.records}
        changes.append(
            Change(
                then,
                summary,
                newly_failing=tuple(sorted((passed_then & cases_now) - passed_now)),
                newly_passing=tuple(sorted((passed_now & cases_then) - passed_then)),
                shared=len(cases_now & cases_then),
            )
        )
    return changes


def find(spec: str, results_dir: Path) -> Path:
    """``latest`` (the newest saved run in the results directory) or a path."""
    if spec != "latest":
        return Path(spec)
    saved = sorted(results_dir.glob("*.json"))  # named from their UTC start time: sortable
    if not saved:
        raise ResultsFileError(f"--llm-baseline=latest: no saved run in {results_dir}")
    return saved[-1]


def load(spec: str, results_dir: Path) -> tuple[Path, SavedRun]:
    path = find(spec, results_dir)
    return path, SavedRun.load(path)
