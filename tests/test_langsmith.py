"""LangSmith upload end to end: the real SDK against a LangSmith-compatible server on
127.0.0.1, asserting on what arrived; and LangSmith away (down, 500s, hanging, a
rejected key), which changes no outcome and loses nothing."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.langsmith import payloads
from pytest_llmeval.models import ModelSpec
from pytest_llmeval.results.records import Record
from pytest_llmeval.results.saved_run import ResultsFileError, SavedRun, describe_models
from tests.conftest import REVIEWS, LLMProject, llmeval, oracle, suite_yaml
from tests.langsmith_service import LangSmithServer, closed_port_url
from tests.openai_server import OpenAIServer, Reply, Request
from tests.test_judge import judged_project

KEY = "lsv2-test-key-0123456789abcdef"
MODEL_KEY = "sk-model-key-0123456789abcdef"


@pytest.fixture
def langsmith_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LangSmithServer]:
    with LangSmithServer(api_key=KEY) as server:
        monkeypatch.setenv("LANGSMITH_ENDPOINT", server.url)
        monkeypatch.setenv("LANGSMITH_API_KEY", KEY)
        monkeypatch.setenv("M1_KEY", MODEL_KEY)  # m1 takes a key: it must not leak either
        yield server


def m2_answers(request: Request) -> Any:
    """Right on the kettle, a star off on the desk chair, a server error on the headphones."""
    answer = oracle(request)
    if answer["product"] == "headphones":
        return Reply(status=500, error_message="upstream exploded")
    if answer["product"] == "desk chair":
        return {**answer, "star_rating": 3}
    return answer


def reviews_project(llm_project: LLMProject, ini: str = "") -> None:
    """Three cases on m1 (always right) and m2 (one miss, one error), a 0.9 threshold."""
    llm_project({"m1": oracle, "m2": m2_answers},
                ini=f"llmeval_threshold = 0.9\nllmeval_max_retries = 0\n{ini}",
                extra={"m1": 'api_key_env = "M1_KEY"\nparams = {temperature = 0}'})  # fmt: skip


def results_file(pytester: pytest.Pytester) -> Path:
    (found,) = (pytester.path / "llmeval-results").glob("*.json")
    return found


def by_model(server: LangSmithServer) -> dict[str, dict[str, Any]]:
    return {s["extra"]["metadata"]["model"]: s for s in server.sessions.values()}


def test_a_run_becomes_a_dataset_an_experiment_per_model_and_runs_with_feedback(
    pytester: pytest.Pytester,
    openai_server: OpenAIServer,
    llm_project: LLMProject,
    langsmith_server: LangSmithServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    reviews_project(llm_project)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "swap-gpt4"], cwd=pytester.path, check=True)
    subprocess.run([*git, "add", "."], cwd=pytester.path, check=True)
    subprocess.run([*git, "commit", "-qm", "cases"], cwd=pytester.path, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=pytester.path, check=True,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    result = pytester.runpytest("--llm-langsmith", "-p", "no:langsmith_plugin")
    # The gate and outcomes are the plugin's own: m2 is below 0.9, its headphones an error.
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes() == {"passed": 4, "missed": 1, "errors": 1}
    server = langsmith_server

    (dataset,) = server.datasets.values()
    assert dataset["name"] == "reviews"
    examples = {e["id"]: e for e in server.examples.values()}
    assert sorted(examples) == sorted(payloads.example_id("reviews", case) for case in REVIEWS)
    chair = examples[payloads.example_id("reviews", "desk-chair")]
    assert chair["dataset_id"] == dataset["id"]
    assert chair["inputs"] == {"review": REVIEWS["desk-chair"][0]}
    assert chair["outputs"] == REVIEWS["desk-chair"][1]
    assert chair["metadata"]["file"] == "reviews.llmeval.yaml"
    lines = (pytester.path / "reviews.llmeval.yaml").read_text().splitlines()
    assert lines[chair["metadata"]["line"] - 1] == "  - id: desk-chair"
    assert chair["metadata"]["case"] == "desk-chair"

    sessions = by_model(server)
    assert sorted(sessions) == ["m1", "m2"]
    for name, session in sessions.items():
        assert session["reference_dataset_id"] == dataset["id"]
        assert session["name"].startswith("reviews | ")
        assert f" | {name} | " in session["name"]
        metadata = session["extra"]["metadata"]
        assert metadata["model_id"] == name
        assert metadata["params"] == {"temperature": 0}
        assert metadata["endpoint_host"] == openai_server.url.split("/")[2]
        assert metadata["threshold"] == 0.9
        assert metadata["ci_provider"] == "github-actions"
        assert metadata["ci_run_id"] == "4242"
        assert metadata["plugin_version"]
        assert metadata["git_commit"] == commit
        assert metadata["git_branch"] == "swap-gpt4"

    saved = SavedRun.load(results_file(pytester))
    assert len(saved.records) == 6
    runs = server.runs
    assert sorted(server.run_posts) == sorted(runs)  # each run sent once
    assert len(runs) == 6
    for record in saved.records:
        run = runs[payloads.run_id(saved.provenance, record)]
        assert run["session_id"] == sessions[record.model]["id"]
        assert run["reference_example_id"] == payloads.example_id("reviews", record.case)
        assert run["inputs"] == {"review": REVIEWS[record.case][0]}
        if record.outcome == "error":
            assert "HTTP 500" in run["error"]
            assert "upstream exploded" in run["error"]
            assert not [f for f in server.feedback.values() if f["run_id"] == run["id"]]
            continue
        assert run["outputs"]["answer"] == record.answer
        assert run["outputs"]["parsed"] == json.loads(record.answer or "")
        usage = run["outputs"]["usage_metadata"]
        assert usage["input_tokens"] == record.input_tokens
        assert usage["output_tokens"] == record.output_tokens
        assert usage["input_tokens"] > 0
        assert usage["output_tokens"] > 0
        assert usage["total_cost"] == pytest.approx(record.cost)
        # Start and end are the request's: their difference is the latency measured.
        assert _seconds(run["end_time"]) - _seconds(run["start_time"]) == pytest.approx(
            record.latency_s, abs=1e-3
        )
        scores = {
            f["key"]: f["score"] for f in server.feedback.values() if f["run_id"] == run["id"]
        }
        right = record.outcome == "pass"
        assert scores["correctness"] == int(right)
        assert scores["field_accuracy"] == pytest.approx(record.score)
        assert {k for k in scores if k.startswith("field.")} == {
            "field.product", "field.star_rating", "field.specific_likes", "field.specific_dislikes"
        }  # fmt: skip
        assert scores["field.star_rating"] == int(right)
    # Six scores for each of the five answers (correctness, field accuracy, four fields),
    # each sent once.
    assert sorted(server.feedback_posts) == sorted(server.feedback)
    assert len(server.feedback) == 30

    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        f"llmeval langsmith: 6 of 6 results sent to {server.url}: 6 runs, 30 feedback scores, "
        "examples 3 created, 0 updated",
        f"  reviews / m1: http://localhost/o/*/datasets/{dataset['id']}/compare?selectedSessions="
        f"{sessions['m1']['id']}",
        "  reviews / m2: http://localhost/*",
        "llmeval results: llmeval-results/*.json",
    ])  # fmt: skip
    # No key anywhere: not in what was uploaded, not in the output, not in the file.
    for secret in (KEY, MODEL_KEY):
        assert secret not in out + result.stderr.str()
        assert secret not in results_file(pytester).read_text()
        assert not [r.path for r in server.requests if secret.encode() in r.body]


def _seconds(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_a_rerun_updates_changed_examples_and_duplicates_nothing(
    pytester: pytest.Pytester, llm_project: LLMProject, langsmith_server: LangSmithServer
) -> None:
    reviews_project(llm_project)
    pytester.runpytest("--llm-langsmith", "--llm-models=m1")
    first = dict(langsmith_server.examples)
    changed = dict(REVIEWS)
    changed["kettle"] = (REVIEWS["kettle"][0], {**REVIEWS["kettle"][1], "star_rating": 4})
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml(cases=changed))
    result = pytester.runpytest("--llm-langsmith", "--llm-models=m1")
    assert result.parseoutcomes() == {"passed": 2, "missed": 1}  # the answer now misses
    server = langsmith_server
    assert len(server.datasets) == 1
    assert sorted(server.examples) == sorted(first)  # the same three, by the same ids
    assert sorted(server.example_posts) == sorted(first)  # each created once
    kettle = server.examples[payloads.example_id("reviews", "kettle")]
    assert kettle["outputs"]["star_rating"] == 4
    result.stdout.fnmatch_lines(["*examples 0 created, 1 updated"])
    # A run is an experiment of its own: two runs, two experiments, three runs each.
    assert len(server.sessions) == 2
    assert len(server.runs) == len(server.run_posts) == 6


def test_under_xdist_the_controller_sends_one_experiment_per_model(
    pytester: pytest.Pytester, llm_project: LLMProject, langsmith_server: LangSmithServer
) -> None:
    reviews_project(llm_project)
    result = pytester.runpytest("--llm-langsmith", "-n", "2")
    assert result.parseoutcomes() == {"passed": 4, "missed": 1, "errors": 1}
    sessions = by_model(langsmith_server)
    assert sorted(sessions) == ["m1", "m2"]
    runs = langsmith_server.runs.values()
    assert len(runs) == len(langsmith_server.run_posts) == 6
    for name, session in sessions.items():
        assert len([r for r in runs if r["session_id"] == session["id"]]) == 3, name


def test_a_judged_suite_sends_the_grade_with_the_judges_reasoning(
    pytester: pytest.Pytester, openai_server: OpenAIServer, langsmith_server: LangSmithServer
) -> None:
    judged_project(pytester, openai_server)
    result = pytester.runpytest("--llm-langsmith")
    assert result.parseoutcomes() == {"passed": 3}
    judged = [f for f in langsmith_server.feedback.values() if f["key"].startswith("judge")]
    # The desk chair and the headphones have dislikes to judge; the kettle has none.
    assert len(judged) == 2
    for grade in judged:
        assert grade["key"] == "judge.specific_dislikes"
        assert grade["score"] == 1
        assert grade["value"] == "CORRECT"
        assert grade["comment"] == "The answer covers all items.\nGRADE: CORRECT"


# -- LangSmith away ------------------------------------------------------------------------

FAULTS = ["down", "500", "hang", "401"]


@pytest.mark.parametrize("fault", FAULTS)
def test_langsmith_away_changes_no_outcome_and_loses_nothing(
    fault: str,
    pytester: pytest.Pytester,
    llm_project: LLMProject,
    langsmith_server: LangSmithServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reviews_project(llm_project, ini="llmeval_langsmith_timeout = 3")
    baseline = pytester.runpytest()  # LangSmith off: nothing to leave hanging
    if fault == "down":
        monkeypatch.setenv("LANGSMITH_ENDPOINT", closed_port_url())
    elif fault == "401":
        monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2-revoked-key")
    else:
        langsmith_server.fault(status=500 if fault == "500" else None, hang=fault == "hang")
    # A subprocess: an upload left hanging dies with it, as it does when pytest exits.
    result = pytester.runpytest_subprocess("--llm-langsmith", timeout=120)
    assert result.ret == baseline.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes() == baseline.parseoutcomes()
    warnings = [line for line in result.stdout.lines if "WARNING" in line]
    assert len(warnings) == 1, result.stdout.str()
    expected = {
        "down": "*LangSmith upload stopped: LangSmithConnectionError*0 of 6 results sent*",
        "500": "*LangSmith upload stopped: LangSmithAPIError*500*0 of 6 results sent*",
        "hang": "*LangSmith upload not finished after 3s (--llm-langsmith-timeout); 0 of 6*",
        "401": "*LangSmith upload stopped: LangSmithAuthError*0 of 6 results sent*",
    }[fault]
    result.stdout.fnmatch_lines([expected, "  all results are in llmeval-results/*.json; send "
                                 "them later with: llmeval upload llmeval-results/*.json"])  # fmt: skip
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert KEY not in result.stdout.str() + result.stderr.str()
    saved = SavedRun.load(results_file(pytester))
    assert sorted((r.case, r.model, r.outcome) for r in saved.records) == sorted([
        ("desk-chair", "m1", "pass"), ("kettle", "m1", "pass"), ("headphones", "m1", "pass"),
        ("desk-chair", "m2", "miss"), ("kettle", "m2", "pass"), ("headphones", "m2", "error"),
    ])  # fmt: skip
    assert saved.exit_status == 1

    # LangSmith back: the saved run goes up once, and again changes nothing.
    langsmith_server.clear_faults()
    monkeypatch.setenv("LANGSMITH_ENDPOINT", langsmith_server.url)
    monkeypatch.setenv("LANGSMITH_API_KEY", KEY)
    sent = upload(results_file(pytester))
    assert sent.returncode == 0, sent.stderr
    assert "6 of 6 results sent" in sent.stdout
    assert "6 runs," in sent.stdout
    assert len(langsmith_server.runs) == len(langsmith_server.run_posts) == 6
    assert len(by_model(langsmith_server)) == 2
    feedback_posts = list(langsmith_server.feedback_posts)
    again = upload(results_file(pytester))
    assert again.returncode == 0, again.stderr
    assert (
        "0 runs, 0 feedback scores, examples 0 created, 0 updated, 6 runs sent before"
        in again.stdout
    )
    assert len(langsmith_server.run_posts) == 6
    assert langsmith_server.feedback_posts == feedback_posts
    assert len(langsmith_server.sessions) == 2
    assert len(langsmith_server.examples) == 3


def upload(path: Path) -> subprocess.CompletedProcess[str]:
    return llmeval("upload", str(path), "--timeout", "60")


# -- switching it on, and living beside LangSmith's own plugin ----------------------------


def test_the_environment_switches_it_on_and_the_ini_off(
    pytester: pytest.Pytester,
    llm_project: LLMProject,
    langsmith_server: LangSmithServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reviews_project(llm_project)
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    pytester.runpytest("--llm-models=m1")
    assert len(langsmith_server.runs) == 3
    reviews_project(llm_project, ini="llmeval_langsmith = false")
    pytester.runpytest("--llm-models=m1")
    assert len(langsmith_server.runs) == 3


def test_asking_for_it_without_a_key_is_a_usage_error(
    pytester: pytest.Pytester, llm_project: LLMProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("M1_KEY", MODEL_KEY)
    for name in ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    reviews_project(llm_project)
    result = pytester.runpytest("--llm-langsmith")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-langsmith needs LANGSMITH_API_KEY*"])


THEIR_TEST = """
import pytest

