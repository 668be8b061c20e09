"""The summary of ``--llm-update-goldens``: each case whose golden was written, each one
skipped with the reason, and the files that could not be rewritten."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pytest_llmeval.results.goldens import Plan


@dataclass(frozen=True)
class GoldenReport:
    plan: Plan
    mode: str  # missing or all

    def lines(self) -> Iterator[tuple[str, bool]]:
        """Each line with whether it is a warning."""
        head = f"llmeval goldens (--llm-update-goldens={self.mode})"
        plan = self.plan
        if plan.withheld is not None:
            yield f"{head}: nothing written: {plan.withheld}", True
            return
        if not plan.choices:
            wanted = "lacked a golden" if self.mode == "missing" else "lacked a golden or missed"
            yield f"{head}: nothing to write: no case run {wanted}", False
            return
        skipped = len(plan.choices) - plan.written
        review = "; review them with git diff before committing" if plan.written else ""
        yield f"{head}: {plan.written} written, {skipped} skipped{review}", bool(skipped)
        for choice in plan.choices:
            where = f"{choice.file}:{choice.line} {choice.case}"
            if choice.written:
                yield (
                    f"  written  {where}" + (f" ({choice.reason})" if choice.reason else ""),
                    False,
                )
            else:
                yield f"  skipped  {where}: {choice.reason}", True
        for problem in plan.problems:
            yield f"llmeval: WARNING: {problem}", True
