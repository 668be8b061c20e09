"""Structural scoring: parse the answer as JSON and diff it against the expected value."""

from __future__ import annotations

import json
import re
from typing import Any

from deepdiff import DeepDiff

from pytest_llmeval.scoring.verdict import Verdict
from pytest_llmeval.suite.rules import Scoring
from pytest_llmeval.support.text import elide_middle

# A JSON value wrapped in a Markdown code fence, as chat models often answer.
FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)\s*```", re.DOTALL)
SHOWN = 80


class InvalidJSON(ValueError):
    pass


def parse_answer(text: str) -> Any:
    """The JSON value in ``text``: bare, in a code fence, or the first object or array
    inside surrounding prose ("Here it is: {...}"). Raises InvalidJSON."""
    stripped = text.strip()
    if not stripped:
        raise InvalidJSON("empty answer")
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        first = exc
    fenced = FENCE.search(text)
    if fenced is not None:
        try:
            return json.loads(fenced.group(1))
        except json.JSONDecodeError as inner:
            raise InvalidJSON(f"invalid JSON in the fenced block ({inner.msg})") from None
    starts = [i for i in (stripped.find("{"), stripped.find("[")) if i >= 0]
    if starts:
        try:
            return json.JSONDecoder().raw_decode(stripped, min(starts))[0]
        except json.JSONDecodeError:
            pass
    raise InvalidJSON(f"invalid JSON ({first.msg} at line {first.lineno} column {first.colno})")


def score(expected: Any, text: str, options: Scoring) -> Verdict:
    """Score the raw answer ``text`` against ``expected`` under the suite's options."""
    try:
        answer = parse_answer(text)
    except InvalidJSON as exc:
        fields = dict.fromkeys(_field_names(expected, options), False)
        return Verdict("miss", 0.0, fields, str(exc), (f"raw answer: {elide_middle(text, SHOWN)}",))
    return score_value(expected, answer, options)


def score_value(expected: Any, answer: Any, options: Scoring) -> Verdict:
    """Score an answer already in hand as a value (parsed JSON, or a free-text string)."""
    diff = _diff(expected, answer, options)
    fields = {
        name: isinstance(answer, dict)
        and name in answer
        and not _diff(expected[name], answer[name], options, under=name)
        for name in _field_names(expected, options)
    }
    lines = tuple(_describe(diff, expected, answer))
    if not lines:
        return Verdict("pass", 1.0, fields, "", (), answer)
    share = sum(fields.values()) / len(fields) if fields else 0.0
    count = f"{len(lines)} difference{'s' if len(lines) > 1 else ''}"
    return Verdict("miss", share, fields, count, lines, answer)


def _field_names(expected: Any, options: Scoring) -> list[str]:
    if not isinstance(expected, dict):
        return []
    excluded = {_root_path(p) for p in options.exclude_paths}
    return [name for name in expected if _root_path(name) not in excluded]


def _root_path(path: str) -> str:
    """Accept deepdiff paths (``root['a'][0]``) and plain top-level field names (``a``)."""
    return path if path.startswith(("root[", "root.")) else f"root[{path!r}]"


def _diff(expected: Any, answer: Any, options: Scoring, under: str | None = None) -> DeepDiff:
    excluded = [_root_path(p) for p in options.exclude_paths]
    if under is not None:
        # Comparing one field on its own: re-root the exclusions that fall inside it.
        prefix = _root_path(under)
        excluded = ["root" + p[len(prefix) :] for p in excluded if p.startswith(prefix + "[")]
    return DeepDiff(
        expected,
        answer,
        ignore_order=options.ignore_order,
        ignore_string_case=options.ignore_string_case,
        # 2 equals 2.0, but true does not equal 1: bool is a subclass of int, and without
        # ignore_type_subclasses deepdiff would put it in the numbers' group.
        ignore_type_in_groups=[(int, float)],
        ignore_type_subclasses=True,
        math_epsilon=options.numeric_tolerance or None,
        exclude_paths=excluded or None,
        view="tree",
    )


def _describe(diff: DeepDiff, expected: Any, answer: Any) -> list[str]:
    lines = []
    for kind, changes in diff.items():
        for change in changes:
            parts = change.path(output_format="list")
            # Values are read back from the originals: deepdiff reports strings
            # lower-cased under ignore_string_case, which is not what either side said.
            # Under ignore_order the two sides' indexes differ: each side has its own path.
            new_parts = change.path(output_format="list", use_t2=True)
            old, new = _at(expected, parts, change.t1), _at(answer, new_parts, change.t2)
            where, parent = _path(parts), _path(parts[:-1])
            if kind in ("values_changed", "type_changes"):
                lines.append(f"{where}: expected {_show(old)}, got {_show(new)}")
            elif kind == "dictionary_item_added":
                lines.append(f"{where}: unexpected field, got {_show(new)}")
            elif kind == "dictionary_item_removed":
                lines.append(f"{where}: missing, expected {_show(old)}")
            elif kind == "iterable_item_added":
                lines.append(f"{parent}: unexpected item {_show(new)}")
            elif kind == "iterable_item_removed":
                lines.append(f"{parent}: missing item {_show(old)}")
            else:
                lines.append(f"{where}: {kind.replace('_', ' ')}")
    return sorted(lines)


def _at(value: Any, parts: list[Any], fallback: Any) -> Any:
    try:
        for part in parts:
            value = value[part]
    except (KeyError, IndexError, TypeError):
        return fallback
    return value


def _path(parts: list[Any]) -> str:
    if not parts:
        return "(whole answer)"
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.removeprefix(".")


def _show(value: Any) -> str:
    return elide_middle(json.dumps(value, ensure_ascii=False), SHOWN)
