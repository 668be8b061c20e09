"""An answer judged in the engine's loop: what needs no model is settled, the judge grades
the rest (each grade asked again once when it cannot be read), the grades are folded in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pytest_llmeval.engine.client import CallError, Completion, LLMRequest, redact
from pytest_llmeval.engine.engine import Engine
from pytest_llmeval.models import ModelSpec
from pytest_llmeval.scoring.combined import ToJudge, settle, with_grades
from pytest_llmeval.scoring.judge import NUDGE, Judgement, parse_grade, turns
from pytest_llmeval.scoring.verdict import Verdict
from pytest_llmeval.suite.model import Case, Message, ResponseFormat, Suite
from pytest_llmeval.suite.rules import JudgeConfig
from pytest_llmeval.support.text import shorten

ATTEMPTS = 2  # an unreadable grade is asked for once more, then it is an error


@dataclass(frozen=True)
class Judged:
    verdict: Verdict
    calls: int = 0  # judge answers used (replayed ones included)
    cost: float | None = 0.0  # what they cost; None when the judge's price is unknown
    cached: bool = True  # every one of them replayed
    # Each grade: the field judged (None: the whole answer) and the judge's words.
    grades: tuple[tuple[str | None, Judgement], ...] = ()


async def grade(
    engine: Engine,
    judge: ModelSpec,
    config: JudgeConfig,
    task_input: str,
    todo: ToJudge,
    *,
    group: str,
    name: str,
    where: str,
) -> Judgement:
    """The judge's grade of one answer (or field), and the answers it took."""
    part = "the answer" if todo.label is None else repr(todo.label)
    conversation = [Message(role, content) for role, content in
                    turns(config, task_input, todo.reference, todo.answer)]  # fmt: skip
    answers: list[Completion] = []
    for _ in range(ATTEMPTS):
        request = LLMRequest(
            model=judge,
            messages=tuple(conversation),
            response_format=ResponseFormat(json_mode=False),
            group=group,
            name=f"{name}.judge-{todo.label or 'answer'}",
            where=where,
        )
        try:
            done = await engine.ask(request)
        except CallError as exc:  # the judge's failure, not the model's
            raise CallError(redact(f"judge {judge.name}, grading {part}: {exc}", judge)) from None
        answers.append(done)
        # The engine took every key out of the judge's words already; once more here, since
        # they are shown and stored under the case (its reasoning, the line below).
        said = redact(done.text, judge)
        found = parse_grade(said)
        if found is not None:
            return Judgement(found, said.strip(), tuple(answers))
        # Asked again with its answer in view: a new request (the same one would get the
        # same answer at temperature 0), so a new recording too.
        conversation += [Message("assistant", done.text), Message("user", NUDGE)]
    said = shorten(redact(answers[-1].text, judge), 300)
    raise CallError(
        f"judge {judge.name} gave no CORRECT/INCORRECT grade for {part} in "
        f"{ATTEMPTS} answers; it last said: {said!r}"
    )


def job(
    engine: Engine, judge: ModelSpec | None, suite: Suite, case: Case, model: str, where: str
) -> Callable[[Completion], Awaitable[Judged]]:
    """What the engine runs on a case's answer as soon as it comes."""
    messages = suite.render(case)
    task_input = next((m.content for m in reversed(messages) if m.role == "user"), "")

    async def run(answer: Completion) -> Judged:
        try:
            return await judged(answer)
        except CallError:
            raise
        except Exception as exc:  # a bug, or a judge answer of a shape not foreseen
            failure = f"judging failed: {type(exc).__name__}: {exc}"
            raise CallError(failure if judge is None else redact(failure, judge)) from exc

    async def judged(answer: Completion) -> Judged:
        scoring = suite.scoring
        verdict, todo = settle(case.expected, answer.text, scoring, suite.response_format.json_mode)
        if not todo:
            return Judged(verdict)
        assert judge is not None  # a suite that judges has a judge model (checked at collection)
        gradings = await asyncio.gather(*(
            grade(engine, judge, scoring.judge, task_input, part, group=suite.name,
                  name=f"{case.id}.{model}", where=where)
            for part in todo
        ))  # fmt: skip
        answers = [a for g in gradings for a in g.answers]
        costs = [a.cost for a in answers]
        grades = tuple((p.label, g) for p, g in zip(todo, gradings, strict=True))
        return Judged(
            verdict=with_grades(verdict, dict(grades)),
            calls=len(answers),
            cost=None if None in costs else sum(c or 0.0 for c in costs),
            cached=all(a.cached for a in answers),
            grades=grades,
        )

    return run
