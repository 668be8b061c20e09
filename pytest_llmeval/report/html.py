"""The run as one self-contained HTML page (`--llm-html`, `llmeval report --html`): the
gate's decision, per suite the model table and its charts, per-field accuracy, the
comparison with a reference model and a baseline, and every case's answer, filterable.
Styles, charts and script are inline, so the file opens from disk, fetches nothing and
prints."""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Mapping, Sequence
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pytest_llmeval.report import charts
from pytest_llmeval.report.view import (
    BASELINE_HEADER,
    GateLine,
    baseline_rows,
    change_lines,
    cost_at_heading,
    cost_at_table,
    gate_lines,
    paired_table,
    pct,
    price_text,
    repeat_table,
    suite_table,
    threshold_heading,
)
from pytest_llmeval.results.baseline import Change
from pytest_llmeval.results.gate import Decision, GateState
from pytest_llmeval.results.records import Record, Summary
from pytest_llmeval.results.saved_run import SavedRun
from pytest_llmeval.support.files import write_atomically

OUTCOME_LABEL = {"pass": "PASS", "miss": "MISS", "error": "ERROR"}


def render(saved: SavedRun, decision: Decision, cost_at: int | None = None) -> str:
    """The page of a run (its provenance, models and answers) and what was decided of it;
    with ``cost_at`` (--llm-cost-at), each suite's models' cost at that many requests."""
    suites = [suite for suite, _ in decision.suites()]
    models = list(dict.fromkeys(s.model for s in decision.summaries))
    changes = decision.changes
    body = [
        _header(saved, decision.state, gate_lines(decision)),
        _nav(suites, baseline=bool(changes)),
    ]
    projected = None if cost_at is None else (cost_at, saved.models)
    for suite, rows in decision.suites():
        body.append(_suite(decision, suite, rows, models, projected))
    if changes:
        body.append(_baseline(changes))
    body.append(_cases(saved.records, suites, models))
    body.append(_models(saved.models))
    title = f"pytest-llmeval: {', '.join(suites)}"
    return PAGE.format(title=escape(title), style=STYLE, body="\n".join(body), script=SCRIPT)


def write(path: Path, page: str) -> str | None:
    """Write the page; what went wrong, if anything (a report is not worth failing a run)."""
    try:
        write_atomically(path, page)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return None


def _nav(suites: Sequence[str], *, baseline: bool) -> str:
    places = [(_anchor(suite), suite) for suite in suites]
    places += [("baseline", "baseline")] if baseline else []
    places += [("cases", "cases"), ("models", "models")]
    return "<nav>" + "".join(f"<a href='#{a}'>{escape(t)}</a>" for a, t in places) + "</nav>"


# The decision as the page heads it, and the style of its box.
GATE_HEADING: dict[GateState, tuple[str, str]] = {
    "FAILED": ("failed", "Gate FAILED"),
    "passed": ("passed", "Gate passed"),
    "not set": ("unset", "No gate"),
}


def _header(saved: SavedRun, state: GateState, decision: Sequence[GateLine]) -> str:
    run = saved.provenance
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.started_at))
    facts = [("run", run.run_id[:8]), ("started", started)]
    if run.commit:
        facts.append(("commit", run.commit[:10] + (f" ({run.branch})" if run.branch else "")))
    if run.ci:
        facts.append(("CI", f"{run.ci.get('provider', '')} {run.ci.get('run_id', '')}"))
    if saved.exit_status is not None:
        facts.append(("pytest exit status", str(saved.exit_status)))
    facts.append(("pytest-llmeval", run.plugin_version))
    style, verdict = GATE_HEADING[state]
    lines = "".join(f"<li>{escape(line.text)}</li>" for line in decision)
    return (
        "<header><h1>pytest-llmeval report</h1><dl class='facts'>"
        + "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in facts)
        + f"</dl><section class='gate {style}' id='gate'><h2>{verdict}</h2><ul>{lines}</ul>"
        "</section></header>"
    )


def _suite(
    decision: Decision,
    suite: str,
    rows: Sequence[Summary],
    models: Sequence[str],
    projected: tuple[int, Mapping[str, Any]] | None,
) -> str:
    """``projected``: the requests of --llm-cost-at and what the run says of its models."""
    comparisons = decision.comparisons_in(suite)
    threshold = rows[0].threshold
    table = _table(suite_table(rows), link=(suite, [s.model for s in rows]))
    figures = [
        charts.accuracy(rows, threshold, models),
        charts.latency(rows, models),
        charts.cost_accuracy(rows, models),
    ]
    fields = list(dict.fromkeys(name for s in rows for name in s.field_rates))
    if fields:  # beside the cost chart, where the grid has room
        figures.append(
            "<div class='per-field'><h3>Accuracy per field</h3>" + _fields(fields, rows) + "</div>"
        )
    parts = [
        f"<section class='suite' id='{_anchor(suite)}'><h2>{escape(suite)} "
        f"<small>({escape(threshold_heading(decision, rows))})</small></h2>",
        table,
        f"<div class='charts'>{''.join(figures)}</div>",
    ]
    if projected is not None:
        requests, described = projected
        parts.append(f"<h3>Cost {escape(cost_at_heading(requests).rstrip(':'))}</h3>")
        parts.append(_table(cost_at_table(rows, described, requests)))
    if any(s.repeats > 1 for s in rows):
        parts.append(f"<h3>Each case asked {max(s.repeats for s in rows)} times</h3>")
        parts.append(_table(repeat_table(rows)))
    if comparisons and len(rows) > 1:
        table_rows, verdicts = paired_table(comparisons)
        parts.append(f"<h3>Against {escape(comparisons[0].reference)} (reference), on the cases "
                     "both answered</h3>")  # fmt: skip
        if len(table_rows) > 1:
            parts.append(_table(table_rows))
        parts.append("<ul class='verdicts'>" + "".join(
            f"<li>{escape(v)}</li>" for v in verdicts) + "</ul>")  # fmt: skip
    parts.append("</section>")
    return "\n".join(parts)


