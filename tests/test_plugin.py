"""The plugin end to end: pytester runs against the OpenAI-compatible test server."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REVIEWS, oracle, suite_yaml, write_config
from tests.openai_server import OpenAIServer, Reply


def table_row(output: str, model: str) -> list[str]:
    """The summary table's cells for one model (split on runs of spaces)."""
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] == model and len(cells) >= 12:
            return cells
    raise AssertionError(f"no table row for {model} in:\n{output}")


def test_all_right_passes_the_gate(pytester: pytest.Pytester, openai_server: OpenAIServer) -> None:
    openai_server.on("m1", oracle)
    write_config(pytester, openai_server, ["m1"], 'llmeval_threshold = "0.9"')
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([
        "*reviews.llmeval.yaml::desk-chair[[]m1[]] PASSED*",
        "*llmeval: reviews (threshold 90%)*",
        "*llmeval gate passed*",
    ])  # fmt: skip
    row = table_row(result.stdout.str(), "m1")
    assert row[1:6] == ["3", "3", "0", "0", "100.0%"]
    assert result.ret == 0
