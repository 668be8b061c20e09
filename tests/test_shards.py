"""Sharded runs: --llm-shard=K/N cuts the cases (every model and repeat of a case in one
part), `llmeval merge` joins the parts' results files into the one the whole run would
have written, or refuses, and the merged run's gate, reports and LangSmith experiments
are the unsharded run's."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pytest_llmeval.options import read_shard
from pytest_llmeval.results.gate import decide
from pytest_llmeval.results.provenance import Provenance
from pytest_llmeval.results.records import Record
from pytest_llmeval.results.saved_run import SavedRun
from pytest_llmeval.suite.shard import assign, case_key, select
from tests.conftest import ROOT, LLMProject, llmeval, numbered, suite_yaml
from tests.langsmith_service import LangSmithServer

KEY = "lsv2-test-key-shards"

# Ten cases: three shards of 4, 3 and 3.
TEN = {f"case{i}": (f"Review number {i}.", {"n": i}) for i in range(10)}


# The assignment's properties.

keys = st.sets(st.text(min_size=1, max_size=8), max_size=60)
totals = st.integers(min_value=1, max_value=9)


@given(keys, totals)
def test_every_case_is_in_exactly_one_shard_and_the_shards_are_within_one_case(
    cases: set[str], total: int
) -> None:
    shards = assign(cases, total)
    assert set(shards) == cases
    assert all(1 <= shard <= total for shard in shards.values())
    sizes = Counter(shards.values())
    counts = [sizes.get(index, 0) for index in range(1, total + 1)]
    assert max(counts) - min(counts) <= 1


@given(keys, st.text(min_size=1, max_size=8), totals)
def test_adding_a_case_moves_at_most_one_other_case_per_shard_edge(
    cases: set[str], added: str, total: int
) -> None:
    before = assign(cases - {added}, total)
    after = assign(cases | {added}, total)
    moved = [case for case in before if before[case] != after[case]]
    assert len(moved) <= total - 1


@given(st.lists(st.text(min_size=1, max_size=8), max_size=40, unique=True), totals, st.randoms())
def test_the_cut_depends_on_the_cases_not_on_their_order(
    cases: list[str], total: int, rng: Any
) -> None:
    shuffled = list(cases)
    rng.shuffle(shuffled)
    assert assign(cases, total) == assign(shuffled, total)


@given(
    st.sets(st.tuples(st.sampled_from("ab"), st.text(min_size=1, max_size=6)), max_size=30),
    st.integers(min_value=1, max_value=3),
    st.integers(min_value=1, max_value=3),
    totals,
)
def test_every_model_and_repeat_of_a_case_is_in_its_case_s_shard(
    cases: set[tuple[str, str]], models: int, repeats: int, total: int
) -> None:
    items = [(suite, case, model, repeat) for suite, case in sorted(cases)
             for model in range(models) for repeat in range(repeats)]  # fmt: skip
    parts = [
        select(items, lambda i: case_key(i[0], i[1]), k, total)[0] for k in range(1, total + 1)
    ]
    assert sorted(i for part in parts for i in part) == sorted(items)  # each item once
    for part in parts:
        whole = {(s, c) for s, c, _, _ in part}
        assert len(part) == len(whole) * models * repeats  # no case split


def test_suite_and_case_are_kept_apart_in_the_key() -> None:
    assert case_key("a/b", "c") != case_key("a", "b/c")
    assert case_key("reviews", "kettle") != case_key("reviews-kettle", "")


# Which shard: the flag, its ini twin, the CI's variables.


numbers = st.integers(min_value=0, max_value=12)


@given(st.one_of(st.text(max_size=12), st.builds("{}/{}".format, numbers, numbers)))
def test_a_shard_is_k_of_n_or_a_usage_error_naming_it(text: str) -> None:
    written = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text, re.ASCII)
    if written is None or not 1 <= int(written[1]) <= int(written[2]):
        with pytest.raises(pytest.UsageError) as refused:
            read_shard(text, {})
        assert repr(text) in str(refused.value)
    else:
        assert read_shard(text, {}) == (int(written[1]), int(written[2]))


def test_the_flag_wins_over_the_ci_and_each_ci_counts_as_it_does() -> None:
    gitlab = {"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "3"}
    assert read_shard(None, gitlab) == (2, 3)  # GitLab counts from 1
    assert read_shard("1/3", gitlab) == (1, 3)
    assert read_shard(None, {"CIRCLE_NODE_INDEX": "0", "CIRCLE_NODE_TOTAL": "4"}) == (1, 4)
    assert read_shard(None, {"BUILDKITE_PARALLEL_JOB": "3",
                             "BUILDKITE_PARALLEL_JOB_COUNT": "4"}) == (4, 4)  # fmt: skip
    assert read_shard(None, {"CI_NODE_INDEX": "1", "CI_NODE_TOTAL": "1"}) is None  # not split
    assert read_shard(None, {}) is None
    with pytest.raises(pytest.UsageError, match=r"CI_NODE_INDEX='4' and CI_NODE_TOTAL='3'"):
        read_shard(None, {"CI_NODE_INDEX": "4", "CI_NODE_TOTAL": "3"})
    with pytest.raises(pytest.UsageError, match=r"must be K/N with 1 <= K <= N, not '0/3'"):
        read_shard("0/3", gitlab)


def test_a_shard_deselects_the_other_parts_cases_as_k_does(
    llm_project: LLMProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm_project({"m1": numbered(), "m2": numbered(3)}, suite=suite_yaml(cases=TEN))
    pytester = llm_project.pytester
    seen: list[set[str]] = []
    for index in (1, 2, 3):
        result = pytester.runpytest(f"--llm-shard={index}/3", "--llm-repeat=2", "-v")
        outcomes = result.parseoutcomes()
        ran = set(re.findall(r"::(case\d)\[", result.stdout.str()))
        # Each case with both models and both repeats: 4 items; the rest deselected.
        assert outcomes["passed"] + outcomes.get("missed", 0) == 4 * len(ran)
        assert outcomes["deselected"] == 4 * (10 - len(ran))
        assert "skipped" not in outcomes
        seen.append(ran)
    assert sorted(len(part) for part in seen) == [3, 3, 4]
    assert set().union(*seen) == set(TEN)
    # Under xdist each worker cuts alike: the same part.
    spread = pytester.runpytest("--llm-shard=3/3", "--llm-repeat=2", "-n", "2")
    outcomes = spread.parseoutcomes()
    assert outcomes["passed"] + outcomes.get("missed", 0) == 4 * len(seen[2])
    # GitLab's variables pick the part when the flag is not given.
    monkeypatch.setenv("CI_NODE_INDEX", "2")
    monkeypatch.setenv("CI_NODE_TOTAL", "3")
    result = pytester.runpytest("-v", "--llm-repeat=2")
    assert set(re.findall(r"::(case\d)\[", result.stdout.str())) == seen[1]
    bad = pytester.runpytest("--llm-shard=4/3")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(
        ["*--llm-shard / llmeval_shard must be K/N with 1 <= K <= N, not '4/3'"]
    )


# The whole of it: three shard processes, merged, against one unsharded run.


@pytest.fixture
def two_langsmiths() -> Iterator[tuple[LangSmithServer, LangSmithServer]]:
    with LangSmithServer(api_key=KEY) as whole, LangSmithServer(api_key=KEY) as sharded:
        yield whole, sharded


def blank_latencies(text: str) -> str:
    return re.sub(r"\d+(\.\d+)? ?m?s\b", "<t>", text)


def figures(path: Path) -> Any:
    """Every figure of the gate's decision on a results file."""
    saved = SavedRun.load(path)
    decision = decide(saved.records, saved.settings["models"], reference="m1")
    rows = [(s.suite, s.model, s.passes, s.misses, s.errors, s.asked, s.cases, s.accuracy,
             s.interval, s.field_rates) for s in decision.summaries]  # fmt: skip
    return rows, [repr(f) for f in decision.failures], [repr(c) for c in decision.comparisons]


