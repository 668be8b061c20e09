"""Per-field scorers: each top-level field of an answer compared its own way."""

from __future__ import annotations

import difflib
import json
import re
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.suite.rules import FieldRule

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")

# fuzzy_list's bounds, past which the field fails saying so (the answer's other bounds are
# structural's). Its matching is cubic in the items (50 a side: milliseconds) and the
# similarity of two items costs the product of their lengths: at 2,000 characters a side
# (after normalizing), every item like every other, it took a third of a second. A fuzzy
# list is a handful of short phrases: complaints, likes, findings.
MAX_FUZZY_ITEMS = 50
MAX_FUZZY_CHARS = 2_000


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
    (after normalizing), and no answer item left over.

    The matching is the best one-to-one assignment, not a greedy one: as many pairs as can
    reach the threshold, and among those the greatest total similarity. Both lists are put
    in a canonical order first, so neither side's order changes the result."""
    if not (isinstance(expected, list) and isinstance(actual, list)):
        return _exact(rule, expected, actual)
    wanted, given = _in_canonical_order(expected), _in_canonical_order(actual)
    too_big = _fuzzy_bound(wanted, "expected") or _fuzzy_bound(given, "answer")
    if too_big is not None:
        return FieldResult(False, too_big)
    pairs = match([_text(item) for item in wanted], [_text(item) for item in given], rule.threshold)
    missing = [item for i, item in enumerate(wanted) if i not in pairs]
    matched = set(pairs.values())
    extra = [item for j, item in enumerate(given) if j not in matched]
    if not missing and not extra:
        return FieldResult(True)
    return FieldResult(False, _list_detail(missing, extra) + f" (similarity < {rule.threshold:g})")


def _fuzzy_bound(items: list[Any], side: str) -> str | None:
    if len(items) > MAX_FUZZY_ITEMS:
        return (
            f"fuzzy_list compares lists of at most {MAX_FUZZY_ITEMS} items; {side} has {len(items)}"
        )
    size = sum(len(_text(item)) for item in items)
    if size > MAX_FUZZY_CHARS:
        return (
            f"fuzzy_list compares lists of at most {MAX_FUZZY_CHARS:,} characters; "
            f"{side} has {size:,}"
        )
    return None


def similarity(a: str, b: str) -> float:
    """How alike two (normalized) texts are, 0..1, the same whichever comes first.

    difflib's ratio is not symmetric (its longest-match search depends on which side it
    indexes, and its junk heuristic looks at the second one only): the mean of both
    directions is."""
    if a == b:
        return 1.0
    return (
        difflib.SequenceMatcher(None, a, b).ratio() + difflib.SequenceMatcher(None, b, a).ratio()
    ) / 2


def match(expected: list[str], answer: list[str], threshold: float) -> dict[int, int]:
    """The best one-to-one matching of ``expected`` to ``answer`` items (index to index):
    the most pairs at least ``threshold`` similar, then the greatest total similarity."""
    if not expected or not answer:
        return {}
    # Here, not at the top: scipy.optimize takes a quarter of a second to import, and the
    # plugin is imported by every pytest run, most of which never score a fuzzy list.
    import numpy
    from scipy.optimize import linear_sum_assignment

    scale = 10**6  # similarities as integers: exact sums, so ties are ties
    # A pair is worth more than any total of similarities: the count of pairs comes first.
    pair = (min(len(expected), len(answer)) + 1) * scale
    weights = numpy.zeros((len(expected), len(answer)), dtype=numpy.int64)
    for i, a in enumerate(expected):
        for j, b in enumerate(answer):
            # quick_ratio bounds ratio from above both ways: most pairs need no more.
            if a != b and difflib.SequenceMatcher(None, a, b).quick_ratio() < threshold:
                continue
            alike = similarity(a, b)
            if alike >= threshold:
                weights[i, j] = pair + round(alike * scale)
    rows, columns = linear_sum_assignment(weights, maximize=True)
    return {int(i): int(j) for i, j in zip(rows, columns, strict=True) if weights[i, j]}


_SCORERS: dict[str, Callable[[FieldRule, Any, Any], FieldResult]] = {
    "exact": _exact,
    "normalized": _normalized,
    "numeric": _numeric,
    "unordered": _unordered,
    "fuzzy_list": _fuzzy_list,
}


def _text(value: Any) -> str:
    return normalize(value) if isinstance(value, str) else _canonical(value)


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
    """Expected items the answer lacks and answer items beyond them, counted as multisets
    (linear, by canonical JSON), each in canonical order."""
    want = Counter(_canonical(item) for item in expected)
    have = Counter(_canonical(item) for item in actual)
    return _pick(expected, want - have), _pick(actual, have - want)


def _pick(items: list[Any], counts: Counter[str]) -> list[Any]:
    out = []
    for item in _in_canonical_order(items):
        key = _canonical(item)
        if counts[key] > 0:
            counts[key] -= 1
            out.append(item)
    return out


def _in_canonical_order(items: list[Any]) -> list[Any]:
    """Sorted by what compares (normalized text, then JSON), then by how it is shown: the
    same list whatever order the items came in."""
    return sorted(items, key=lambda item: (_text(item), _canonical(item), _show(item)))


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
