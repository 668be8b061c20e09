"""How far a judge agrees with people: human-labelled answers graded by the judge, then
the agreement rate and Cohen's kappa (agreement beyond what chance would give)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pytest_llmeval.engine.client import CallError
from pytest_llmeval.engine.engine import Engine
from pytest_llmeval.models import ModelSpec
from pytest_llmeval.scoring.combined import ToJudge
from pytest_llmeval.scoring.judge import Grade
from pytest_llmeval.scoring.judging import grade
from pytest_llmeval.suite.rules import JudgeConfig
from pytest_llmeval.support.problems import ConfigError, Problem
from pytest_llmeval.support.text import did_you_mean

LABEL_KEYS = frozenset({"id", "input", "reference", "answer", "human", "why"})
FILE_KEYS = frozenset({"description", "field", "criteria", "prompt", "labels"})
GRADES = ("CORRECT", "INCORRECT")


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
    """Read and check a labels file; a LabelFileError names every problem at its line."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise LabelFileError(Problem(str(exc), file)) from None
    if not isinstance(data, dict) or not isinstance(data.get("labels"), list):
        raise LabelFileError(Problem("expected a mapping with a `labels:` list", file))
    assert isinstance(root, yaml.MappingNode)  # as `data` is a mapping
    keys = _key_lines(root)
    problems = [
        Problem(f"unknown key {k!r}{did_you_mean(str(k), FILE_KEYS)}", file, keys.get(str(k)))
        for k in data
        if k not in FILE_KEYS
    ]
    nodes = next(v.value for k, v in root.value if k.value == "labels")
    labels, seen = [], set()
    for n, (entry, node) in enumerate(zip(data["labels"], nodes, strict=True), start=1):
        line = node.start_mark.line + 1
        if not isinstance(entry, dict):
            problems.append(Problem(f"label {n}: must be a mapping", file, line))
            continue
        at = _key_lines(node)
        found = [
            (f"unknown key {k!r}{did_you_mean(str(k), LABEL_KEYS)}", at.get(str(k), line))
            for k in entry
            if k not in LABEL_KEYS
        ]
        missing = [k for k in ("id", "input", "reference", "answer", "human") if k not in entry]
        if missing:
            found.append((f"missing {', '.join(missing)}", line))
        elif entry["human"] not in GRADES:
            found.append(("`human` must be CORRECT or INCORRECT", at.get("human", line)))
        elif entry["id"] in seen:
            found.append(("duplicate id", at.get("id", line)))
        else:
            seen.add(entry["id"])
            labels.append(
                Label(str(entry["id"]), str(entry["input"]), entry["reference"], entry["answer"],
                      entry["human"])
            )  # fmt: skip
        label = entry.get("id", n)
        problems += [Problem(f"label {label!r}: {text}", file, at_line) for text, at_line in found]
    template = data.get("prompt")
    if template is not None and not (
        isinstance(template, str) and "{reference}" in template and "{answer}" in template
    ):
        problems.append(
            Problem("`prompt` must be text with {reference} and {answer}", file, keys.get("prompt"))
        )
    if problems:
        raise LabelFileError(*problems)
    config = JudgeConfig(criteria=str(data.get("criteria", "")), prompt=template)
    return LabelSet(path, tuple(labels), config)


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


def _key_lines(node: yaml.Node) -> dict[str, int]:
    """Each key of a YAML mapping, as written, with its line."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
