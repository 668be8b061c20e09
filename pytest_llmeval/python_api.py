"""The ``llmeval`` fixture's object: a model of the matrix for Python tests, in the table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pytest_llmeval.engine.client import CallError, Completion, LLMRequest
from pytest_llmeval.locations import relpath, shown_id
from pytest_llmeval.models import ModelSpec
from pytest_llmeval.report.view import miss_text
from pytest_llmeval.results.records import Record
from pytest_llmeval.run import RECORD, run_of
from pytest_llmeval.scoring import structural
from pytest_llmeval.scoring.verdict import Verdict
from pytest_llmeval.suite.model import Message, ResponseFormat
from pytest_llmeval.suite.rules import Scoring

if TYPE_CHECKING:
    import openai

Prompt = str | Sequence[dict[str, str]]


class LLM:
    """One model of ``--llm-models`` for the current test.

    ``complete()`` calls it (timed, counted, costed); ``score()`` compares an answer with
    the expected value and counts the test as a case of the llmeval table, as a YAML case is.
    """

    def __init__(self, item: pytest.Item, model: ModelSpec) -> None:
        self._item = item
        self.spec = model
        self._completions: list[Completion] = []

    @property
    def name(self) -> str:
        """The model's name in --llm-models (and in node ids)."""
        return self.spec.name

    @property
    def model_id(self) -> str:
        """The id sent to the endpoint."""
        return self.spec.model

    @property
    def client(self) -> openai.OpenAI:
        """The configured SDK client, for code under test that takes one."""
        return run_of(self._item.config).sync_client(self.spec)

    def complete(
        self,
        prompt: Prompt,
        *,
        json_mode: bool = False,
        schema: dict[str, Any] | None = None,
        **params: Any,
    ) -> str:
        """Ask the model; a string is one user message. Returns the answer's text.

        ``json_mode`` asks for a JSON object (OpenAI then wants "JSON" named in the prompt);
        a ``schema`` asks for JSON in that shape. Answers are recorded and replayed as a
        YAML case's are (``--llm-record``).
        """
        return self.complete_many([prompt], json_mode=json_mode, schema=schema, **params)[0]

    def complete_many(
        self,
        prompts: Sequence[Prompt],
        *,
        json_mode: bool = False,
        schema: dict[str, Any] | None = None,
        **params: Any,
    ) -> list[str]:
        """Ask several prompts at once (concurrently, within the run's limits); the answers
        in the same order."""
        run = run_of(self._item.config)
        shape = ResponseFormat(json_mode or schema is not None, schema)
        item = self._item
        _, line, _ = item.location
        where = f"{relpath(item.config, item.path)}:{(line or 0) + 1}: {shown_id(item)}"
        pendings = [
            run.engine.start(
                LLMRequest(
                    model=self.spec,
                    messages=_messages(prompt),
                    response_format=shape,
                    params=params,
                    # Filed by the test's node id (relative to the rootdir): the same folder
                    # wherever pytest is started from.
                    group=item.nodeid.split("::")[0].removesuffix(".py"),
                    name=str(getattr(item, "originalname", item.name)),
                    where=f"{where}, model {self.name}"
                    + (f", prompt {n} of {len(prompts)}" if len(prompts) > 1 else ""),
                )
            )
            for n, prompt in enumerate(prompts, start=1)
        ]
        answers = []
        for pending in pendings:
            try:
                done = run_of(item.config).answer(pending)
            except CallError as exc:
                item.stash[RECORD] = self._record(outcome="error", reason=str(exc),
                                                  attempts=exc.attempts,
                                                  rate_limited=exc.rate_limited,
                                                  in_flight=exc.in_flight)  # fmt: skip
                # From None: the cause is in the message already, so pytest shows it once.
                failure = f"{pending.request.where}: no answer: {exc}"
                raise pytest.fail.Exception(failure, pytrace=False) from None
            self._completions.append(done)
            answers.append(done.text)
        return answers

    def score(
        self,
        answer: Any,
        expected: Any,
        *,
        suite: str | None = None,
        case: str | None = None,
        ignore_order: bool = False,
        ignore_string_case: bool = False,
        numeric_tolerance: float = 0.0,
        exclude_paths: Sequence[str] = (),
    ) -> Verdict:
        """Score ``answer`` (JSON text or a value) against ``expected``; once per test."""
        if RECORD in self._item.stash:
            raise RuntimeError("llmeval.score() counts the test as one case: call it once per test")
        options = Scoring(
            ignore_order=ignore_order,
            ignore_string_case=ignore_string_case,
            numeric_tolerance=numeric_tolerance,
            exclude_paths=tuple(exclude_paths),
        )
        if isinstance(answer, str):
            text, verdict = answer, structural.score(expected, answer, options)
        else:  # a value already parsed: scored as it is, kept as JSON text in the record
            text, verdict = json.dumps(answer), structural.score_value(expected, answer, options)
        done = self._completions
        record = self._record(
            suite=suite,
            case=case,
            outcome=verdict.outcome,
            score=verdict.score,
            fields=verdict.fields,
            reason=verdict.reason,
            diff=verdict.diff,
            expected=expected,
            answer=text,
            latency_s=sum(c.latency_s for c in done) if done else None,
            input_tokens=_total([c.input_tokens for c in done]),
            output_tokens=_total([c.output_tokens for c in done]),
            cost=_total([c.cost for c in done]),
            cached=bool(done) and all(c.cached for c in done),
            attempts=sum(c.attempts for c in done),
            rate_limited=sum(c.rate_limited for c in done),
            in_flight=max((c.in_flight for c in done), default=0),
        )
        self._item.stash[RECORD] = record
        if not verdict.passed and run_of(self._item.config).settings.strict:
            pytest.fail(miss_text(record), pytrace=False)
        return verdict

    def _record(
        self, *, suite: str | None = None, case: str | None = None, **fields: Any
    ) -> Record:
        item = self._item
        _, line, _ = item.location
        return Record(
            suite=suite or item.path.stem,
            case=case or str(getattr(item, "originalname", item.name)),
            model=self.name,
            nodeid=shown_id(item),
            file=relpath(item.config, item.path),
            line=(line or 0) + 1,
            threshold=run_of(item.config).settings.threshold,
            **fields,
        )


def _messages(prompt: Prompt) -> tuple[Message, ...]:
    turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return tuple(Message(t["role"], t["content"]) for t in turns)


N = TypeVar("N", int, float)


def _total(values: list[N | None]) -> N | None:
    """The sum, or None when there is nothing to add or any part is unknown."""
    known = [v for v in values if v is not None]
    if not values or len(known) < len(values):
        return None
    return sum(known[1:], known[0])
