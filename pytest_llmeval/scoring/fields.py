"""Per-field scorers: each top-level field of an answer compared its own way."""

from __future__ import annotations

import difflib
import json
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.suite.rules import FieldRule

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


@dataclass(frozen=True)
class FieldResult:
    passed: bool
    detail: str = ""  # why it failed, for the diff


def normalize(text: str) -> str:
    """Case, punctuation and runs of whitespace do not matter."""
    return " ".join(_PUNCTUATION.sub(" ", text.casefold()).split())


def score_field(rule: FieldRule, expected: Any, actual: Any) -> FieldResult:
    """Any method but "judge" (the judge module grades those)."""
    return _SCORERS[rule.method](rule, expected, actual)


def _exact(_rule: FieldRule, expected: Any, actual: Any) -> FieldResult:
    if _same(expected, actual):
        return FieldResult(True)
    return FieldResult(False, f"expected {_show(expected)}, got {_show(actual)}")


def _normalized(rule: FieldRule, expected: Any, actual: Any) -> FieldResult:
    if isinstance(expected, str) and isinstance(actual, str):
        if normalize(expected) == normalize(actual):
            return FieldResult(True)
        return FieldResult(False, f"expected {_show(expected)}, got {_show(actual)} (normalized)")
    return _exact(rule, expected, actual)


def _numeric(rule: FieldRule, expected: Any, actual: Any) -> FieldResult:
    if _is_number(expected) and _is_number(actual):
        gap = abs(float(expected) - float(actual))
        if gap <= rule.tolerance:
            return FieldResult(True)
        return FieldResult(
            False, f"expected {expected} ± {rule.tolerance:g}, got {actual} (off by {gap:g})"
        )
    return _exact(rule, expected, actual)


def _unordered(rule: FieldRule, expected: Any, actual: Any) -> FieldResult:
    if not (isinstance(expected, list) and isinstance(actual, list)):
        return _exact(rule, expected, actual)
    missing, extra = _multiset_difference(expected, actual)
    if not missing and not extra:
        return FieldResult(True)
    return FieldResult(False, _list_detail(missing, extra))


def _fuzzy_list(rule: FieldRule, expected: Any, actual: Any) -> FieldResult:
    """Every expected item matched by a distinct answer item at least ``threshold`` similar
    (after normalizing), and no answer item left over."""
    if not (isinstance(expected, list) and isinstance(actual, list)):
        return _exact(rule, expected, actual)
    left = list(actual)
    missing = []
    for item in expected:
        scores = [_similarity(_text(item), _text(a)) for a in left]
        best = max(range(len(left)), key=scores.__getitem__, default=None)
        if best is None or scores[best] < rule.threshold:
            missing.append(item)
        else:
            left.pop(best)
    extra = left
    if not missing and not extra:
        return FieldResult(True)
    return FieldResult(False, _list_detail(missing, extra) + f" (similarity < {rule.threshold:g})")


_SCORERS: dict[str, Callable[[FieldRule, Any, Any], FieldResult]] = {
    "exact": _exact,
    "normalized": _normalized,
    "numeric": _numeric,
    "unordered": _unordered,
    "fuzzy_list": _fuzzy_list,
}


def _text(value: Any) -> str:
    return normalize(value) if isinstance(value, str) else _canonical(value)


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _same(expected: Any, actual: Any) -> bool:
    """Equal as JSON values: 2 equals 2.0, true does not equal 1."""
    return _canonical(expected) == _canonical(actual)


def _canonical(value: Any) -> str:
    def number(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {k: number(v) for k, v in value.items()}
        if isinstance(value, list):
            return [number(v) for v in value]
        return value

    return json.dumps(number(value), sort_keys=True, ensure_ascii=False)


def _multiset_difference(expected: list[Any], actual: list[Any]) -> tuple[list[Any], list[Any]]:
    left = list(actual)
    missing = []
    for item in expected:
        match = next((i for i, a in enumerate(left) if _same(item, a)), None)
        if match is None:
            missing.append(item)
        else:
            left.pop(match)
    return missing, left


def _list_detail(missing: list[Any], extra: list[Any]) -> str:
    parts = []
    if missing:
        parts.append("missing " + ", ".join(_show(m) for m in missing))
    if extra:
        parts.append("unexpected " + ", ".join(_show(e) for e in extra))
    return "; ".join(parts)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
