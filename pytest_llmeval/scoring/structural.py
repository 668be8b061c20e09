"""Structural scoring: parse the answer as JSON and diff it against the expected value."""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

from pytest_llmeval.scoring.verdict import Verdict
from pytest_llmeval.suite.rules import Scoring
from pytest_llmeval.support.bounds import MAX_ANSWER_CHARS, MAX_DEPTH, MAX_NUMBER_DIGITS, over_limit
from pytest_llmeval.support.text import elide_middle, shorten

if TYPE_CHECKING:
    from deepdiff import DeepDiff

SHOWN = 80

# DeepDiff's own budgets. Comparisons: one for each pair of values visited, candidates
# weighed for pairing included (100 items, 60 changed: 18,363). Pairing passes: one each
# time two unordered lists with changed items are paired, doubling with each level of
# lists within lists (17 levels: 124 s unbounded). Past either, DeepDiff stops pairing
# or comparing: what it found is the diff, and the miss says it was compared in part.
MAX_COMPARISONS = 20_000
MAX_PAIRING_PASSES = 50
# Differences listed in a miss's diff; the reason still counts them all.
MAX_DIFF_LINES = 100

# In the answer's text: a string (its brackets and digits are not structure), a bracket,
# or a number. Strings unroll (no backtracking); an unterminated one runs to the end.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]|-?\d[\d.eE+-]*')
_DIGIT = re.compile(r"\d")
_BUDGET = (
    f"DeepDiff stops at {MAX_COMPARISONS:,} comparisons and {MAX_PAIRING_PASSES} pairing passes"
)


class InvalidJSON(ValueError):
    pass


class OverLimit(InvalidJSON):
    """An answer past one of the bounds above: a miss without parsing further."""


def parse_answer(text: str) -> Any:
    """The JSON value in ``text``: bare, in a code fence, or the first object or array
    inside surrounding prose ("Here it is: {...}"). Raises InvalidJSON (OverLimit past a
    bound: no JSON is parsed that would recurse too deep or hold too long a number)."""
    if len(text) > MAX_ANSWER_CHARS:
        raise OverLimit(f"answer longer than {MAX_ANSWER_CHARS:,} characters")
    stripped = text.strip()
    if not stripped:
        raise InvalidJSON("empty answer")
    try:
        return _loads(stripped)
    except json.JSONDecodeError as exc:
        first = exc
    fenced = _fenced(text)
    if fenced is not None:
        try:
            return _loads(fenced)
        except json.JSONDecodeError as inner:
            raise InvalidJSON(f"invalid JSON in the fenced block ({inner.msg})") from None
    starts = [i for i in (stripped.find("{"), stripped.find("[")) if i >= 0]
    if starts:
        try:
            return _loads(stripped, min(starts))
        except json.JSONDecodeError:
            pass
    raise InvalidJSON(f"invalid JSON ({first.msg} at line {first.lineno} column {first.colno})")


def _fenced(text: str) -> str | None:
    """The body of the first Markdown code fence (```json ... ```), stripped.

    Found with str.find, not a regular expression: a pattern with a lazy body between
    optional spaces backtracks cubically on an unclosed fence followed by spaces (4,000
    spaces took 33 s)."""
    start = text.find("```")
    if start < 0:
        return None
    body = start + 3
    if text.startswith(("json", "JSON"), body):
        body += 4
    end = text.find("```", body)
    return None if end < 0 else text[body:end].strip()


def _loads(text: str, start: int | None = None) -> Any:
    """json.loads (or, from ``start``, the first value there), once the value json would
    read is scanned for depth and number length; then held to the other bounds (its
    lists, its values). NaN and infinities are not JSON."""
    at = len(text) - len(text.lstrip()) if start is None else start
    over = _scan(text, at)
    if over is not None:
        raise OverLimit(over)
    decoder = json.JSONDecoder(parse_constant=_not_a_number, parse_float=_finite)
    try:
        value = decoder.decode(text) if start is None else decoder.raw_decode(text, start)[0]
    except _NotFinite as exc:
        raise OverLimit(str(exc)) from None
    over = over_limit(value)
    if over is not None:
        raise OverLimit(over)
    return value


def _scan(text: str, start: int) -> str | None:
    """Which bound the JSON value starting at ``start`` passes, if any: its nesting, or a
    number's length. Tokens are read as json reads them (strings whole), up to where the
    value's brackets close; json's recursion is never deeper than the brackets open here."""
    depth = 0
    for token in _TOKEN.finditer(text, start):
        first = token.group()[0]
        if first in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return f"answer nested deeper than {MAX_DEPTH} levels"
        elif first in "]}":
            depth -= 1
        elif first != '"' and len(_DIGIT.findall(token.group())) > MAX_NUMBER_DIGITS:
            return f"answer has a number longer than {MAX_NUMBER_DIGITS} digits"
        if depth <= 0:
            return None
    return None


class _NotFinite(ValueError):
    pass


def _not_a_number(name: str) -> Any:
    raise _NotFinite(f"answer has {name}, which is not a JSON number")


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _NotFinite(f"answer has a number out of range ({shorten(literal, 30)})")
    return value


def score(expected: Any, text: str, options: Scoring) -> Verdict:
    """Score the raw answer ``text`` against ``expected`` under the suite's options."""
    try:
        answer = parse_answer(text)
    except InvalidJSON as exc:
        return _unscored(expected, options, str(exc), f"raw answer: {elide_middle(text, SHOWN)}")
    return score_value(expected, answer, options)


