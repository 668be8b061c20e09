"""A suite's scoring as a whole: structural, per field, or judged, in two steps.

First everything that needs no model (``settle``), which also says what is left for the
judge; then the judge's grades folded in (``with_grades``). The engine runs the judge
calls in between, concurrently with everything else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pytest_llmeval.scoring import structural
from pytest_llmeval.scoring.fields import score_field
from pytest_llmeval.scoring.judge import Judgement
from pytest_llmeval.scoring.verdict import Verdict
from pytest_llmeval.suite.rules import Scoring
from pytest_llmeval.support.bounds import MAX_ANSWER_CHARS
from pytest_llmeval.support.text import shorten

REASONING_SHOWN = 400  # characters of the judge's reasoning in a diff line


@dataclass(frozen=True)
class ToJudge:
    label: str | None  # the field judged; None: the whole answer
    reference: Any
    answer: Any


def settle(
    expected: Any, text: str, scoring: Scoring, json_answer: bool
) -> tuple[Verdict, list[ToJudge]]:
    """The verdict as far as it goes without a judge, and what the judge must grade."""
    if len(text) > MAX_ANSWER_CHARS:
        # Past the bound, a miss as it stands: not parsed, not compared, not judged.
        return structural.score(expected, text, scoring), []
    if not json_answer and isinstance(expected, str):
        # A free-text suite expecting a string compares the whole answer with it, both
        # stripped: a YAML block scalar's final newline is no part of what is expected.
        expected = expected.strip()
        answer: Any = text.strip()
        verdict = structural.score_value(expected, answer, scoring)
    else:
        verdict = structural.score(expected, text, scoring)
        # Not JSON: in JSON mode a miss as it stands; in a free-text suite, the text is judged.
        answer = verdict.answer if verdict.answer is not None else text.strip()
    if scoring.method == "structural" or (verdict.answer is None and json_answer):
        return verdict, []
    if scoring.method == "judge":
        if verdict.passed and scoring.judge.only_when_different:
            return verdict, []
        return verdict, [ToJudge(None, expected, answer)]
    return _by_field(expected, answer, scoring)


def _by_field(expected: Any, answer: Any, scoring: Scoring) -> tuple[Verdict, list[ToJudge]]:
    rules = dict(scoring.fields)
    if not isinstance(expected, dict) or not isinstance(answer, dict):
        return structural.score_value(expected, answer, scoring), []
    results: dict[str, bool] = {}
    diff: list[str] = []
    judge: list[ToJudge] = []
    # Top-level names in exclude_paths are left out on both sides, as structurally.
    excluded = set(scoring.exclude_paths)
    for name in answer.keys() - expected.keys() - excluded:
        results[name] = False
        diff.append(f"{name}: unexpected field")
    for name, wanted in expected.items():
        if name in excluded:
            continue
        if name not in answer:
            results[name] = False
            diff.append(f"{name}: missing")
            continue
        got = answer[name]
        rule = rules.get(name)
        if rule is not None and rule.method != "judge":
            result = score_field(rule, wanted, got)
            results[name] = result.passed
            if not result.passed:
                diff.append(f"{name}: {result.detail} ({rule.method})")
            continue
        same = structural.score_value({name: wanted}, {name: got}, scoring)
        if rule is None or (same.passed and scoring.judge.only_when_different):
            # An unruled field compares structurally; a judged one that already does needs
            # no judge.
            results[name] = same.passed
            diff += same.diff
        else:
            judge.append(ToJudge(name, wanted, got))
    verdict = _verdict(results, diff, answer, pending=len(judge))
    return verdict, judge


def with_grades(verdict: Verdict, graded: dict[str | None, Judgement]) -> Verdict:
    """Fold the judge's grades in: the case passes when every part passes."""
    if not graded:
        return verdict
    if None in graded:  # the whole answer: the judge decides
        judged = graded[None]
        passed = judged.grade == "CORRECT"
        return replace(
            verdict,
            outcome="pass" if passed else "miss",
            score=1.0 if passed else 0.0,
            reason="" if passed else "the judge graded the answer INCORRECT",
            diff=() if passed else (*verdict.diff, f"judge: {_said(judged)}"),
        )
    results = dict(verdict.fields)
    diff = list(verdict.diff)
    for name, judged in graded.items():
        assert name is not None
        results[name] = judged.grade == "CORRECT"
        if not results[name]:
            diff.append(f"{name}: the judge graded it INCORRECT: {_said(judged)}")
    return _verdict(results, diff, verdict.answer, pending=0)


def _verdict(results: dict[str, bool], diff: list[str], answer: Any, pending: int) -> Verdict:
    passed = all(results.values()) and not pending
    total = len(results) + pending
    failed = sum(not ok for ok in results.values())
    return Verdict(
        outcome="pass" if passed else "miss",
        score=sum(results.values()) / total if total else 1.0,
        fields=results,
        reason="" if passed or pending else f"{failed} field(s) wrong",
        diff=tuple(diff),
        answer=answer,
    )


def _said(judged: Judgement) -> str:
    return shorten(judged.reasoning, REASONING_SHOWN)
