"""Saved runs: --llm-save and --llm-autosave, a baseline to compare with, and the gate
applied again to saved results by `llmeval gate`, calling no model."""

from __future__ import annotations

import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_llmeval.results.records import Record
from pytest_llmeval.results.saved_run import SavedRun
from tests.conftest import kettle_wrong, llmeval, numbered, oracle, suite_yaml, write_config
from tests.openai_server import OpenAIServer


def project(pytester: pytest.Pytester, server: OpenAIServer) -> None:
    server.on("m1", oracle)
    server.on("m2", kettle_wrong)
    write_config(pytester, server, ["m1", "m2"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())


# Eight cases: enough for a drop to be shown real (five of five flips one way: p = 1/32).
EIGHT = {f"case{i}": (f"Review number {i}.", {"n": i}) for i in range(8)}


def gate(*args: str) -> subprocess.CompletedProcess[str]:
    return llmeval("gate", *args, timeout=60)


def failed_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("llmeval gate")]


def test_save_writes_every_result_and_autosave_names_the_run(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    project(pytester, openai_server)
    result = pytester.runpytest("--llm-save=out/run.json")
    result.stdout.fnmatch_lines(["llmeval results: out/run.json"])
    saved = SavedRun.load(pytester.path / "out" / "run.json")
    assert sorted((r.case, r.model, r.outcome) for r in saved.records) == sorted(
        [(case, "m1", "pass") for case in ("desk-chair", "kettle", "headphones")]
        + [("desk-chair", "m2", "pass"), ("kettle", "m2", "miss"), ("headphones", "m2", "pass")]
    )
    assert saved.models["m1"]["params"] == {"temperature": 0}
    assert saved.exit_status == 0  # no threshold: misses alone do not fail the run
    pytester.runpytest("--llm-autosave")
    (autosaved,) = (pytester.path / "llmeval-results").glob("*-no-git-*.json")
    assert len(SavedRun.load(autosaved).records) == 6


def test_a_baseline_lists_what_changed_and_gates_a_real_regression_both_ways(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("m1", numbered())
    write_config(pytester, openai_server, ["m1"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml(cases=EIGHT))
    pytester.runpytest("--llm-autosave")
    flags = ["--llm-record=all", "--llm-baseline=latest"]
    # The same model, now wrong on two cases: 25 points down, yet two flips one way are
    # what noise does a quarter of the time (p = 1/4), so even a 10-point limit holds.
    openai_server.on("m1", numbered(0, 1))
    noise = pytester.runpytest(*flags, "--llm-max-regression=10")
    assert noise.ret == pytest.ExitCode.OK
    noise.stdout.fnmatch_lines(["reviews / m1 *100.0% *75.0% *-25.0 pts *"])
    # Wrong on five: 62.5 points down, and five of five flips one way is p = 1/32.
    openai_server.on("m1", numbered(0, 1, 2, 3, 4))
    lenient = pytester.runpytest(*flags, "--llm-max-regression=70")
    assert lenient.ret == pytest.ExitCode.OK  # real, but within 70 points
    strict = pytester.runpytest(*flags, "--llm-max-regression=10")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines([
        "*llmeval: against the baseline llmeval-results/*.json*",
        "suite / model *accuracy then *now *change *p50 then *now *cost then *now",
        "reviews / m1 *100.0% *37.5% *-62.5 pts *",
        "reviews / m1 newly failing: case0, case1, case2, case3, case4",
        "llmeval gate FAILED: reviews / m1: accuracy fell 62.5 points against the baseline "
        "(100.0% to 37.5%), more than --llm-max-regression=10 and more than run-to-run noise "
        "(5 newly failing, 0 newly passing, McNemar p = 0.031; flip rate 62.5%); newly failing: "
        "case0, case1, case2, case3, case4",
    ])  # fmt: skip


def test_llmeval_gate_agrees_with_the_gate_of_the_run(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    project(pytester, openai_server)
    run = pytester.runpytest("--llm-threshold=0.9", "--llm-save=run.json")
    assert run.ret == pytest.ExitCode.TESTS_FAILED
    again = gate(str(pytester.path / "run.json"))
    assert again.returncode == 1
    assert failed_lines(again.stdout) == failed_lines(run.stdout.str())
    assert failed_lines(again.stdout) == [
        "llmeval gate FAILED: reviews / m2: accuracy 66.7% is below the threshold 90.0% by "
        "23.3 points; missed: kettle"
    ]
    lower = gate(str(pytester.path / "run.json"), "--threshold", "0.6")
    assert lower.returncode == 0
    assert "llmeval gate passed: 2 suite/model pair(s) at or above threshold" in lower.stdout
    # Against a baseline: the same decision as the run's own --llm-baseline.
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml(cases=EIGHT))
    openai_server.on("m1", numbered())
    pytester.runpytest("--llm-save=before.json", "--llm-models=m1")
    openai_server.on("m1", numbered(0, 1, 2, 3, 4))
    regressed = pytester.runpytest("--llm-models=m1", "--llm-record=all", "--llm-save=after.json",
                                   "--llm-baseline=before.json", "--llm-max-regression=10")  # fmt: skip
    assert regressed.ret == pytest.ExitCode.TESTS_FAILED
    offline = gate(str(pytester.path / "after.json"), "--baseline",
                   str(pytester.path / "before.json"), "--max-regression", "10")  # fmt: skip
    assert offline.returncode == 1
    assert failed_lines(offline.stdout) == failed_lines(regressed.stdout.str())
    assert "reviews / m1 newly failing: case0, case1, case2, case3, case4" in offline.stdout


def test_a_missing_baseline_and_a_limit_without_one_are_usage_errors(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    project(pytester, openai_server)
    missing = pytester.runpytest("--llm-baseline=nowhere.json")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*--llm-baseline: nowhere.json: cannot read it*"])
    latest = pytester.runpytest("--llm-baseline=latest")
    latest.stderr.fnmatch_lines(["*--llm-baseline=latest: no saved run in *llmeval-results"])
    alone = pytester.runpytest("--llm-max-regression=5")
    alone.stderr.fnmatch_lines(["*--llm-max-regression needs --llm-baseline"])
    bad = gate(str(Path(pytester.path / "nowhere.json")))
    assert bad.returncode == 2
    assert "nowhere.json: cannot read it" in bad.stderr


def test_the_confidence_rule_holds_a_bound_of_the_interval_against_the_threshold(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    # Three cases. m2, 2 of 3: Wilson 95% 20.8% to 93.9%; m1, 3 of 3: 43.9% to 100%.
    # (2/3: centre (2/3 + z²/6) / (1 + z²/3) = 0.5731, half-width 0.3654; z² = 3.84146.)
    project(pytester, openai_server)
    lenient = pytester.runpytest("--llm-threshold=0.9", "--llm-confidence=lenient",
                                 "--llm-save=run.json")  # fmt: skip
    assert lenient.ret == pytest.ExitCode.OK  # 93.9% >= 90%: the data does not show m2 short
    lenient.stdout.fnmatch_lines([
        "llmeval gate: --llm-confidence=lenient: the upper 95% bound of each accuracy (or pass^N) "
        "is held against the threshold",
        "llmeval gate passed: 2 suite/model pair(s) at or above threshold",
    ])  # fmt: skip
    strict = pytester.runpytest("--llm-threshold=0.9", "--llm-confidence=strict")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED  # three cases show neither at 90%
    assert failed_lines(strict.stdout.str()) == [
        "llmeval gate: --llm-confidence=strict: the lower 95% bound of each accuracy (or pass^N) "
        "is held against the threshold",
        "llmeval gate FAILED: reviews / m1: lower 95% bound 43.9% (accuracy 100.0%) is below "
        "the threshold 90.0% by 46.1 points; missed: none",
        "llmeval gate FAILED: reviews / m2: lower 95% bound 20.8% (accuracy 66.7%) is below "
        "the threshold 90.0% by 69.2 points; missed: kettle",
    ]
    # By default the saved run's own rule: lenient, as the run applied it.
    same = gate(str(pytester.path / "run.json"))
    assert same.returncode == 0
    assert failed_lines(same.stdout) == failed_lines(lenient.stdout.str())
    offline = gate(str(pytester.path / "run.json"), "--confidence", "strict")
    assert offline.returncode == 1
    assert failed_lines(offline.stdout) == failed_lines(strict.stdout.str())


# Values a field may hold, those that equal another field's default among them (0, 0.0,
# False, "", None, empty containers): a report's dict leaves out only a field's own default.
_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 2), st.floats(-1, 1), st.text(max_size=3),
    st.just({}), st.dictionaries(st.text(max_size=2), st.booleans(), max_size=2),
)  # fmt: skip
_TUPLES = ("diff", "tags", "judge_grades")
_REQUIRED = {"suite": "s", "case": "c", "model": "m", "nodeid": "n", "file": "f", "line": 1,
             "outcome": "pass"}  # fmt: skip


@given(
    values=st.fixed_dictionaries(
        {},
        optional={
            f.name: st.lists(st.text(max_size=2), max_size=2).map(tuple)
            if f.name in _TUPLES
            else _VALUES
            for f in fields(Record)
            if f.name not in _REQUIRED
        },
    )
)
def test_a_record_on_a_report_is_the_record_back(values: dict[str, object]) -> None:
    """What rides on a test report (its fields that are not their defaults) gives back the
    very record, field by field and type by type."""
    record = Record(**{**values, **_REQUIRED})  # type: ignore[arg-type]
    back = Record.from_dict(record.to_report())
    assert back == record
    assert [type(getattr(back, f.name)) for f in fields(Record)] == [
        type(getattr(record, f.name)) for f in fields(Record)
    ]


def test_a_report_carries_only_what_is_not_a_default() -> None:
    record = Record(**_REQUIRED, attempts=0, cached=False, score=0.0, fields={})  # type: ignore[arg-type]
    assert record.to_report() == {**_REQUIRED, "score": 0.0}
