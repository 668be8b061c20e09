"""--llm-repeat: each case asked N times, pass^N, flaky cases, and the gate on either."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest

from pytest_llmeval.report.view import failure_text
from pytest_llmeval.results.gate import threshold_failures
from pytest_llmeval.results.records import Record, summarize
from tests.conftest import llmeval, oracle, suite_yaml, write_config
from tests.openai_server import OpenAIServer, Request


def record(case: str, repeat: int, outcome: str) -> Record:
    return Record(suite="s", case=case, model="m", nodeid=f"s::{case}[m-r{repeat + 1}]",
                  file="s.yaml", line=1, outcome=outcome, repeat=repeat,  # type: ignore[arg-type]
                  threshold=0.5)  # fmt: skip


def test_pass_all_and_flaky_cases_by_hand() -> None:
    # a: right 3 of 3; b: 2 of 3 (flaky); c: 0 of 3; d: an errored asking (not right).
    outcomes = {"a": "ppp", "b": "pmp", "c": "mmm", "d": "pep"}
    records = [record(case, n, {"p": "pass", "m": "miss", "e": "error"}[o])
               for case, said in outcomes.items() for n, o in enumerate(said)]  # fmt: skip
    (summary,) = summarize(records)
    assert summary.repeats == 3
    # Over all answers asked: 3 + 2 + 0 + 2 right of 12 = 7 of 12.
    assert summary.accuracy == pytest.approx(7 / 12)
    # pass^3 over the cases asked: only a, so 1 of 4.
    assert summary.always_right == (1, 4)
    assert summary.pass_all == pytest.approx(1 / 4)
    assert summary.flaky == {"b": (2, 3), "d": (2, 3)}
    # The gate on the mean passes (58.3% >= 50%); on pass^3 (25.0%) it fails.
    assert threshold_failures([summary], repeat_gate="mean") == []
    (failure,) = threshold_failures([summary], repeat_gate="all")
    assert failure_text(failure) == (
        "s / m: pass^3 25.0% is below the threshold 50.0% by 25.0 points; missed: b, c; errored: d"
    )


def every_other_kettle_wrong() -> Any:
    """Right, except the kettle's star rating on every second kettle request."""
    kettles = itertools.count()
    lock = threading.Lock()

    def answer(request: Request) -> Any:
        right = oracle(request)
        if right["product"] == "kettle":
            with lock:
                n = next(kettles)
            if n % 2:
                return {**right, "star_rating": 4}
        return right

    return answer


def test_each_case_is_asked_n_times_and_flaky_ones_are_listed(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("m1", every_other_kettle_wrong())
    write_config(pytester, openai_server, ["m1"], ini="llmeval_threshold = 0.8")
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest("--llm-repeat=3", "-v", "--llm-concurrency=1")
    # 3 cases x 3 askings; the kettle right twice (the 1st and 3rd request), wrong once.
    assert result.parseoutcomes() == {"passed": 8, "missed": 1}
    assert len(openai_server.requests) == 9  # three distinct requests a case: no replay
    result.stdout.fnmatch_lines([
        "*reviews.llmeval.yaml::kettle[[]m1-r2[]] MISS*",
        "each case asked 3 times:",
        "model *answers *accuracy *pass^3 *flaky cases",
        "m1 * 9 * 88.9% * 66.7% (2 of 3) *kettle (2 of 3)",
        "llmeval gate passed: 1 suite/model pair(s) at or above threshold",  # 88.9% >= 80%
    ])  # fmt: skip
    # Each asking has its own recording, replayed by the next run.
    recorded = sorted(p.name for p in (pytester.path / "llmeval-cache" / "reviews").iterdir())
    assert [n for n in recorded if n.startswith("kettle.")] == [
        "kettle.m1.json", "kettle.m1.r2.json", "kettle.m1.r3.json"
    ]  # fmt: skip
    on_all = pytester.runpytest("--llm-repeat=3", "--llm-repeat-gate=all", "--llm-record=none",
                                "--llm-save=repeats.json")  # fmt: skip
    assert on_all.ret == pytest.ExitCode.TESTS_FAILED  # pass^3 66.7% < 80%
    on_all.stdout.fnmatch_lines([
        "llmeval gate FAILED: reviews / m1: pass^3 66.7% is below the threshold 80.0% by 13.3 "
        "points; missed: kettle"
    ])  # fmt: skip

    # Applied again to the saved results, with the run's own measure: the same decision.
    again = llmeval("gate", str(pytester.path / "repeats.json"), timeout=60)
    assert again.returncode == 1
    assert (
        "llmeval gate FAILED: reviews / m1: pass^3 66.7% is below the threshold 80.0% by 13.3 "
        "points; missed: kettle" in again.stdout.splitlines()
    )