def _fields(fields: Sequence[str], rows: Sequence[Summary]) -> str:
    """Per field, each model's share right, as a number and a bar."""
    head = "".join(f"<th>{escape(s.model)}</th>" for s in rows)
    body = []
    for name in fields:
        cells = []
        for s in rows:
            rate = s.field_rates.get(name)
            bar = (
                ""
                if rate is None
                else f"<span class='fill' style='width:{rate * 100:.1f}%'></span>"
            )
            cells.append(f"<td class='num rate'>{bar}<span>{pct(rate)}</span></td>")
        body.append(f"<tr><th scope='row'>{escape(name)}</th>{''.join(cells)}</tr>")
    return (
        f"<table class='fields'><thead><tr><th>field</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _baseline(changes: Sequence[Change]) -> str:
    lines = [f"<li>{escape(line)}</li>" for line in change_lines(changes)]
    return (
        "<section id='baseline'><h2>Against the baseline</h2>"
        + _table([BASELINE_HEADER, *baseline_rows(changes)])
        + (f"<ul>{''.join(lines)}</ul>" if lines else "")
        + "</section>"
    )


def _models(models: dict[str, dict[str, Any]]) -> str:
    """What each name stood for: the model id, the server (its host only), parameters, price
    and where it came from."""
    rows = []
    for name, spec in models.items():
        endpoint = urlsplit(spec.get("endpoint") or "")
        rows.append((
            name, str(spec.get("model", "")), endpoint.netloc + endpoint.path or "-",
            json.dumps(spec.get("params") or {}, ensure_ascii=False), price_text(spec),
        ))  # fmt: skip
    return (
        "<section id='models'><h2>Models</h2>"
        + _table([("name", "model", "endpoint", "parameters", "price"), *rows], numbers=False)
        + "</section>"
    )


def _cases(records: Sequence[Record], suites: Sequence[str], models: Sequence[str]) -> str:
    """Every answer, misses and errors shown first; filtered in the page by its script."""
    order = {"miss": 0, "error": 1, "pass": 2}
    ordered = sorted(records, key=lambda r: (order[r.outcome], r.suite, r.case, r.model, r.repeat))
    fields = sorted({name for r in records for name, ok in r.fields.items() if not ok})
    counts = {o: sum(r.outcome == o for r in records) for o in order}
    outcome_choices = [
        ("problems", f"misses and errors ({counts['miss'] + counts['error']})"),
        ("miss", f"misses ({counts['miss']})"),
        ("error", f"errors ({counts['error']})"),
        ("pass", f"passes ({counts['pass']})"),
        ("", f"all ({len(records)})"),
    ]
    filters = (
        _select("model", "model", [("", "all")] + [(m, m) for m in models])
        + _select("suite", "suite", [("", "all")] + [(s, s) for s in suites])
        + _select("field", "field wrong", [("", "any")] + [(f, f) for f in fields])
        + _select("outcome", "outcome", outcome_choices)
        + "<label>text <input type='search' data-filter='text' "
        "placeholder='case, answer, reasoning'></label>"
        "<button type='button' id='expand'>expand all</button>"
        "<span id='shown' aria-live='polite'></span>"
    )
    entries = "\n".join(_case(r) for r in ordered)
    return (
        "<section id='cases'><h2>Cases</h2>"
        f"<form class='filters' onsubmit='return false'>{filters}</form>"
        f"<p class='printed-filter' id='printed-filter'></p>"
        f"<div id='case-list'>{entries}</div></section>"
    )


def _select(name: str, label: str, choices: Sequence[tuple[str, str]]) -> str:
    options = "".join(f"<option value='{escape(v)}'>{escape(text)}</option>" for v, text in choices)
    return f"<label>{escape(label)} <select data-filter='{name}'>{options}</select></label>"


def _case(record: Record) -> str:
    wrong = [name for name, ok in record.fields.items() if not ok]
    chips = "".join(
        f"<span class='chip {'ok' if ok else 'bad'}'>{'✓' if ok else '✗'} {escape(name)}</span>"
        for name, ok in record.fields.items()
    )
    searchable = " ".join(
        [record.case, record.answer or "", record.reason, *record.diff,
         *(str(g.get("reasoning") or "") for g in record.judge_grades)]
    ).lower()  # fmt: skip
    diff = "".join(f"<li>{escape(line)}</li>" for line in record.diff)
    grades = "".join(
        f"<div class='grade'><b>judge{' · ' + escape(g['field']) if g.get('field') else ''}: "
        f"{escape(str(g.get('grade') or 'no grade'))}</b> {escape(str(g.get('reasoning') or ''))}"
        "</div>"
        for g in record.judge_grades
    )
    figures = " · ".join(
        part
        for part in (
            f"{record.latency_s:.2f}s" if record.latency_s is not None else "",
            f"{record.input_tokens or 0:,} → {record.output_tokens or 0:,} tokens"
            if record.input_tokens is not None
            else "",
            "replayed" if record.cached else "",
            f"repeat {record.repeat + 1}" if record.repeat else "",
        )
        if part
    )
    attrs = {
        "data-case": record.case,
        "data-model": record.model,
        "data-suite": record.suite,
        "data-outcome": record.outcome,
        "data-wrong": json.dumps(wrong, ensure_ascii=False),
        "data-text": searchable,
    }
    attributes = " ".join(f'{name}="{escape(value)}"' for name, value in attrs.items())
    hidden = " hidden" if record.outcome == "pass" else ""  # the default filter, without script
    return (
        f"<article class='case {record.outcome}' {attributes}{hidden}>"
        f"<div class='line'><span class='badge'>{OUTCOME_LABEL[record.outcome]}</span>"
        f"<b class='case-id'>{escape(record.case)}</b>"
        f"<span class='model-name'>{escape(record.model)}</span>"
        f"<span class='suite-name'>{escape(record.suite)}</span>"
        f"<code class='where'>{escape(record.location)}</code>"
        f"<span class='figures'>{escape(figures)}</span></div>"
        + (f"<div class='reason'>{escape(record.reason)}</div>" if record.reason else "")
        + (f"<div class='chips'>{chips}</div>" if chips else "")
        + (f"<ul class='diff'>{diff}</ul>" if diff else "")
        + grades
        + "<button type='button' class='more-toggle'>expected and answer</button>"
        + f"<div class='more' hidden>{_sides(record)}</div></article>"
    )


def _sides(record: Record) -> str:
    """Expected beside the answer, the lines where they differ marked on each side."""
    expected = json.dumps(record.expected, indent=2, ensure_ascii=False).splitlines()
    if record.parsed is not None:
        answer = json.dumps(record.parsed, indent=2, ensure_ascii=False).splitlines()
        said = "answer (parsed)"
    else:
        answer = (record.answer or "(no answer)").splitlines() or [""]
        said = "answer (as given)"
    left: list[str] = []
    right: list[str] = []
    matcher = difflib.SequenceMatcher(a=expected, b=answer, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        mark = "" if op == "equal" else " class='changed'"
        left += [f"<span{mark}>{escape(line)}</span>" for line in expected[a0:a1]]
        right += [f"<span{mark}>{escape(line)}</span>" for line in answer[b0:b1]]
    return (
        f"<div class='side'><h4>expected</h4><pre class='expected'>{chr(10).join(left)}</pre></div>"
        f"<div class='side'><h4>{said}</h4><pre class='answer'>{chr(10).join(right)}</pre></div>"
    )


def _table(
    rows: Sequence[Sequence[str]],
    *,
    numbers: bool = True,
    link: tuple[str, Sequence[str]] | None = None,
) -> str:
    """A table of the rows, the first its header; with ``numbers``, every column after the
    first is right-aligned; with ``link`` (suite, each row's model), the miss and error
    counts open the cases of that suite and model."""
    header, *body_rows = rows

    def cell(i: int, value: str, n: int) -> str:
        numeric = numbers and i > 0
        text = escape(value)
        name = header[i]
        if link is not None and name in ("miss", "error") and value not in ("0", ""):
            suite, models = link
            text = (
                f"<a href='#cases' data-show-suite='{escape(suite)}' "
                f"data-show-model='{escape(models[n])}' data-show-outcome='{name}'>{text}</a>"
            )
        return f"<td{' class=num' if numeric else ''}>{text}</td>"

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(cell(i, v, n) for i, v in enumerate(r)) + "</tr>"
        for n, r in enumerate(body_rows)
    )
    return (
        f"<div class='table'><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div>"
    )


def _anchor(suite: str) -> str:
    return "suite-" + "".join(c if c.isalnum() else "-" for c in suite)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
{body}
<footer>Written by pytest-llmeval. Self-contained: this file fetches nothing.</footer>
<script>{script}</script>
</body>
</html>
"""

STYLE = resources.files(__package__).joinpath("report.css").read_text(encoding="utf-8")
SCRIPT = resources.files(__package__).joinpath("report.js").read_text(encoding="utf-8")
