"""Text as the reports and messages show it: on one line, cut to a width, with a hint
for a misspelt name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def one_line(text: str) -> str:
    """Runs of whitespace (newlines included) as one space."""
    return " ".join(text.split())


def shorten(text: str, width: int) -> str:
    """On one line, and cut to ``width`` characters with an ellipsis when longer."""
    flat = one_line(text)
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def elide_middle(text: str, keep: int) -> str:
    """On one line; past twice ``keep`` characters, cut in the middle so that both ends
    stay visible (where a long JSON value differs is often at its end)."""
    flat = one_line(text)
    if len(flat) <= keep * 2:
        return flat
    return f"{flat[:keep]} … {flat[-keep // 2 :]}"


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """ " (did you mean 'x'?)" for the closest known name, or nothing."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
