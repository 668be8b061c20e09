"""--llm-cost-at=N: each model's cost at N requests, from its mean tokens per answered
request and its price, beside each suite's table, in the HTML page, the Markdown summary,
and again from the results file."""

from __future__ import annotations

import json
import re
from itertools import count
from pathlib import Path

import pytest

from tests.conftest import REVIEWS, kettle_wrong, llmeval, oracle, suite_yaml
from tests.openai_server import OpenAIServer, Reply, Request
from tests.test_html import Page

PRICE_IN, PRICE_OUT = 0.0025, 0.01  # dollars per 1K tokens, as the model table gives them
# Each review's tokens in and out, as the server reports them.
TOKENS = {"desk-chair": (1200, 90), "kettle": (2500, 130), "headphones": (1810, 117)}
REQUESTS = 3_000_000


def expected_cost(tokens: list[tuple[int, int]], requests: int) -> str:
    """The projection worked out by hand: requests x (mean in x price in + mean out x price
    out), at the price per token, in cents."""
    mean_in = sum(t[0] for t in tokens) / len(tokens)
    mean_out = sum(t[1] for t in tokens) / len(tokens)
    return f"${requests * (mean_in * PRICE_IN / 1000 + mean_out * PRICE_OUT / 1000):,.2f}"


def counted(request: Request) -> Reply:
    """The kettle-wrong model's answer, with the review's tokens in and out."""
    case = next(c for c, (review, _) in REVIEWS.items() if review in request.last_user_content)
    tokens_in, tokens_out = TOKENS[case]
    answer = json.dumps(kettle_wrong(request))
    return Reply(content=answer, prompt_tokens=tokens_in, completion_tokens=tokens_out)


def configure(
    pytester: pytest.Pytester, server: OpenAIServer, models: dict[str, bool], ini: str = ""
) -> None:
    """The models (name → priced or not) served by the test server, and the reviews suite."""
    price = f"price = {{input_per_1k = {PRICE_IN}, output_per_1k = {PRICE_OUT}}}\n"
    entries = "".join(
        f'\n[tool.llmeval.models.{name}]\nbase_url = "{server.url}"\n' + (price if priced else "")
        for name, priced in models.items()
    )
    pytester.makepyprojecttoml(
        f'[tool.pytest.ini_options]\nllmeval_models = "{",".join(models)}"\n'
        f"llmeval_max_retries = 0\n{ini}\n{entries}"
    )
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())


def projection(lines: list[str], requests: int = REQUESTS) -> dict[str, list[str]]:
    """The projection table the terminal printed after the suite's table: model → its cells."""
    start = lines.index(
        f"at {requests:,} requests, from each model's mean tokens per answered request:"
    )
    header = re.split(r"  +", lines[start + 1].strip())
    assert header == ["model", "mean tokens in", "mean tokens out", "price source",
                      f"cost at {requests:,} requests"]  # fmt: skip
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:
        cells = re.split(r"  +", line.strip())
        if len(cells) != len(header):
            break
        rows[cells[0]] = cells[1:]
    return rows