@pytest.mark.langsmith
def test_addition():
    assert 1 + 1 == 2
"""


def test_langsmiths_own_plugin_works_the_same_beside_this_one(
    pytester: pytest.Pytester, langsmith_server: LangSmithServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_TEST_SUITE", "their-suite")
    pytester.makepyfile(test_theirs=THEIR_TEST)
    without = pytester.runpytest_subprocess("-p", "no:llmeval")
    runs_without = len(langsmith_server.run_posts)
    with_ours = pytester.runpytest_subprocess()
    assert without.ret == with_ours.ret == pytest.ExitCode.OK
    assert without.parseoutcomes() == with_ours.parseoutcomes() == {"passed": 1}
    # Each run traced their test the same way; nothing of ours is there.
    assert runs_without > 0
    assert len(langsmith_server.run_posts) == 2 * runs_without
    assert [d["name"] for d in langsmith_server.datasets.values()] == ["their-suite"]
    assert not any("pytest-llmeval" in json.dumps(s) for s in langsmith_server.sessions.values())
    assert "Traceback" not in without.stderr.str() + with_ours.stderr.str()
    assert not (pytester.path / "llmeval-results").exists()


# -- the results file and the ids ---------------------------------------------------------


def test_a_bad_results_file_is_named_with_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text('{"format": "pytest-llmeval/results",\n "version": 1,\n oops}')
    with pytest.raises(ResultsFileError, match=rf"{path}:3: not JSON"):
        SavedRun.load(path)
    path.write_text(json.dumps({"format": "pytest-llmeval/results", "version": 99}))
    with pytest.raises(ResultsFileError, match="version 99; this pytest-llmeval reads version 1"):
        SavedRun.load(path)
    path.write_text(json.dumps({"format": "pytest-llmeval/results", "version": 1, "run": {}}))
    with pytest.raises(ResultsFileError, match="malformed results file"):
        SavedRun.load(path)
    done = upload(path)
    assert done.returncode == 2
    assert f"llmeval: {path}: malformed results file" in done.stderr


def test_ids_are_stable_and_feedback_follows_the_verdict() -> None:
    record = Record(
        suite="reviews", case="kettle", model="m1", nodeid="r::kettle[m1]", file="r.yaml",
        line=3, outcome="miss", score=0.5, fields={"a": True, "b": False},
        judge_grades=({"field": "b", "grade": "INCORRECT", "reasoning": "no"},),
        inputs={"review": "x"},
    )  # fmt: skip
    assert payloads.example_id("reviews", "kettle") == payloads.example_id("reviews", "kettle")
    assert payloads.example_id("reviews", "kettle") != payloads.example_id("other", "kettle")
    scores = {f["key"]: (f["score"], f.get("comment")) for f in payloads.feedback(record, "run")}
    assert scores == {
        "correctness": (0, None), "field_accuracy": (0.5, None), "field.a": (1, None),
        "field.b": (0, None), "judge.b": (0, "no"),
    }  # fmt: skip


def test_runs_fall_back_to_the_batch_endpoint_when_multipart_is_missing(
    pytester: pytest.Pytester, llm_project: LLMProject, langsmith_server: LangSmithServer
) -> None:
    langsmith_server.fault(404, paths=("/runs/multipart",))
    reviews_project(llm_project)
    result = pytester.runpytest("--llm-langsmith")
    result.stdout.fnmatch_lines(["llmeval langsmith: 6 of 6 results sent to *: 6 runs, 30 *"])
    batched = [r for r in langsmith_server.requests if r.path == "/runs/batch"]
    assert batched
    assert all(r.status == 200 for r in batched)
    assert len(langsmith_server.runs) == len(langsmith_server.run_posts) == 6


def test_an_upload_stopped_halfway_is_finished_by_llmeval_upload_sending_only_the_rest(
    pytester: pytest.Pytester, llm_project: LLMProject, langsmith_server: LangSmithServer
) -> None:
    # The first batch of runs goes up; then every request fails: LangSmith has part of it.
    langsmith_server.fault(500, paths=("/runs/multipart",), after=1)
    reviews_project(llm_project)
    result = pytester.runpytest("--llm-langsmith")
    result.stdout.fnmatch_lines(["*LangSmith upload stopped: LangSmithAPIError*500*"])
    assert langsmith_server.runs
    assert not langsmith_server.feedback
    saved = SavedRun.load(results_file(pytester))
    assert set(saved.langsmith_sent) == set(langsmith_server.runs)  # what it took, recorded
    before = len(langsmith_server.runs)

    langsmith_server.clear_faults()
    sent = upload(results_file(pytester))
    assert sent.returncode == 0, sent.stderr
    assert (
        f"{6 - before} runs, 30 feedback scores, examples 0 created, 0 updated, "
        f"{before} runs sent before" in sent.stdout
    )
    assert len(langsmith_server.run_posts) == 6  # no run sent twice
    assert sorted(langsmith_server.feedback_posts) == sorted(langsmith_server.feedback)
    assert len(langsmith_server.feedback) == 30


def test_a_results_file_describes_models_without_their_secrets() -> None:
    spec = ModelSpec(
        name="m", model="gpt-4", base_url="https://user:pw@example.com/v1?key=sk-123",
        params={"temperature": 0, "api_key": "sk-123",
                "extra_headers": {"Authorization": "Bearer sk-123", "X-Team": "a"}},
    )  # fmt: skip
    described = describe_models([spec])["m"]
    assert described["endpoint"] == "https://example.com/v1"
    assert described["params"] == {"temperature": 0, "extra_headers": {"X-Team": "a"}}
    assert "sk-123" not in json.dumps(described)


def test_a_case_is_the_same_example_whichever_directory_pytest_ran_in(
    pytester: pytest.Pytester,
    llm_project: LLMProject,
    langsmith_server: LangSmithServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reviews_project(llm_project)
    pytester.runpytest("--llm-langsmith", "--llm-models=m1")
    (pytester.path / "sub").mkdir()
    monkeypatch.chdir(pytester.path / "sub")
    result = pytester.runpytest("--llm-langsmith", "--llm-models=m1", str(pytester.path))
    result.stdout.fnmatch_lines(["*examples 0 created, 0 updated"])
    assert {e["metadata"]["file"] for e in langsmith_server.examples.values()} == {
        "reviews.llmeval.yaml"
    }
