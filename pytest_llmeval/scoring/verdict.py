"""Scoring: turn a model's answer into a Verdict against the golden case."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["pass", "miss"]


@dataclass(frozen=True)
class Verdict:
    """How one answer fared: pass or miss, a 0..1 score, per-field results and a readable diff."""

    outcome: Outcome
    score: float
    fields: dict[str, bool] = field(default_factory=dict)
    reason: str = ""
    diff: tuple[str, ...] = ()
    answer: Any = None

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"
