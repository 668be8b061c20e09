"""What ``--llm-update-goldens`` writes: each item's answer as a proposed golden (plain
data that crosses to the xdist controller, as a Record does), and the choice, over every
answer to a case (its repeats, the suites that borrow it), of what is written and what is
not, and why."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

# This answer against the case's golden: passed or missed it, no golden to judge it by
# (`new`), or no answer (the item errored).
Kind = Literal["pass", "miss", "new", "error"]


@dataclass(frozen=True)
class Proposal:
    """One item's answer as the `expected:` of its case."""

    path: str  # the file that spells the case (absolute), where it is written
    file: str  # that file as the person who ran pytest can open it
    line: int
    case: str
    kind: Kind
    golden: bool  # the case has an `expected:`
    value: Any = None
    problem: str | None = None  # why the answer cannot be a golden (no answer, not JSON)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Proposal:
        return cls(**data)


@dataclass(frozen=True)
class Choice:
    """A case's outcome: its golden written (``reason`` then says what it rests on, or
    nothing), or skipped with the reason."""

    path: str
    file: str
    line: int
    case: str
    written: bool
    value: Any = None
    reason: str = ""


@dataclass(frozen=True)
class Plan:
    choices: tuple[Choice, ...] = ()
    # Set when nothing is written at all (an interrupted run), with the reason.
    withheld: str | None = None
    problems: tuple[str, ...] = ()  # files that could not be rewritten

    @property
    def written(self) -> int:
        return sum(choice.written for choice in self.choices)


def choose(proposals: Iterable[Proposal], mode: str) -> list[Choice]:
    """For each case: write when every answer to it agrees on one value (``missing``: only
    cases with no golden; ``all``: those and the ones missed). A case answered differently
    (repeats, or suites that borrow its cases), or passed by some answer, is left alone."""
    groups: dict[tuple[str, str], list[Proposal]] = {}
    for proposal in proposals:
        groups.setdefault((proposal.path, proposal.case), []).append(proposal)
    choices = []
    for answers in groups.values():
        kinds = {p.kind for p in answers}
        if all(p.golden for p in answers) and (mode == "missing" or kinds == {"pass"}):
            continue  # a golden there is to be kept
        first = answers[0]

        def skip(reason: str, first: Proposal = first) -> Choice:
            return Choice(first.path, first.file, first.line, first.case, False, reason=reason)

        passed = sum(p.kind == "pass" for p in answers)
        problem = next((p.problem for p in answers if p.problem is not None), None)
        values = {json.dumps(p.value, sort_keys=True) for p in answers}
        n = len(answers)
        if passed:
            choices.append(skip(f"passed in {passed} of {n} answers: left as it is"))
        elif problem is not None:
            choices.append(skip(problem))
        elif len(values) > 1:
            choices.append(skip(f"its {n} answers disagree ({len(values)} different values): "
                                "left as it is; write it by hand"))  # fmt: skip
        else:
            reason = f"all {n} answers agree" if n > 1 else ""
            choices.append(Choice(first.path, first.file, first.line, first.case, True,
                                  first.value, reason))  # fmt: skip
    return sorted(choices, key=lambda c: (c.file, c.line))


def write(choices: Iterable[Choice]) -> Plan:
    """Each file's chosen goldens written into it; a case the file no longer lets be
    rewritten, or a file that cannot be, becomes a skipped case with the reason."""
    # Here, not at the top: ruamel.yaml would be imported by every pytest run, and only a
    # run that updates goldens writes any.
    from pytest_llmeval.suite.goldens import GoldenFileError, rewrite_file

    chosen = list(choices)
    by_file: dict[str, dict[str, Any]] = {}
    shown: dict[str, str] = {}
    for choice in chosen:
        if choice.written:
            by_file.setdefault(choice.path, {})[choice.case] = choice.value
            shown[choice.path] = choice.file
    refused: dict[tuple[str, str], str] = {}
    problems: list[str] = []
    for path, values in by_file.items():
        try:
            done = rewrite_file(Path(path), values, shown[path])
        except (GoldenFileError, OSError) as exc:
            problems.append(f"{shown[path]}: not rewritten: {exc}" if isinstance(exc, OSError)
                            else str(exc))  # fmt: skip
            refused.update({(path, case): "its file was not rewritten" for case in values})
            continue
        refused.update({(path, case): why for case, why in done.skipped.items()})
    out = [
        replace(c, written=False, value=None, reason=refused[c.path, c.case])
        if c.written and (c.path, c.case) in refused
        else c
        for c in chosen
    ]
    return Plan(tuple(out), problems=tuple(problems))
