"""Suites checked as a set, calling no model (`llmeval validate`): each file by the loader
pytest collects with, so the two agree; then what no one file can know: a case id given
in two files, and a judge model that the model table does not name."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pytest_llmeval.suite.load import CaseFileError, load_suite
from pytest_llmeval.suite.model import Suite, is_suite_file
from pytest_llmeval.support.problems import Problem

# Folders pytest does not collect from by default (its `norecursedirs`).
SKIPPED_DIRS = ("*.egg", ".*", "_darcs", "build", "CVS", "dist", "node_modules", "venv", "{arch}")


@dataclass
class Validation:
    suites: int = 0
    cases: int = 0
    problems: list[Problem] = field(default_factory=list)

    def summary(self) -> str:
        counted = f"{_count(self.suites, 'suite')}, {_count(self.cases, 'case')}"
        if not self.problems:
            return f"{counted}: no problems"
        return f"{counted}: {_count(len(self.problems), 'problem')}"


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def suite_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The suite files named, and those under the folders named, in a stable order."""
    for path in paths:
        if path.is_dir():
            yield from sorted(_walk(path))
        elif is_suite_file(path) or not path.exists():
            yield path  # a missing file is a problem for the loader to say


def _walk(folder: Path) -> Iterator[Path]:
    for entry in folder.iterdir():
        if entry.is_dir():
            if not any(fnmatch.fnmatch(entry.name, skipped) for skipped in SKIPPED_DIRS):
                yield from _walk(entry)
        elif is_suite_file(entry):
            yield entry


def validate(
    files: Iterable[Path], known_model: Callable[[str], bool], shown: Callable[[Path], str]
) -> Validation:
    """Every problem of every file, each located. ``known_model(name)``: whether a judge
    model of that name can be run; ``shown(path)``: a path as the person can open it."""
    found = Validation()
    first: dict[str, tuple[Path, str, int]] = {}  # case id: (its suite file, shown, line)
    for path in files:
        display = shown(path)
        try:
            suite = load_suite(path, display=display)
        except CaseFileError as exc:
            found.problems += exc.problems
            continue
        found.suites += 1
        found.cases += len(suite.cases)
        found.problems += _judge_problems(suite, display, known_model)
        # A suite borrowing another's cases (`cases_from`) has that file's cases: the same.
        case_file = shown(suite.path)
        for case in suite.cases:
            before = first.setdefault(case.id, (suite.path, case_file, case.line))
            if before[0] != suite.path:
                found.problems.append(
                    Problem(
                        f"case {case.id!r}: the same id as a case of another file "
                        f"({before[1]}:{before[2]})",
                        case_file,
                        case.line,
                    )
                )
    return found


def _judge_problems(
    suite: Suite, display: str, known_model: Callable[[str], bool]
) -> list[Problem]:
    judge = suite.scoring.judge
    if judge.model is None or known_model(judge.model):
        return []
    return [
        Problem(
            f"`scoring.judge.model: {judge.model}` is not in [tool.llmeval.models] and is "
            "not an OpenAI model name",
            display,
            judge.model_line,
        )
    ]