def landed(server: LangSmithServer) -> dict[str, Any]:
    """What LangSmith holds, without the names and ids that tell one run from another."""
    sessions = {s["id"]: s["extra"]["metadata"] for s in server.sessions.values()}
    runs = server.runs
    return {
        "datasets": sorted(d["name"] for d in server.datasets.values()),
        "examples": sorted(
            (e["id"], json.dumps([e["inputs"], e["outputs"], e["metadata"]]))
            for e in server.examples.values()
        ),
        "example_posts": len(server.example_posts),
        "experiments": sorted((m["suite"], m["model"]) for m in sessions.values()),
        "runs": sorted(
            (sessions[r["session_id"]]["model"], r["name"], json.dumps(r.get("outputs", {})))
            for r in runs.values()
        ),
        "feedback": sorted(
            (
                sessions[runs[f["run_id"]]["session_id"]]["model"],
                runs[f["run_id"]]["name"],
                f["key"],
                f["score"],
            )
            for f in server.feedback.values()
        ),
    }


def test_three_shards_merged_are_the_unsharded_run_figure_for_figure(
    llm_project: LLMProject,
    two_langsmiths: tuple[LangSmithServer, LangSmithServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whole_ls, sharded_ls = two_langsmiths
    # m2 misses three of ten: below the 0.9 threshold, and shown worse than m1.
    llm_project({"m1": numbered(), "m2": numbered(1, 4, 7)}, suite=suite_yaml(cases=TEN),
                ini="llmeval_threshold = 0.9\nllmeval_repeat = 2\n"
                    "llmeval_reference_model = \"m1\"")  # fmt: skip
    pytester = llm_project.pytester
    monkeypatch.setenv("LANGSMITH_API_KEY", KEY)
    monkeypatch.setenv("LANGSMITH_ENDPOINT", whole_ls.url)
    # Every run asks the models (none replays another's answers, which would change the
    # costs shown).
    whole = pytester.runpytest_subprocess("--llm-save=whole.json", "--llm-langsmith",
                                          "--llm-record=all")  # fmt: skip
    assert whole.ret == pytest.ExitCode.TESTS_FAILED  # the gate

    monkeypatch.setenv("LANGSMITH_ENDPOINT", sharded_ls.url)
    monkeypatch.setenv("CI_PIPELINE_ID", "777")  # GitLab: the run id every shard shares
    # The shards finish in any order: here the last first; the second part is picked by
    # GitLab's own variables.
    for index in (3, 2, 1):
        flag = [f"--llm-shard={index}/3"]
        if index == 2:
            monkeypatch.setenv("CI_NODE_INDEX", "2")
            monkeypatch.setenv("CI_NODE_TOTAL", "3")
            flag = []
        part = pytester.runpytest_subprocess(*flag, f"--llm-save=shard-{index}.json",
                                             "--llm-langsmith", "--llm-record=all")  # fmt: skip
        monkeypatch.delenv("CI_NODE_INDEX", raising=False)
        monkeypatch.delenv("CI_NODE_TOTAL", raising=False)
        # A part's figures are not the run's: its gate does not fail the job.
        assert part.ret == pytest.ExitCode.OK, part.stdout.str()
        part.stdout.fnmatch_lines([f"llmeval: shard {index}/3: the gate above is this part's*"])
        saved = SavedRun.load(pytester.path / f"shard-{index}.json")
        assert saved.provenance.run_id == "gitlab-ci-777"
        assert saved.provenance.shard == {"index": index, "total": 3}

    shards = [str(pytester.path / f"shard-{i}.json") for i in (2, 3, 1)]
    merged = llmeval("merge", *shards, "-o", str(pytester.path / "run.json"))
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout.startswith("llmeval merge: 40 results of 3 shards of run gitlab-ci-777")
    run_json, whole_json = pytester.path / "run.json", pytester.path / "whole.json"
    assert figures(run_json) == figures(whole_json)
    assert [r.nodeid for r in SavedRun.load(run_json).records] == [
        r.nodeid for r in SavedRun.load(whole_json).records
    ]

    gates = [llmeval("gate", str(path)) for path in (run_json, whole_json)]
    assert gates[0].returncode == gates[1].returncode == 1
    assert gates[0].stdout == gates[1].stdout
    assert "m2" in gates[0].stdout
    for path, name in ((run_json, "run"), (whole_json, "whole")):
        report = llmeval("report", str(path), "--markdown", str(pytester.path / f"{name}.md"),
                         "--html", str(pytester.path / f"{name}.html"))  # fmt: skip
        assert report.returncode == 1  # as the gate
        assert "m2" in (pytester.path / f"{name}.html").read_text()
    markdowns = [blank_latencies((pytester.path / f"{n}.md").read_text()) for n in ("run", "whole")]
    assert markdowns[0] == markdowns[1]
    assert "m2" in markdowns[0]

    # Each shard uploaded its part live, the last part first; the merged file again sends
    # nothing twice.
    upload = llmeval("upload", str(run_json))
    assert upload.returncode == 0, upload.stderr
    assert landed(sharded_ls) == landed(whole_ls)
    assert len(sharded_ls.sessions) == 2  # one experiment per suite and model
    assert len(sharded_ls.examples) == 10
    assert len(sharded_ls.runs) == 40  # ten cases, two models, two repeats
    assert sorted(sharded_ls.run_posts) == sorted(sharded_ls.runs)  # each run sent once


def test_a_part_with_no_case_of_its_own_passes_and_writes_its_file(
    llm_project: LLMProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm_project({"m1": numbered()}, suite=suite_yaml(cases=dict(list(TEN.items())[:3])))
    monkeypatch.setenv("LLMEVAL_RUN_ID", "run-7")
    files = []
    for index in (1, 2, 3, 4):
        result = llm_project.pytester.runpytest(
            f"--llm-shard={index}/4", f"--llm-save={index}.json"
        )
        assert result.ret == pytest.ExitCode.OK
        files.append(str(llm_project.pytester.path / f"{index}.json"))
    assert sorted(len(SavedRun.load(Path(f)).records) for f in files) == [0, 1, 1, 1]
    merged = llmeval("merge", *files, "-o", str(llm_project.pytester.path / "run.json"))
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout.startswith("llmeval merge: 3 results of 4 shards of run run-7")


def test_a_run_id_that_is_not_one_stops_the_run(
    llm_project: LLMProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm_project({"m1": numbered()})
    monkeypatch.setenv("LLMEVAL_RUN_ID", "run 42; rm -rf")
    result = llm_project.pytester.runpytest("--llm-shard=1/2", "--llm-save=part.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*llmeval: LLMEVAL_RUN_ID 'run 42; rm -rf': a run id is 1 to 100 *"]
    )


def test_an_experiment_created_meanwhile_by_another_shard_is_joined_not_doubled(
    llm_project: LLMProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two shards looking for the experiment at once: both find none, one creates it, the
    other's create answers 409 and it joins that one. Made certain here by LangSmith
    answering "not found" to the looks although both are there."""
    llm_project({"m1": numbered()}, suite=suite_yaml(cases=TEN))
    pytester = llm_project.pytester
    with LangSmithServer(api_key=KEY) as server:
        monkeypatch.setenv("LANGSMITH_API_KEY", KEY)
        monkeypatch.setenv("LANGSMITH_ENDPOINT", server.url)
        monkeypatch.setenv("LLMEVAL_RUN_ID", "run-42")
        first = pytester.runpytest_subprocess("--llm-shard=1/2", "--llm-langsmith")
        assert first.ret == pytest.ExitCode.OK
        # The first look for each: not there (the SDK's own first call to /sessions, a
        # check of its own, answered as it is).
        server.fault(404, paths=("/datasets",), count=1)
        server.fault(404, paths=("/sessions",), count=1, after=1)
        second = pytester.runpytest_subprocess("--llm-shard=2/2", "--llm-langsmith")
        assert second.ret == pytest.ExitCode.OK
        second.stdout.fnmatch_lines(["llmeval langsmith: * sent to *"])
        server.clear_faults()
        # Both creates were refused as already there, and joined.
        assert [(r.method, r.path.split("?")[0]) for r in server.requests if r.status == 409] == [
            ("POST", "/datasets"),
            ("POST", "/sessions"),
        ]
        assert len(server.datasets) == 1
        (session,) = server.sessions.values()
        assert session["name"] == "reviews | m1 | no-git | run run-42"
        assert len(server.runs) == 10
        assert {r["session_id"] for r in server.runs.values()} == {session["id"]}
        assert len(server.examples) == 10


# Refusals.


def record(case: str, suite_version: str = "v1") -> Record:
    return Record(suite="reviews", case=case, model="m1", nodeid=f"reviews.llmeval.yaml::{case}[m1]",
                  file="reviews.llmeval.yaml", line=1, outcome="pass",
                  suite_version=suite_version)  # fmt: skip


def shard_file(tmp_path: Path, index: int, cases: list[str], name: str = "", **spoil: Any) -> str:
    provenance = Provenance(run_id=spoil.pop("run_id", "run-1"), started_at=1.0,
                            shard={"index": index, "total": 3})  # fmt: skip
    if "plugin_version" in spoil:
        provenance = replace(provenance, plugin_version=spoil.pop("plugin_version"))
    version = spoil.pop("suite_version", "v1")
    settings = {"models": ["m1"], "threshold": 0.9, **spoil}
    saved = SavedRun(provenance, settings, {"m1": {"model": "m1"}},
                     tuple(record(c, suite_version=version) for c in cases))  # fmt: skip
    path = tmp_path / (name or f"shard-{index}.json")
    saved.write(path)
    return str(path)


def parts(tmp_path: Path, *spoilt: dict[str, Any]) -> list[str]:
    """Three shard files of one run, the third changed by ``spoilt``."""
    return [
        shard_file(tmp_path, 1, ["a", "b"]),
        shard_file(tmp_path, 2, ["c"]),
        *(shard_file(tmp_path, 3, ["d"], **spoil) for spoil in spoilt or ({},)),
    ]


REFUSALS: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "different runs": (
        lambda p: parts(p, {"run_id": "run-2"}),
        "different runs (run ids): {1}, {2}: 'run-1'; {3}: 'run-2'",
    ),
    "different settings": (
        lambda p: parts(p, {"threshold": 0.8}),
        "different settings (threshold): {1}, {2}: 0.9; {3}: 0.8",
    ),
    "different plugin versions": (
        lambda p: parts(p, {"plugin_version": "9.9.9"}),
        "different plugin versions: {1}, {2}: '*'; {3}: '9.9.9'",
    ),
    "different suite versions": (
        lambda p: parts(p, {"suite_version": "v2"}),
        "different versions of suite 'reviews' (its cases, prompt or scoring changed): "
        "{1}, {2}: ['v1']; {3}: ['v2']",
    ),
    "missing shard": (
        lambda p: parts(p)[:2],
        "shard 3 of 3 missing (given: {1}, {2})",
    ),
    "duplicated shard": (
        lambda p: [*parts(p), shard_file(p, 2, ["e"], name="shard-2-again.json")],
        "shard 2/3 given twice: {2}, {4}",
    ),
    "a case in two shards": (
        lambda p: [
            shard_file(p, 1, ["a", "b"]),
            shard_file(p, 2, ["c", "a"]),
            shard_file(p, 3, ["d"]),
        ],
        "case 'a' of suite 'reviews' is in more than one shard: {1}, {2}",
    ),
    "not a shard": (
        lambda p: [*parts(p)[:2], _unsharded(p)],
        "{3}: not a shard (a run without --llm-shard)",
    ),
}


def _unsharded(tmp_path: Path) -> str:
    path = tmp_path / "whole.json"
    SavedRun(Provenance(run_id="run-1", started_at=1.0), {}, {}, (record("d"),)).write(path)
    return str(path)


@pytest.mark.parametrize("refusal", REFUSALS, ids=str)
def test_merge_refuses_shards_that_are_not_one_run_naming_the_files(
    tmp_path: Path, refusal: str
) -> None:
    make, message = REFUSALS[refusal]
    files = make(tmp_path)
    result = llmeval("merge", *files, "-o", str(tmp_path / "run.json"))
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("llmeval merge: refused: ")
    expected = message.format(None, *files)
    lines = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert any(_matches(line, expected) for line in lines), (expected, lines)
    assert not (tmp_path / "run.json").exists()


def _matches(line: str, pattern: str) -> bool:
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), line) is not None


def test_merge_of_a_file_that_is_not_results_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "shard-1.json"
    bad.write_text("{not json")
    result = llmeval("merge", str(bad), "-o", str(tmp_path / "run.json"))
    assert result.returncode == 2
    assert (
        result.stderr
        == f"llmeval: {bad}:1: not JSON: Expecting property name enclosed in double quotes\n"
    )


# The recipe.


def test_the_ci_recipes_are_valid_yaml_running_the_commands_tested_here() -> None:
    text = (ROOT / "docs" / "ci.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    github, gitlab = (yaml.safe_load(block) for block in blocks)
    matrix = github["jobs"]["shards"]["strategy"]["matrix"]["shard"]
    scripts = json.dumps(github) + json.dumps(gitlab)
    assert f"--llm-shard=${{{{ matrix.shard }}}}/{len(matrix)}" in scripts
    assert github["jobs"]["merge"]["needs"] == "shards"
    assert isinstance(gitlab["llmeval-shards"]["parallel"], int)
    for command in ("llmeval merge", "llmeval gate", "llmeval report", "llmeval upload"):
        assert scripts.count(command) == 2, command
