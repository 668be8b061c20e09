"""The LLM judge: its prompt, and its grade read back out of free text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

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
_GRADE_LINE = re.compile(r"grade\W{0,5}(not\s+correct|incorrect|correct)\b", re.IGNORECASE)
_WORD = re.compile(r"\b(not\s+correct|incorrect|correct)\b", re.IGNORECASE)


@dataclass(frozen=True)
class JudgeConfig:
    model: str | None = None  # a model name, as in --llm-models; None: --llm-judge-model
    criteria: str = ""  # added to the default prompt
    prompt: str | None = None  # a whole template instead, with {input} {reference} {answer}
    # Judge only what the structural check does not already pass (an exact match needs no
    # judge, and costs nothing).
    only_when_different: bool = True


def prompt(config: JudgeConfig, task_input: str, reference: Any, answer: Any) -> str:
    values = {
        "input": task_input,
        "reference": _text(reference),
        "answer": _text(answer),
        "criteria": config.criteria,
    }
    template = config.prompt or DEFAULT_PROMPT
    # str.replace, not str.format: JSON braces in a template are text.
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


def parse_grade(text: str) -> Grade | None:
    """The judge's grade: the last "GRADE: ..." line, else a lone verdict word on the last
    line that has one; None when the text does not say (or says both)."""
    marked = _GRADE_LINE.findall(text)
    if marked:
        return _grade(marked[-1])
    for line in reversed([line for line in text.splitlines() if line.strip()]):
        words = {_grade(w) for w in _WORD.findall(line)}
        if len(words) == 1:
            return words.pop()
        if words:
            return None  # "correct or incorrect?": no verdict
    return None


def _grade(word: str) -> Grade:
    return "CORRECT" if word.casefold() == "correct" else "INCORRECT"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
