"""The Markdown summary: its numbers are the results file's; GitHub's job summary gets it."""

from __future__ import annotations

import pytest

from pytest_llmeval.results.records import summarize
from pytest_llmeval.results.saved_run import SavedRun
from tests.conftest import kettle_wrong, oracle, suite_yaml, write_config
from tests.openai_server import OpenAIServer


def test_the_markdown_table_has_the_results_files_numbers(
    pytester: pytest.Pytester, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary_file = pytester.path / "step-summary.md"
    summary_file.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary_file))
    openai_server.on("m1", oracle)
    openai_server.on("m2", kettle_wrong)
    write_config(pytester, openai_server, ["m1", "m2"], ini="llmeval_threshold = 0.9")
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest("--llm-markdown=report.md", "--llm-save=run.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = (pytester.path / "report.md").read_text()
    # Appended to the job summary, after what an earlier step wrote there.
    assert summary_file.read_text() == "earlier step\n" + text

    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ("m1", "m2"):
            rows[cells[0]] = cells
    saved = SavedRun.load(pytester.path / "run.json")
    for summary in summarize(saved.records):
        cells = rows[summary.model]
        assert int(cells[1]) == len(summary.records)
        assert (int(cells[2]), int(cells[3]), int(cells[4])) == (
            summary.passes, summary.misses, summary.errors
        )  # fmt: skip
        assert cells[5] == f"{summary.accuracy:.1%}"
        low, high = summary.interval or (0, 0)
        assert cells[6] == f"{low:.1%} to {high:.1%}"
        assert cells[10] == f"{summary.input_tokens:,}"
        assert cells[12] == f"${summary.cost:.4f}"
    assert "**Gate: FAILED**" in text
    assert "- FAILED: reviews / m2: accuracy 66.7% is below the threshold 90.0%" in text
    assert "### First misses (1 of 1)" in text
    assert "- `kettle` [m2] reviews.llmeval.yaml:" in text
    assert "star_rating: expected 5, got 1" in text


def test_an_unwritable_markdown_file_is_one_warning_and_changes_nothing(
    pytester: pytest.Pytester, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    openai_server.on("m1", oracle)
    write_config(pytester, openai_server, ["m1"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    (pytester.path / "taken").write_text("a file, not a directory")
    result = pytester.runpytest("--llm-markdown=taken/report.md")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["llmeval: WARNING: Markdown summary not written: *taken*"])
