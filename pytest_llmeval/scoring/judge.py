"""The LLM judge: its prompt, and its grade read back out of free text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pytest_llmeval.engine.client import Completion
from pytest_llmeval.suite.rules import JudgeConfig

Grade = Literal["CORRECT", "INCORRECT"]

# The seed's judge: reason first, then grade, against a reference answer.
DEFAULT_PROMPT = """\
You are grading an answer against a reference answer.

Input:
{input}

Reference answer:
{reference}

Answer to grade:
{answer}

The answer is CORRECT when it means the same as the reference: wording, order and
formatting may differ, but nothing may be missing, added or changed in meaning.
{criteria}
Think step by step, then end with one line: GRADE: CORRECT or GRADE: INCORRECT"""

PROMPT_FIELDS = ("input", "reference", "answer", "criteria")

# "GRADE: CORRECT", "**Grade:** incorrect", "grade = Correct."
# Word edges are ASCII letters: a small model may run a grade into other scripts
# ("CORRECTに"), and "incorrectly" is still no grade.
_GRADE_LINE = re.compile(
    r"grade\W{0,5}(not\s+correct|incorrect|correct)(?![A-Za-z])", re.IGNORECASE
)
_PLACEHOLDER = re.compile(r"\{(input|reference|answer|criteria)\}")
# An opening verdict in capitals, run into something that is not another capital
# ("CORRECTに", "CORRECTButton"); "CORRECTLY" is another word.
_OPENING = re.compile(r"\W*(INCORRECT|CORRECT)(?![A-Z]{2})")
_ANY_WORD = re.compile(r"(?<![A-Za-z])(incorrect|correct)(?![A-Za-z])", re.IGNORECASE)
_LAST_WORD = re.compile(r"(?:^|[.:!?]\s*)\W*(incorrect|correct)\W*$", re.IGNORECASE)


@dataclass(frozen=True)
class Judgement:
    """The judge's grade of one answer (or field), its words, and the answers it took
    (an unreadable grade is asked for again)."""

    grade: Grade
    reasoning: str
    answers: tuple[Completion, ...] = ()


# Asked when an answer gave no grade: the judge's own answer stays in the conversation.
NUDGE = "End with one line: GRADE: CORRECT or GRADE: INCORRECT"


def turns(
    config: JudgeConfig, task_input: str, reference: Any, answer: Any
) -> list[tuple[str, str]]:
    """The judge's chat turns for one answer: (role, content) pairs."""
    values = {
        "input": task_input,
        "reference": _text(reference),
        "answer": _text(answer),
        "criteria": config.criteria,
    }

    def fill(template: str) -> str:
        # One pass: a filled-in value containing "{answer}" stays as it is; other braces
        # (JSON in a few-shot turn) are text.
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)

    if config.messages:
        return [(role, fill(content)) for role, content in config.messages]
    return [("user", fill(config.prompt or DEFAULT_PROMPT))]


def parse_grade(text: str) -> Grade | None:
    """The judge's grade: the last line with exactly one "GRADE: ...", else a verdict alone
    at the end of the last line, else a verdict in capitals opening the reply; None when the
    text does not say. A line naming both ("end with GRADE: CORRECT or GRADE: INCORRECT",
    a judge echoing its prompt) gives none."""
    lines = [line for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        found = {_grade(word) for word in _GRADE_LINE.findall(line)}
        if len(found) == 1:
            return found.pop()
    # Else a verdict standing alone at the end of the last line ("... Correct.",
    # "INCORRECT"); "the answer is not the correct one" is no grade, and is asked again.
    last = lines[-1] if lines else ""
    alone = _LAST_WORD.search(last)
    if alone and len({w.casefold() for w in _ANY_WORD.findall(last)}) == 1:
        return _grade(alone.group(1))
    opening = _OPENING.match(text)
    return _grade(opening.group(1)) if opening else None


def _grade(word: str) -> Grade:
    return "CORRECT" if word.casefold() == "correct" else "INCORRECT"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
