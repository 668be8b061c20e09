"""How far a judge agrees with people: human-labelled answers graded by the judge, then
the agreement rate and Cohen's kappa (agreement beyond what chance would give)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llmeval.engine.client import CallError
from pytest_llmeval.engine.engine import Engine
from pytest_llmeval.models import ModelSpec
from pytest_llmeval.scoring.combined import ToJudge
from pytest_llmeval.scoring.judge import Grade
from pytest_llmeval.scoring.judging import grade
from pytest_llmeval.suite.rules import JudgeConfig
from pytest_llmeval.support.problems import ConfigError, Problem
from pytest_llmeval.support.schema import (
    SchemaPath,
    lazy_validator,
    load_schema,
    node_at,
    schema_problems,
)
from pytest_llmeval.support.yamlfile import line_of, read_yaml

SCHEMA = load_schema("pytest_llmeval", "labels.schema.json")
CHECK = lazy_validator(SCHEMA)


class LabelFileError(ConfigError):
    """A labels file that cannot be used, with every problem named at its line."""


@dataclass(frozen=True)
class Label:
    id: str
    input: str
    reference: Any
    answer: Any
    human: Grade


@dataclass(frozen=True)
class LabelSet:
    path: Path
    labels: tuple[Label, ...]
    judge: JudgeConfig


@dataclass(frozen=True)
class Graded:
    """A human label beside the judge's grade of the same answer."""

    label: Label
    judge: Grade | None  # None: the judge gave no readable grade
    reasoning: str


def load_labels(path: Path) -> LabelSet:
    """Read and check a labels file; a LabelFileError names every problem at its line.

    As a suite file is: read as untrusted YAML, then its shape by `labels.schema.json`,
    then the rules no schema says (ids unique, the prompt's placeholders)."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LabelFileError(Problem(f"cannot read: {exc}", file)) from None
    try:
        root, values = read_yaml(text, file)
    except ConfigError as exc:
        raise LabelFileError(*exc.problems) from None
    if root is None:
        raise LabelFileError(Problem("empty file: a labels file needs `labels:`", file, 1))
    data = values[root]

    def problem(at: SchemaPath, text: str, key: str | None = None) -> Problem:
        label = _label_id(data, at)
        where = "" if label is None else f"label {label!r}: "
        return Problem(where + text, file, line_of(node_at(root, at, key)))

    problems = [problem(p.path, p.text, p.key) for p in schema_problems(CHECK(), data, _what)]
    if problems:
        raise LabelFileError(*problems)
    labels: list[Label] = []
    seen: dict[str, int] = {}
    for n, entry in enumerate(data["labels"]):
        label_id, line = str(entry["id"]), line_of(node_at(root, ("labels", n, "id")))
        if label_id in seen:
            problems.append(
                problem(("labels", n, "id"), f"duplicate id (first at line {seen[label_id]})")
            )
            continue
        seen[label_id] = line
        labels.append(
            Label(label_id, entry["input"], entry["reference"], entry["answer"], entry["human"])
        )
    template = data.get("prompt")
    if template is not None and not ("{reference}" in template and "{answer}" in template):
        problems.append(problem(("prompt",), "`prompt` must contain {reference} and {answer}"))
    if problems:
        raise LabelFileError(*problems)
    config = JudgeConfig(criteria=data.get("criteria", ""), prompt=template)
    return LabelSet(path, tuple(labels), config)


def _what(path: SchemaPath) -> str:
    """The value at a path as a message names it (a label's values by their key)."""
    if not path:
        return "the labels file"
    if path[0] == "labels" and len(path) == 2:
        return "a label"
    if path[0] == "labels" and len(path) >= 3:
        return f"`{path[2]}`"
    return f"`{path[0]}`"


def _label_id(data: Any, at: SchemaPath) -> Any:
    """The id of the label a path is in, where it has one."""
    if len(at) < 2 or at[0] != "labels" or not isinstance(data, dict):
        return None
    labels = data.get("labels")
    if not isinstance(labels, list) or not isinstance(at[1], int) or at[1] >= len(labels):
        return None
    entry = labels[at[1]]
    return entry.get("id") if isinstance(entry, dict) else None


def grade_all(engine: Engine, judge: ModelSpec, labels: LabelSet) -> list[Graded]:
    """Every label graded by the judge, concurrently, through the engine (and its cache)."""

    async def one(label: Label) -> Graded:
        todo = ToJudge("label", label.reference, label.answer)
        try:
            judgement = await grade(engine, judge, labels.judge, label.input, todo,
                                    group=labels.path.stem, name=label.id,
                                    where=f"{labels.path.name}: label {label.id!r}")  # fmt: skip
        except CallError as exc:
            return Graded(label, None, str(exc))
        return Graded(label, judgement.grade, judgement.reasoning)

    async def every() -> list[Graded]:
        return list(await asyncio.gather(*(one(label) for label in labels.labels)))

    return engine.result(engine.run(every()))


@dataclass(frozen=True)
class Agreement:
    both_correct: int  # human CORRECT, judge CORRECT
    both_incorrect: int
    judge_only_correct: int  # the judge passed what a person failed
    human_only_correct: int  # the judge failed what a person passed
    ungraded: int

    @property
    def graded(self) -> int:
        return (self.both_correct + self.both_incorrect + self.judge_only_correct
                + self.human_only_correct)  # fmt: skip

    @property
    def rate(self) -> float | None:
        return (self.both_correct + self.both_incorrect) / self.graded if self.graded else None

    @property
    def kappa(self) -> float | None:
        """Cohen's kappa; None when chance alone explains it all (one class only)."""
        n = self.graded
        if not n:
            return None
        human_yes = (self.both_correct + self.human_only_correct) / n
        judge_yes = (self.both_correct + self.judge_only_correct) / n
        chance = human_yes * judge_yes + (1 - human_yes) * (1 - judge_yes)
        if chance == 1:
            return None
        assert self.rate is not None
        return (self.rate - chance) / (1 - chance)


def agreement(results: list[Graded]) -> Agreement:
    def count(human: str, judge: str | None) -> int:
        return sum(r.label.human == human and r.judge == judge for r in results)

    return Agreement(
        both_correct=count("CORRECT", "CORRECT"),
        both_incorrect=count("INCORRECT", "INCORRECT"),
        judge_only_correct=count("INCORRECT", "CORRECT"),
        human_only_correct=count("CORRECT", "INCORRECT"),
        ungraded=sum(r.judge is None for r in results),
    )
