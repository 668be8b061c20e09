"""The bounds on a JSON value that is untrusted input: a model's answer, or a golden
`expected` from a suite file that may come from anyone. Shared by the loader (an
`expected` past a bound can never be passed: a located problem) and the scorer (an
answer past one is a miss that names it)."""

from __future__ import annotations

import math
from typing import Any

# What an answer may be, at most. An answer is untrusted input: a model can say anything,
# and a prompt injection in a case's input can make it say something hostile. Past each
# bound the answer is a miss whose reason names the bound: never a crash, a long
# traceback or a long wait. An answer equal to the expected one is passed in linear time
# (`scoring.structural._same`); the bounds are for DeepDiff, which explains a miss and is
# slow: its cost grows with every value times its depth (about 70 us a value-level, measured), and
# under ignore_order with the square of a list's changed items and, for lists within
# lists, twice over at each level. At all the bounds at once, the slowest answers found
# (tests/test_untrusted.py times them) score in about a second.
#
# ~25,000 tokens, more than most chat models write in one completion (gpt-4o stops at
# 16,384 tokens), while a golden JSON answer is a few hundred characters. It bounds what
# reads the text: the scan of its text, the parse, a free-text comparison, a judge's prompt.
MAX_ANSWER_CHARS = 100_000
# Golden answers nest a few levels; OpenAI's structured outputs accept schemas of at most
# 10. DeepDiff's cost is proportional to depth (it copies the path to each value), and
# Python's json recurses once a level (RecursionError near 1,000: 10,000 `[` crashed).
MAX_DEPTH = 20
# A float has 17 significant digits and an int64 19. Python refuses to turn a string of
# more than 4,300 digits into an int (ValueError), and a long one costs quadratic time.
MAX_NUMBER_DIGITS = 100
# Items of one list, or fields of one object. Under ignore_order DeepDiff weighs every
# pair of changed items to pair them: 100 items, 60 of them changed, take a third of a
# second; 400 items took 13 s.
MAX_LIST_ITEMS = 100
# Values in the whole answer (each object, list, string, number, true, false, null):
# 1,000 values at 20 levels is DeepDiff's second. An invoice's 50 lines of 6 fields are
# 350.
MAX_VALUES = 1_000


def over_limit(value: Any, what: str = "answer") -> str | None:
    """Which bound ``value`` passes, if any, said of ``what`` ("answer nested deeper
    than 20 levels"). Walked without recursion, so a value of any depth (a Python value
    handed to ``llmeval.score``, even one that contains itself) is measured safely."""
    if isinstance(value, str) and len(value) > MAX_ANSWER_CHARS:
        return f"{what} longer than {MAX_ANSWER_CHARS:,} characters"
    count = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            return f"{what} has more than {MAX_VALUES:,} values"
        if isinstance(item, dict | list | tuple):
            if depth + 1 > MAX_DEPTH:
                return f"{what} nested deeper than {MAX_DEPTH} levels"
            if len(item) > MAX_LIST_ITEMS:
                kind = (
                    "an object with more than" if isinstance(item, dict) else "a list of more than"
                )
                unit = "fields" if isinstance(item, dict) else "items"
                return f"{what} has {kind} {MAX_LIST_ITEMS:,} {unit}"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            if len(item) > MAX_ANSWER_CHARS:
                return f"{what} has a string longer than {MAX_ANSWER_CHARS:,} characters"
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            # bit_length first: str() of a huge int is slow, and refused past 4,300 digits.
            if item.bit_length() > 4 * MAX_NUMBER_DIGITS or len(str(abs(item))) > MAX_NUMBER_DIGITS:
                return f"{what} has a number longer than {MAX_NUMBER_DIGITS} digits"
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{what} has {item!r}, which is not a JSON number"
    return None
