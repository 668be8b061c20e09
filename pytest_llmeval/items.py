"""Collection of ``*.llmeval.yaml`` files: one item per case and model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import asdict
from functools import cached_property
from typing import Any, NoReturn

import pytest

from pytest_llmeval.engine.client import CallError, Completion, LLMRequest
from pytest_llmeval.engine.engine import Pending
from pytest_llmeval.locations import relpath, shown_id
from pytest_llmeval.models import ModelSpec
from pytest_llmeval.report.view import miss_text
from pytest_llmeval.results.goldens import Kind, Proposal
from pytest_llmeval.results.records import Record
from pytest_llmeval.run import PROPOSAL, RECORD, run_of
from pytest_llmeval.scoring import combined, judging, structural
from pytest_llmeval.suite.load import CaseFileError, load_suite
from pytest_llmeval.suite.model import Case, Suite
from pytest_llmeval.support.bounds import MAX_ANSWER_CHARS
from pytest_llmeval.support.problems import ConfigError


class SuiteFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        shown = relpath(self.config, self.path)
        try:
            suite = load_suite(self.path, display=shown)
        except CaseFileError as exc:
            message = "invalid case file:\n" + "\n".join(exc.lines)
            yield SuiteErrorItem.from_parent(self, name="invalid-suite", message=message)
            return
        run = run_of(self.config)
        models = list(run.models.values())
        # Results are aggregated by suite name: two files with one name would mix.
        first = run.suite_files.setdefault(suite.name, shown)
        if first != shown:
            message = f"{shown}: suite name {suite.name!r} is also used by {first}; rename one"
            yield SuiteErrorItem.from_parent(self, name="duplicate-suite", message=message)
            return
        if not models:
            message = (
                f"{shown}: no models to run suite {suite.name!r} on: "
                "pass --llm-models=NAME[,NAME] or set llmeval_models in the ini file"
            )
            yield SuiteErrorItem.from_parent(self, name="no-models", message=message)
            return
        judge_model = None
        if suite.scoring.uses_judge:
            try:
                judge_model = run.judge_model(suite.scoring.judge.model)
            except ConfigError as exc:
                message = f"{shown}: suite {suite.name!r} is scored by a judge: {exc}"
                yield SuiteErrorItem.from_parent(self, name="no-judge", message=message)
                return
        repeats = run.settings.repeat
        for case in suite.cases:
            for model in models:
                for repeat in range(repeats):
                    # kettle[gpt-4], or kettle[gpt-4-r2] for the second of several askings.
                    label = model.name if repeats == 1 else f"{model.name}-r{repeat + 1}"
                    name = f"{case.id}[{label}]"
                    yield CaseItem.from_parent(
                        self,
                        name=name,
                        # Spelled out so pytest (9.2+) parses "[model]" as the parameter part,
                        # as for a parametrized function: --lf matches ids by those parts.
                        nodeid=f"{self.nodeid}::{name}",
                        suite=suite,
                        case=case,
                        model=model,
                        judge_model=judge_model,
                        repeat=repeat,
                    )


class SuiteErrorItem(pytest.Item):
    """Stands for a case file that cannot run: one error, located, and the run goes on."""

    def __init__(self, *, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message
        # Selecting a model (`-k gpt-4`) must not hide a broken file of its suites.
        self.extra_keyword_matches.update(run_of(self.config).models)

    def setup(self) -> None:
        # Failing in setup reports an ERROR (not a test failure); no traceback, only the message.
        pytest.fail(self.message, pytrace=False)

    def runtest(self) -> None:
        raise AssertionError("unreachable: setup always fails")

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, 0, f"{self.path.name}::{self.name}"


class CaseItem(pytest.Item):
    def __init__(
        self,
        *,
        suite: Suite,
        case: Case,
        model: ModelSpec,
        judge_model: ModelSpec | None = None,
        repeat: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.repeat = repeat
        self.suite = suite
        self.case = case
        self.model = model
        self.completion: Completion | None = None
        self.pending: Pending | None = None  # started by the engine once collection is done
        self.judging: Future[judging.Judged] | None = None
        self.judged: judging.Judged | None = None
        self.judge_model = judge_model
        # Tags select with -k (`-k edge`); as markers they would need registering.
        self.extra_keyword_matches.update(case.tags)

    @property
    def location_text(self) -> str:
        # The case's own file: another one when the suite borrows its cases (`cases_from`).
        return f"{relpath(self.config, self.suite.path)}:{self.case.line}"

    def _record(self, **fields: Any) -> Record:
        run = run_of(self.config)
        threshold = self.suite.threshold
        if threshold is None:
            threshold = run.settings.threshold
        return Record(
            suite=self.suite.name,
            case=self.case.id,
            model=self.model.name,
            nodeid=shown_id(self),
            file=relpath(self.config, self.suite.path),
            line=self.case.line,
            threshold=threshold,
            own_threshold=self.suite.threshold is not None,
            expected=self.case.expected,
            inputs=self.case.inputs or {"messages": [asdict(m) for m in self.case.messages]},
            tags=self.case.tags,
            repeat=self.repeat,
            suite_version=self.suite.version,
            **fields,
        )

    @cached_property
    def request(self) -> LLMRequest:
        return LLMRequest(
            model=self.model,
            messages=tuple(self.suite.render(self.case)),
            response_format=self.suite.response_format,
            group=self.suite.answers_group,
            name=self.case.id,
            repeat=self.repeat,
            pinned=True,
            where=f"{self.location_text}: case {self.case.id!r}, model {self.model.name}"
            + (f", repeat {self.repeat + 1}" if self.repeat else ""),
            expected_chars=len(json.dumps(self.case.expected)),
        )

    def start(self) -> None:
        """Send the request (and, for a judged suite, judge the answer when it comes)."""
        run = run_of(self.config)
        self.pending = run.engine.start(self.request)
        if self.suite.scoring.uses_judge and self.case.golden:  # nothing to judge against
            job = judging.job(run.engine, self.judge_model, self.suite, self.case,
                              self.model.name, self.request.where)  # fmt: skip
            self.judging = run.engine.follow(self.pending, job)

    def setup(self) -> None:
        # Started once collection was done; a rerun of the item asks again.
        if self.pending is None:
            self.start()
        assert self.pending is not None
        pending, judging_, self.pending, self.judging = self.pending, self.judging, None, None
        try:
            self.completion = run_of(self.config).answer(pending)
        except CallError as exc:
            self._error(f"no answer: {exc}", attempts=exc.attempts, rate_limited=exc.rate_limited,
                        in_flight=exc.in_flight)  # fmt: skip
        if judging_ is not None:
            try:
                self.judged = run_of(self.config).result(judging_)
            except CallError as exc:
                self._error(f"not judged: {exc}")

    def _error(
        self, failure: str, *, attempts: int = 0, rate_limited: int = 0, in_flight: int = 0
    ) -> NoReturn:
        """No verdict: an ERROR, recorded with whatever answer there was, and the attempts
        and 429s it took (every 429 counts, a request's that failed for good too)."""
        extra: dict[str, Any] = {"attempts": attempts, "rate_limited": rate_limited,
                                 "in_flight": in_flight}  # fmt: skip
        if self.completion is not None:  # answered, then not judged
            done = self.completion
            extra = {
                **_answered(done),
                "attempts": done.attempts,
                "rate_limited": done.rate_limited,
            }
        self.stash[RECORD] = self._record(outcome="error", reason=failure, **extra)
        self._propose("error", problem=f"errored: {failure}")
        # From None: the cause is in the message already, so pytest shows it once.
        raise pytest.fail.Exception(f"{self.request.where}: {failure}", pytrace=False) from None

    def runtest(self) -> None:
        assert self.completion is not None
        done, judged = self.completion, self.judged
        if not self.case.golden:
            self._no_golden(done)
        if judged is None:
            scoring, json_mode = self.suite.scoring, self.suite.response_format.json_mode
            judged = judging.Judged(combined.settle(self.case.expected, done.text, scoring,
                                                    json_mode)[0])  # fmt: skip
        verdict = judged.verdict
        record = self._record(
            outcome=verdict.outcome,
            score=verdict.score,
            fields=verdict.fields,
            reason="; ".join(part for part in (verdict.reason, done.note) if part),
            diff=verdict.diff,
            **_answered(done),
            attempts=done.attempts,
            rate_limited=done.rate_limited,
            judge_calls=judged.calls,
            judge_cached=judged.calls > 0 and judged.cached,
            judge_cost=judged.cost if judged.calls else None,
            judge_grades=tuple(
                {"field": label, "grade": j.grade, "reasoning": j.reasoning}
                for label, j in judged.grades
            ),
            parsed=verdict.answer,
        )
        self.stash[RECORD] = record
        if run_of(self.config).settings.update_goldens is not None:  # parsed only then
            self._propose(verdict.outcome, *_as_golden(self.suite, self.case, done.text))
        if not verdict.passed and run_of(self.config).settings.strict:
            pytest.fail(miss_text(record), pytrace=False)

    def teardown(self) -> None:
        # pytest keeps every item to the run's end; what it asked and heard is in its record.
        self.completion = self.judged = None
        self.__dict__.pop("request", None)  # the cached property, built again by a rerun

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.suite.path, self.case.line - 1, f"{self.suite.name}::{self.name}"

    def _no_golden(self, done: Completion) -> NoReturn:
        """A case with no `expected:` yet: an ERROR whatever the answer (it never raises an
        accuracy), saying how to write one; the answer is kept as what would be written."""
        value, problem = _as_golden(self.suite, self.case, done.text)
        if run_of(self.config).settings.update_goldens is None:
            failure = (
                "no golden yet: the case has no `expected:`; run pytest with "
                f"--llm-update-goldens=missing --llm-models={self.model.name} to write this "
                "model's answer into it, then review it with git diff"
            )
        else:
            failure = "no golden yet: its answer is proposed as `expected:` (see llmeval goldens)"
        self.stash[RECORD] = self._record(outcome="error", reason=failure, **_answered(done),
                                          attempts=done.attempts, rate_limited=done.rate_limited,
                                          parsed=value)  # fmt: skip
        self._propose("new", value, problem)
        raise pytest.fail.Exception(f"{self.request.where}: {failure}", pytrace=False) from None

    def _propose(self, kind: Kind, value: Any = None, problem: str | None = None) -> None:
        """With --llm-update-goldens: this answer as its case's golden, for the controller."""
        if run_of(self.config).settings.update_goldens is None:
            return
        self.stash[PROPOSAL] = Proposal(
            path=str(self.suite.path),
            file=relpath(self.config, self.suite.path),
            line=self.case.line,
            case=self.case.id,
            kind=kind,
            golden=self.case.golden,
            value=value,
            problem=problem,
        )


def _as_golden(suite: Suite, case: Case, text: str) -> tuple[Any, str | None]:
    """The answer as a golden value, read as scoring reads it, or why it cannot be one."""
    form = suite.response_format
    if not form.json_mode and (not case.golden or isinstance(case.expected, str)):
        if len(text) > MAX_ANSWER_CHARS:
            return None, f"the answer is longer than {MAX_ANSWER_CHARS:,} characters"
        return text.strip(), None  # a free-text suite's golden is the text
    try:
        value = structural.parse_answer(text)  # within the bounds on an answer
    except structural.OverLimit as exc:
        return None, f"the answer is past a bound: {exc}"
    except structural.InvalidJSON as exc:
        return None, f"the answer is not JSON: {exc}"
    if form.json_mode and form.schema is None and not isinstance(value, dict):
        return None, "the answer is not a JSON object, which `response_format: json` asks for"
    return value, None


def _answered(done: Completion) -> dict[str, Any]:
    """A record's fields about the answer itself."""
    return {
        "answer": done.text,
        "latency_s": done.latency_s,
        "input_tokens": done.input_tokens,
        "output_tokens": done.output_tokens,
        "cost": done.cost,
        "cached": done.cached,
        "finished_at": done.finished_at,
        "in_flight": done.in_flight,
    }