def test_each_model_is_projected_from_its_mean_tokens_per_answered_request(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("priced", counted)
    openai_server.on("unpriced", counted)
    # Its headphones request fails: an error is no answer, so its tokens are not in the mean.
    openai_server.on("one-error", lambda r: Reply(status=400) if "Headphones" in
                     r.last_user_content else counted(r))  # fmt: skip
    openai_server.on("all-errors", Reply(status=400))
    configure(pytester, openai_server,
              {"priced": True, "unpriced": False, "one-error": True, "all-errors": True})  # fmt: skip
    result = pytester.runpytest(f"--llm-cost-at={REQUESTS}", "--color=no")
    lines = result.outlines
    rows = projection(lines)
    # It comes just after the suite's model table, before anything else.
    table_end = lines.index(f"at {REQUESTS:,} requests, from each model's mean tokens per "
                            "answered request:") - 1  # fmt: skip
    assert lines[table_end] == ""
    assert lines[table_end - 1].startswith("all-errors ")

    every = list(TOKENS.values())  # the kettle's miss is an answer: it counts
    assert rows["priced"] == [
        f"{sum(t[0] for t in every) / 3:,.1f}", f"{sum(t[1] for t in every) / 3:,.1f}",
        "pyproject.toml", expected_cost(every, REQUESTS),
    ]  # fmt: skip
    assert rows["priced"][:2] == ["1,836.7", "112.3"]
    # No price: said so, never $0.
    assert rows["unpriced"] == ["1,836.7", "112.3", "none (local model, tokens only)", "unpriced"]
    answered = [TOKENS["desk-chair"], TOKENS["kettle"]]
    assert rows["one-error"] == ["1,850.0", "110.0", "pyproject.toml",
                                 expected_cost(answered, REQUESTS)]  # fmt: skip
    assert rows["all-errors"] == ["-", "-", "pyproject.toml", "no answered request"]


def test_repeats_count_as_requests(pytester: pytest.Pytester, openai_server: OpenAIServer) -> None:
    calls = count(1)

    def growing(request: Request) -> Reply:
        """Every request n-th of the run reports n thousand tokens in and 10n out."""
        n = next(calls)
        return Reply(content=json.dumps(oracle(request)), prompt_tokens=1000 * n,
                     completion_tokens=10 * n)  # fmt: skip

    openai_server.on("priced", growing)
    configure(pytester, openai_server, {"priced": True})
    result = pytester.runpytest("--llm-cost-at=1000", "--llm-repeat=2", "--color=no")
    tokens = [(1000 * n, 10 * n) for n in range(1, 7)]  # 3 cases x 2 repeats, 6 requests
    assert projection(result.outlines, 1000)["priced"] == [
        "3,500.0", "35.0", "pyproject.toml", expected_cost(tokens, 1000)
    ]  # fmt: skip


def test_without_the_option_there_is_no_projection(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("priced", counted)
    configure(pytester, openai_server, {"priced": True})
    result = pytester.runpytest("--color=no")
    assert result.ret == pytest.ExitCode.OK
    assert not any("mean tokens" in line for line in result.outlines)


def test_the_ini_twin_sets_it(pytester: pytest.Pytester, openai_server: OpenAIServer) -> None:
    openai_server.on("priced", counted)
    configure(pytester, openai_server, {"priced": True}, ini="llmeval_cost_at = 250000")
    result = pytester.runpytest("--color=no")
    every = list(TOKENS.values())
    assert projection(result.outlines, 250_000)["priced"][3] == expected_cost(every, 250_000)
    # The command line wins over the ini file.
    again = pytester.runpytest("--color=no", "--llm-cost-at=40")
    assert projection(again.outlines, 40)["priced"][3] == expected_cost(every, 40)


@pytest.mark.parametrize("value", ["0", "abc", "-3", "1.5"])
def test_a_value_not_a_positive_whole_number_is_a_usage_error(
    pytester: pytest.Pytester, openai_server: OpenAIServer, value: str
) -> None:
    configure(pytester, openai_server, {"priced": True})
    result = pytester.runpytest(f"--llm-cost-at={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"*--llm-cost-at / llmeval_cost_at must be a positive whole number, not '{value}'*"
    ])  # fmt: skip
    assert openai_server.requests == []


def test_the_page_the_summary_and_the_saved_run_project_alike(
    pytester: pytest.Pytester, openai_server: OpenAIServer, tmp_path: Path
) -> None:
    openai_server.on("priced", counted)
    openai_server.on("unpriced", counted)
    configure(pytester, openai_server, {"priced": True, "unpriced": False})
    page, summary, saved = tmp_path / "page.html", tmp_path / "summary.md", tmp_path / "run.json"
    pytester.runpytest(f"--llm-cost-at={REQUESTS}", f"--llm-html={page}",
                       f"--llm-markdown={summary}", f"--llm-save={saved}")  # fmt: skip
    every = list(TOKENS.values())
    cost = expected_cost(every, REQUESTS)
    header = ["model", "mean tokens in", "mean tokens out", "price source",
              f"cost at {REQUESTS:,} requests"]  # fmt: skip
    priced = ["priced", "1,836.7", "112.3", "pyproject.toml", cost]
    unpriced = ["unpriced", "1,836.7", "112.3", "none (local model, tokens only)", "unpriced"]

    tables = Page(page.read_text(encoding="utf-8")).tables
    assert [header, priced, unpriced] in tables
    markdown = summary.read_text(encoding="utf-8")
    assert f"| {' | '.join(priced)} |" in markdown
    assert f"| {' | '.join(unpriced)} |" in markdown

    # From the results file alone: the same page, byte for byte, and another volume asked.
    again = tmp_path / "again.html"
    report = llmeval("report", str(saved), "--html", str(again))
    assert report.returncode == 0, report.stderr
    assert again.read_bytes() == page.read_bytes()
    other = tmp_path / "other.md"
    report = llmeval("report", str(saved), "--markdown", str(other), "--cost-at", "1000")
    assert report.returncode == 0, report.stderr
    row = f"| priced | 1,836.7 | 112.3 | pyproject.toml | {expected_cost(every, 1000)} |"
    assert row in other.read_text(encoding="utf-8")
    refused = llmeval("report", str(saved), "--markdown", str(other), "--cost-at", "0")
    assert refused.returncode == 2
    assert "--cost-at must be a positive whole number, not 0" in refused.stderr
