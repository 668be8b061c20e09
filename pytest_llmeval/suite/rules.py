"""How a suite says its answers are scored, as the suite file gives it: plain data, which
`scoring/` carries out."""

from __future__ import annotations

from dataclasses import dataclass, field

# Judged fields are not scored by `scoring.fields`: the judge grades them.
FIELD_METHODS = ("exact", "normalized", "numeric", "unordered", "fuzzy_list", "judge")


@dataclass(frozen=True)
class FieldRule:
    method: str = "exact"
    tolerance: float = 0.0  # numeric: the largest difference that still passes
    threshold: float = 0.8  # fuzzy_list: the least similarity (0..1) of matched items


@dataclass(frozen=True)
class JudgeConfig:
    model: str | None = None  # a model name, as in --llm-models; None: --llm-judge-model
    criteria: str = ""  # added to the default prompt
    prompt: str | None = None  # a whole template instead, with {input} {reference} {answer}
    # Or chat turns, few-shot examples included (a base model grades by example, not by
    # instruction): (role, content) pairs, the same placeholders in their contents.
    messages: tuple[tuple[str, str], ...] = ()
    # Judge only what the structural check does not already pass (an exact match needs no
    # judge, and costs nothing).
    only_when_different: bool = True
    # The line of `model:` in the file that names it, for a check against the model table.
    model_line: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Scoring:
    method: str = "structural"  # structural | judge (the whole answer) | fields
    ignore_order: bool = False
    ignore_string_case: bool = False
    numeric_tolerance: float = 0.0
    exclude_paths: tuple[str, ...] = ()
    # method "fields": a rule per top-level field; fields without one compare structurally.
    fields: tuple[tuple[str, FieldRule], ...] = ()
    judge: JudgeConfig = field(default_factory=JudgeConfig)

    @property
    def uses_judge(self) -> bool:
        return self.method == "judge" or any(r.method == "judge" for _, r in self.fields)