def score_value(expected: Any, answer: Any, options: Scoring) -> Verdict:
    """Score an answer already in hand as a value (parsed JSON, or a free-text string)."""
    over = over_limit(answer) or over_limit(expected, "expected")
    if over is not None:
        return _unscored(expected, options, over)
    names = _field_names(expected, options)
    if not options.exclude_paths and _same(expected, answer, options):
        return Verdict("pass", 1.0, dict.fromkeys(names, True), "", (), answer)
    diff = _diff(expected, answer, options)
    stats = diff.get_stats()  # type: ignore[no-untyped-call]
    partial = bool(stats.get("MAX DIFF LIMIT REACHED") or stats.get("MAX PASS LIMIT REACHED"))
    changed = {parts[0] for parts in _change_paths(diff) if parts}
    fields = {
        name: isinstance(answer, dict)
        and name in answer
        and name not in changed
        # DeepDiff stopped early: a field it did not get to passes only if plainly equal.
        and (not partial or _same(expected[name], answer[name], options))
        for name in names
    }
    lines = _describe(diff, expected, answer)
    if not lines and not partial:
        return Verdict("pass", 1.0, fields, "", (), answer)
    share = sum(fields.values()) / len(fields) if fields else 0.0
    if not lines:
        reason = f"answer too large to compare ({_BUDGET})"
        return Verdict("miss", share, fields, reason, (), answer)
    reason = f"{len(lines)} difference{'s' if len(lines) > 1 else ''}"
    if len(lines) > MAX_DIFF_LINES:
        lines[MAX_DIFF_LINES:] = [f"… and {len(lines) - MAX_DIFF_LINES:,} more differences"]
    if partial:
        reason += f" (compared in part: {_BUDGET})"
    return Verdict("miss", share, fields, reason, tuple(lines), answer)


def _same(expected: Any, answer: Any, options: Scoring) -> bool:
    """Plainly equal under the options, without DeepDiff: in one canonical form (integral
    floats as ints, strings lower-cased under ignore_string_case, lists sorted under
    ignore_order), the same JSON. Equal here is equal to DeepDiff (the converse need not
    hold: a numeric tolerance, or a repeated item under ignore_order, is DeepDiff's to
    judge), so an answer that is right is passed in linear time, however large."""
    try:
        return _canonical(expected, options) == _canonical(answer, options)
    except (TypeError, ValueError):  # not plain JSON (a Python value): DeepDiff decides
        return False


def _canonical(value: Any, options: Scoring) -> str:
    return json.dumps(_normal(value, options), sort_keys=True, ensure_ascii=False)


def _normal(value: Any, options: Scoring) -> Any:
    """The canonical form of a plain JSON value; TypeError for anything else (a tuple, a
    str subclass, a set: types DeepDiff tells apart where JSON would not)."""
    kind = type(value)
    if kind is dict:
        if not all(type(key) is str for key in value):
            raise TypeError("keys that JSON would turn into strings")
        return {key: _normal(item, options) for key, item in value.items()}
    if kind is list:
        items = [_normal(item, options) for item in value]
        if options.ignore_order:
            items.sort(key=lambda item: json.dumps(item, sort_keys=True, ensure_ascii=False))
        return items
    if kind is float:
        return int(value) if value.is_integer() else value
    if kind is str:
        return value.lower() if options.ignore_string_case else value  # as DeepDiff does
    if value is None or kind in (int, bool):
        return value
    raise TypeError(f"not a JSON value: {kind.__name__}")


def _unscored(expected: Any, options: Scoring, reason: str, *diff: str) -> Verdict:
    """A miss before any comparison: not JSON, or past a bound. Every field missed."""
    fields = dict.fromkeys(_field_names(expected, options), False)
    return Verdict("miss", 0.0, fields, reason, diff)


def _field_names(expected: Any, options: Scoring) -> list[str]:
    if not isinstance(expected, dict):
        return []
    excluded = {_root_path(p) for p in options.exclude_paths}
    return [name for name in expected if _root_path(name) not in excluded]


def _root_path(path: str) -> str:
    """Accept deepdiff paths (``root['a'][0]``) and plain top-level field names (``a``)."""
    return path if path.startswith(("root[", "root.")) else f"root[{path!r}]"


def _diff(expected: Any, answer: Any, options: Scoring) -> DeepDiff:
    # Imported here: deepdiff brings numpy and pydantic, a quarter of a second that every
    # pytest run would pay at start-up, most of them never explaining a miss.
    from deepdiff import DeepDiff

    excluded = [_root_path(p) for p in options.exclude_paths]
    return DeepDiff(
        # Integral floats as ints: 2.0 hashes as 2 under ignore_order, so it needs no
        # pairing pass (which the pass budget may have spent) to equal 2.
        _integral(expected),
        _integral(answer),
        ignore_order=options.ignore_order,
        ignore_string_case=options.ignore_string_case,
        # 2 equals 2.0, but true does not equal 1: bool is a subclass of int, and without
        # ignore_type_subclasses deepdiff would put it in the numbers' group.
        ignore_type_in_groups=[(int, float)],
        ignore_type_subclasses=True,
        math_epsilon=options.numeric_tolerance or None,
        exclude_paths=excluded or None,
        max_diffs=MAX_COMPARISONS,
        max_passes=MAX_PAIRING_PASSES,
        view="tree",
    )


def _integral(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _change_paths(diff: DeepDiff) -> list[list[Any]]:
    return [change.path(output_format="list") for changes in diff.values() for change in changes]


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
    try:  # a Python value handed to llmeval.score may hold what JSON cannot (a set)
        shown = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):  # keys JSON has no form for; a value that holds itself
        shown = repr(value)
    return elide_middle(shown, SHOWN)
