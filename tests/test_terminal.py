"""The terminal summary as a person reads it: colour where the eye should go (only on a
terminal), columns aligned, one line per model with -q, long diffs folded."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REVIEWS, kettle_wrong, oracle, suite_yaml, write_config
from tests.openai_server import OpenAIServer

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def two_models(pytester: pytest.Pytester, openai_server: OpenAIServer) -> pytest.Pytester:
    """m1 right every time, m2 wrong on the kettle: m2 fails a 90% gate."""
    openai_server.on("m1", oracle)
    openai_server.on("m2", kettle_wrong)
    write_config(pytester, openai_server, ["m1", "m2"], ini="llmeval_threshold = 0.9")
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    return pytester


def test_the_accuracy_is_in_the_gates_colour_and_the_columns_stay_aligned(
    two_models: pytest.Pytester,
) -> None:
    result = two_models.runpytest("--color=yes")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = result.outlines
    header = next(i for i, line in enumerate(lines) if ANSI.sub("", line).startswith("model "))
    m1, m2 = lines[header + 1], lines[header + 2]
    # m1 passes the gate: green; m2 fails it: red, and its miss count yellow.
    assert re.search(r"\x1b\[32m\x1b\[1m +100\.0%\x1b\[0m", m1), m1
    assert re.search(r"\x1b\[31m\x1b\[1m +66\.7%\x1b\[0m", m2), m2
    assert re.search(r"\x1b\[33m +1\x1b\[0m", m2), m2
    # Colour does not move a column: every right-aligned cell ends under its header.
    plain = [ANSI.sub("", line) for line in lines[header : header + 3]]
    ends = [m.end() for m in re.finditer(r"\S+(?: \S+)*", plain[0])]
    for row in plain[1:]:
        assert [m.end() for m in re.finditer(r"\S+(?: \S+)*", row)][1:] == ends[1:], row

    no_colour = two_models.runpytest("--color=no")
    assert not any(ANSI.search(line) for line in no_colour.outlines)
    # Without colour, the same table: every cell but p50 and p99, which each run measures
    # for itself (blanked on both sides).
    start = next(i for i, line in enumerate(no_colour.outlines) if line.startswith("model "))
    latency = re.compile(r"\d+\.\d\ds")
    assert [latency.sub("<t>", line) for line in plain] == [
        latency.sub("<t>", line) for line in no_colour.outlines[start : start + 3]
    ]


def test_quiet_gives_one_line_per_model_and_the_decision(two_models: pytest.Pytester) -> None:
    result = two_models.runpytest("-q", "--color=no")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    ours = [line for line in result.outlines if line.startswith("llmeval")]
    figures = re.compile(
        r"llmeval reviews / (m\d): ([\d.]+)% \((\d) of 3, 95% CI [\d.]+% to [\d.]+%\), "
        r"fields [\d.]+%, p50 [\d.]+s p99 [\d.]+s, tokens [\d,]+ in [\d,]+ out, "
        r"\$[\d.]+: (passed|FAILED) \(threshold 90%\)"
    )
    found = [figures.fullmatch(line) for line in ours[:2]]
    assert all(found), ours
    assert [m.groups() for m in found if m] == [
        ("m1", "100.0", "3", "passed"), ("m2", "66.7", "2", "FAILED")]  # fmt: skip
    assert ours[2] == "llmeval gate FAILED: 1 suite/model pair(s) below threshold"
    # No tables, no misses: those are for the full summary.
    assert not any(line.startswith(("model ", "field ", "MISS ")) for line in result.outlines)


def test_a_miss_lists_its_first_differences_folded_to_the_terminal(
    pytester: pytest.Pytester, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    review, expected = REVIEWS["kettle"]
    likes = [f"a like that goes on and on, number {n}, about the kettle" for n in range(8)]
    openai_server.on("m1", {**expected, "specific_likes": likes})
    write_config(pytester, openai_server, ["m1"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml(cases={"kettle": (review, expected)}))
    monkeypatch.setenv("COLUMNS", "60")
    result = pytester.runpytest()
    start = result.outlines.index(next(line for line in result.outlines
                                       if line.startswith("MISS ")))  # fmt: skip
    listed = result.outlines[start + 2 : start + 20]
    diff = listed[: listed.index("    ... 3 more (-v shows them)")]
    assert all(len(line) < 60 for line in diff), diff
    # A difference longer than the terminal goes on, indented, on the next line.
    assert diff[0].startswith("    specific_likes"), diff
    assert diff[1].startswith("      "), diff
    assert sum(line.startswith("    specific_likes") for line in diff) == 5

    verbose = pytester.runpytest("-v")
    shown = [line for line in verbose.outlines if line.startswith("    specific_likes")]
    assert len(shown) == 8  # all of them
    assert not any("more (-v shows them)" in line for line in verbose.outlines)
