from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Imported once for the whole test process: pytester's in-process runs take out of
# sys.modules what they imported, and numpy (which deepdiff and scipy bring, imported by
# the plugin at a run's first explained miss or fuzzy match) refuses to load twice.
import deepdiff  # noqa: F401
import openai
import pytest
import scipy.optimize  # noqa: F401

from tests.openai_server import OpenAIServer, Request, Script


def _load_http_stack() -> None:
    """Make one real SDK call, so the HTTP modules the SDK imports lazily load now.

    pytester's in-process runs drop modules first imported inside them; a re-imported
    httpcore2 then raises exception classes the already-loaded httpx2 does not map
    (a timeout surfaced as a bare httpcore2.ReadTimeout). Loading them here, outside
    any inline run, keeps one copy for the whole session.
    """
    with OpenAIServer() as server:
        server.on("warm-up", "{}")
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        client.chat.completions.create(model="warm-up", messages=[{"role": "user", "content": ""}])
        client.close()


_load_http_stack()

REVIEWS = {
    "desk-chair": (
        "This desk chair gets 2 stars from me. It's uncomfortable and the height "
        "adjustment is faulty.",
        {"product": "desk chair", "star_rating": 2, "specific_likes": [],
         "specific_dislikes": ["uncomfortable", "faulty height adjustment"]},
    ),
    "kettle": (
        "Five stars for this kettle: it boils fast and is quiet.",
        {"product": "kettle", "star_rating": 5, "specific_likes": ["boils fast", "quiet"],
         "specific_dislikes": []},
    ),
    "headphones": (
        "Headphones, 3 stars. Great sound, but the band pinches.",
        {"product": "headphones", "star_rating": 3, "specific_likes": ["great sound"],
         "specific_dislikes": ["band pinches"]},
    ),
}  # fmt: skip


def suite_yaml(name: str = "reviews", cases: dict[str, Any] | None = None, **extra: Any) -> str:
    """A valid suite over REVIEWS (or the given id → (review, expected) pairs)."""
    lines = [
        f"suite: {name}",
        "prompt:",
        "  system: Extract product, star_rating, specific_likes, specific_dislikes as JSON.",
        '  user: "{review}"',
        "scoring: {method: structural, ignore_order: true, ignore_string_case: true}",
    ]
    lines += [f"{key}: {json.dumps(value)}" for key, value in extra.items()]
    lines.append("cases:")
    for case_id, (review, expected) in (cases or REVIEWS).items():
        lines += [
            f"  - id: {case_id}",
            f"    inputs: {{review: {json.dumps(review)}}}",
            f"    expected: {json.dumps(expected)}",
        ]
    return "\n".join(lines) + "\n"


REVIEWS_SUITE = suite_yaml()


def oracle(request: Request) -> dict[str, Any]:
    """A model that always answers right: looks the review up in REVIEWS."""
    for review, expected in REVIEWS.values():
        if review in request.last_user_content:
            return expected
    raise LookupError(f"unknown review: {request.last_user_content!r}")


def kettle_wrong(request: Request) -> dict[str, Any]:
    """Right on every review but the kettle's, whose rating it gets wrong (5 → 1)."""
    answer = oracle(request)
    return {**answer, "star_rating": 1} if answer["product"] == "kettle" else answer


ROOT = Path(__file__).resolve().parent.parent


def llmeval(
    *args: str, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The ``llmeval`` command, run as a user would."""
    return subprocess.run([sys.executable, "-m", "pytest_llmeval.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    """The README's main command: the example suite, replayed with no key in sight."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLMEVAL_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "example_suite", "-p", "no:cacheprovider", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _no_outside_reporting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs tests start report nowhere they were not told to: not to a LangSmith the
    machine is set up for, not to the job summary of the CI running these tests."""
    for name in ("GITHUB_STEP_SUMMARY", "LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2",
                 "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY", "LANGSMITH_PROJECT"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    # Nor do they run a part of their cases because the CI running these tests is split.
    for name in ("LLMEVAL_RUN_ID", "CI_NODE_INDEX", "CI_NODE_TOTAL", "CIRCLE_NODE_INDEX",
                 "CIRCLE_NODE_TOTAL", "BUILDKITE_PARALLEL_JOB",
                 "BUILDKITE_PARALLEL_JOB_COUNT"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    # One terminal width, whatever the terminal running these tests: long diff lines are
    # folded to it.
    monkeypatch.setenv("COLUMNS", "80")


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


def write_config(
    pytester: pytest.Pytester,
    server: OpenAIServer,
    models: list[str],
    ini: str = "",
    extra: dict[str, str] | None = None,
) -> Path:
    """pyproject.toml: the given models served by the test server, with no keys needed.

    ``extra`` adds TOML lines to a model's table, replacing its default params.
    """
    entries = "\n".join(
        textwrap.dedent(f"""
        [tool.llmeval.models.{name}]
        model = "{name}"
        base_url = "{server.url}"
        price = {{input_per_1k = 0.001, output_per_1k = 0.002}}
        """)
        + (extra or {}).get(name, "params = {temperature = 0}")
        for name in models
    )
    return pytester.makepyprojecttoml(
        f'[tool.pytest.ini_options]\nllmeval_models = "{",".join(models)}"\n{ini}\n{entries}'
    )


class LLMProject:
    """The start of most end-to-end tests, in one call: the test server answering each model
    with its script, the models configured (``write_config``), and the suite, by default
    ``suite_yaml()``, as reviews.llmeval.yaml (``suite=None``: none written)."""

    def __init__(self, pytester: pytest.Pytester, server: OpenAIServer) -> None:
        self.pytester = pytester
        self.server = server

    def __call__(
        self,
        models: dict[str, Script],
        *,
        ini: str = "",
        extra: dict[str, str] | None = None,
        suite: str | None = REVIEWS_SUITE,
    ) -> None:
        for name, script in models.items():
            self.server.on(name, script)
        write_config(self.pytester, self.server, list(models), ini, extra)
        if suite is not None:
            self.pytester.makefile(".llmeval.yaml", reviews=suite)


@pytest.fixture
def llm_project(pytester: pytest.Pytester, openai_server: OpenAIServer) -> LLMProject:
    """``llm_project({"m1": oracle}, ini=...)``: see LLMProject."""
    return LLMProject(pytester, openai_server)


def numbered(*wrong: int) -> Callable[[Request], dict[str, int]]:
    """A model that answers {"n": N} to "Review number N.", but {"n": -1} for the numbers
    ``wrong``: the golden answer of every case made by ``{f"case{i}": (f"Review number
    {i}.", {"n": i})}``."""

    def answer(request: Request) -> dict[str, int]:
        found = re.search(r"Review number (\d+)", request.last_user_content)
        assert found is not None
        n = int(found.group(1))
        return {"n": -1 if n in wrong else n}

    return answer
