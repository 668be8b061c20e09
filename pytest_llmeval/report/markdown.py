"""The summary as Markdown, compact enough for a pull-request comment or a GitHub job
summary: per suite the model table, the gate's decision, the regressions against a
baseline, and the first misses."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_llmeval.report.view import (
    cost_at_heading,
    cost_at_table,
    gate_lines,
    paired_heading,
    paired_table,
    pct,
    price_lines,
    suite_table,
    threshold_heading,
)
from pytest_llmeval.results.gate import Decision

MISSES_SHOWN = 10


def render(
    decision: Decision, models: Mapping[str, Any] | None = None, cost_at: int | None = None
) -> str:
    """``models``: what the results file says of each model, for where prices came from
    and, with ``cost_at`` (--llm-cost-at), each model's cost at that many requests."""
    lines = ["## pytest-llmeval", ""]
    lines += [f"**Gate: {decision.state}**", ""]
    lines += [f"- {_cell(line.text)}" for line in gate_lines(decision)]
    for suite, rows in decision.suites():
        heading = f"### {suite} ({threshold_heading(decision, rows)})"
        lines += ["", heading, "", _table(suite_table(rows))]
        if cost_at is not None:
            lines += ["", cost_at_heading(cost_at), ""]
            lines.append(_table(cost_at_table(rows, models or {}, cost_at)))
        comparisons = decision.comparisons_in(suite)
        if comparisons and len(rows) > 1:
            _, verdicts = paired_table(comparisons)
            lines += ["", paired_heading(comparisons), ""]
            lines += [f"- {_cell(verdict)}" for verdict in verdicts]
    regressed = [c for c in decision.changes if c.newly_failing or (c.drop_points or 0) > 0]
    if regressed:
        lines += ["", "### Against the baseline", ""]
        lines += [
            f"- {c.suite} / {c.model}: {pct(c.before.accuracy)} → {pct(c.now.accuracy)}; "
            f"newly failing: {', '.join(c.newly_failing) or 'none'}"
            for c in regressed
        ]
    misses = [r for s in decision.summaries for r in s.missed()]
    if misses:
        lines += ["", f"### First misses ({min(len(misses), MISSES_SHOWN)} of {len(misses)})", ""]
        for record in misses[:MISSES_SHOWN]:
            diff = "; ".join(record.diff[:3]) + (" …" if len(record.diff) > 3 else "")
            said = "; ".join(part for part in (record.reason, diff) if part)
            lines.append(f"- `{record.case}` [{record.model}] {record.location}: {_cell(said)}")
    prices = price_lines(models or {}, list(dict.fromkeys(s.model for s in decision.summaries)))
    if prices:
        lines += ["", "### Prices", ""] + [f"- {_cell(line)}" for line in prices]
    return "\n".join(lines) + "\n"


def _table(rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table of the rows, the first its header."""
    header, *body = rows
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in body]
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def publish(text: str, path: Path | None) -> list[str]:
    """Write to ``path`` and append to GitHub's job summary; what went wrong, if anything."""
    targets = [(path, "w")] if path is not None else []
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        targets.append((Path(step_summary), "a"))  # other steps write there too
    problems = []
    for target, mode in targets:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open(mode, encoding="utf-8") as out:
                out.write(text)
        except OSError as exc:
            problems.append(f"{target}: {exc.strerror or exc}")
    return problems
