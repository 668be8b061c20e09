"""--llm-update-goldens: a model's answers written as goldens, only the `expected:` nodes
changed, every other byte of the suite file kept."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_llmeval.suite.goldens import rewrite_text
from pytest_llmeval.suite.load import load_suite
from tests.conftest import LLMProject
from tests.openai_server import Reply, Request

ANSWERS = {
    "Five stars for this kettle": {"product": "kettle", "star_rating": 5, "likes": ["fast"]},
    "Two stars, the chair": {"product": "chair", "star_rating": 2, "likes": []},
    "A lamp, bright": {"product": "lamp", "star_rating": 4, "likes": ["bright"]},
    "The mug": {"product": "mug", "star_rating": 3, "likes": ["yes"]},
}

# Comments, odd quoting, flow and block styles, blank lines, folded scalars, a case with
# `expected` and cases without.
COMMENTED = """\
# Reviews, by hand.
suite: reviews   # the suite's name
prompt:
  system: 'Extract product, star_rating and likes as JSON.'
  user: "{review}"

cases:
    # flow style, a golden the model misses
    - id: kettle
      inputs: {review: "Five stars for this kettle"}
      expected: {product: kettle, star_rating: 4, likes: [fast]}   # wrong on purpose
      tags: [ordinary]

    - id: chair   # no golden yet
      inputs:
        review: >-
          Two stars,
          the chair
      notes: 'single-quoted'  # trailing comment

    - {id: mug, inputs: {review: "The mug"}}
    - id: lamp
      inputs: {review: 'A lamp, bright'}
      expected:
        product: lamp      # passes
        star_rating: 4
        likes:
        - bright

# the end
"""


def project(pytester: pytest.Pytester, llm_project: LLMProject, script: Any, **kw: Any) -> Path:
    """The models served, and the commented suite written byte for byte (pytester's
    makefile would strip its final newline)."""
    llm_project({"m1": script, **kw.pop("more", {})}, suite=None, **kw)
    path = pytester.path / "reviews.llmeval.yaml"
    path.write_text(COMMENTED)
    return path


def answer(request: Request) -> Any:
    for review, value in ANSWERS.items():
        if review in request.last_user_content:
            return value
    raise LookupError(request.last_user_content)


def changed_lines(before: str, after: str) -> list[str]:
    """The diff's lines that are not context: what a reviewer sees in git diff."""
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def test_missing_writes_only_the_cases_without_a_golden(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    path = project(pytester, llm_project, answer)
    result = pytester.runpytest("--llm-update-goldens=missing")
    after = path.read_text()
    assert changed_lines(COMMENTED, after) == [
        "+      expected: {product: chair, star_rating: 2, likes: []}",
        '-    - {id: mug, inputs: {review: "The mug"}}',
        '+    - {id: mug, inputs: {review: "The mug"}, expected: {product: mug, '
        "star_rating: 3, likes: ['yes']}}",
    ]
    # The new line sits after the case's last line, its trailing comment kept there.
    assert (
        "      notes: 'single-quoted'  # trailing comment\n      expected: {product: chair" in after
    )
    result.stdout.fnmatch_lines([
        "llmeval goldens (--llm-update-goldens=missing): 2 written, 0 skipped; review them "
        "with git diff before committing",
        "  written  reviews.llmeval.yaml:14 chair",
        "  written  reviews.llmeval.yaml:21 mug",
    ])  # fmt: skip
    # A run that wrote goldens fails: they were checked by no one yet.
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    suite = load_suite(path)
    assert {c.id: c.expected for c in suite.cases}["mug"] == ANSWERS["The mug"]
    # The written goldens now pass; nothing is left to write; the file stays as it is.
    again = pytester.runpytest("--llm-update-goldens=missing")
    assert again.ret == pytest.ExitCode.OK  # nothing written; the kettle's miss is ungated
    again.stdout.fnmatch_lines(["*nothing to write: no case run lacked a golden"])
    assert path.read_text() == after
    outcomes = again.parseoutcomes()
    assert outcomes.get("passed") == 3
    assert "failed" not in outcomes
    assert "errors" not in outcomes


def test_all_rewrites_the_misses_and_leaves_the_passes(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    path = project(pytester, llm_project, answer)
    result = pytester.runpytest("--llm-update-goldens=all")
    assert changed_lines(COMMENTED, path.read_text()) == [
        "-      expected: {product: kettle, star_rating: 4, likes: [fast]}   # wrong on purpose",
        "+      expected: {product: kettle, star_rating: 5, likes: [fast]}   # wrong on purpose",
        "+      expected: {product: chair, star_rating: 2, likes: []}",
        '-    - {id: mug, inputs: {review: "The mug"}}',
        '+    - {id: mug, inputs: {review: "The mug"}, expected: {product: mug, '
        "star_rating: 3, likes: ['yes']}}",
    ]  # the lamp passed: its block golden, comment and all, is untouched
    result.stdout.fnmatch_lines(["*: 3 written, 0 skipped; review*", "  written  *:9 kettle"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert pytester.runpytest().ret == pytest.ExitCode.OK


def test_without_the_flag_a_case_with_no_golden_is_an_error_that_says_what_to_run(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    project(pytester, llm_project, answer, ini="llmeval_threshold = 0.5")
    result = pytester.runpytest("--llm-save=run.json")
    result.stdout.fnmatch_lines([
        "*case 'chair', model m1: no golden yet: the case has no `expected:`; run pytest "
        "with --llm-update-goldens=missing --llm-models=m1 to write this model's answer "
        "into it, then review it with git diff",
    ])  # fmt: skip
    assert result.parseoutcomes()["failed"] == 2  # chair and mug
    # They count against the gate as errors: 1 pass (lamp) of 4 answers is below 0.5.
    records = json.loads((pytester.path / "run.json").read_text())["records"]
    assert sorted((r["case"], r["outcome"]) for r in records) == [
        ("chair", "error"), ("kettle", "miss"), ("lamp", "pass"), ("mug", "error")]  # fmt: skip
    result.stdout.fnmatch_lines(["*reviews*m1*25.0%*"])
    assert (pytester.path / "reviews.llmeval.yaml").read_text() == COMMENTED


def test_skipped_cases_are_listed_with_the_reason(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    def mixed(request: Request) -> Any:
        text = request.last_user_content
        if "chair" in text:
            return Reply(status=400, error_message="bad request, on purpose")
        if "mug" in text:
            return "I think it is a mug, three stars."
        return answer(request)

    project(pytester, llm_project, mixed)
    result = pytester.runpytest("--llm-update-goldens=all", "--llm-max-retries=0")
    result.stdout.fnmatch_lines([
        "llmeval goldens (--llm-update-goldens=all): 1 written, 2 skipped; review*",
        "  written  reviews.llmeval.yaml:9 kettle",
        "  skipped  reviews.llmeval.yaml:14 chair: errored: no answer: *bad request, on purpose*",
        "  skipped  reviews.llmeval.yaml:21 mug: the answer is not JSON: invalid JSON*",
    ])  # fmt: skip
    assert changed_lines(COMMENTED, (pytester.path / "reviews.llmeval.yaml").read_text()) == [
        "-      expected: {product: kettle, star_rating: 4, likes: [fast]}   # wrong on purpose",
        "+      expected: {product: kettle, star_rating: 5, likes: [fast]}   # wrong on purpose",
    ]


def test_repeats_write_only_what_every_repeat_agrees_on(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    seen: dict[str, int] = {}

    def wavering(request: Request) -> Any:
        value = answer(request)
        if value["product"] != "mug":
            return value
        seen["mug"] = seen.get("mug", 0) + 1
        return {**value, "star_rating": seen["mug"]}  # another rating each time

    project(pytester, llm_project, wavering)
    result = pytester.runpytest("--llm-update-goldens=missing", "--llm-repeat=2")
    result.stdout.fnmatch_lines([
        "*: 1 written, 1 skipped; review*",
        "  written  reviews.llmeval.yaml:14 chair (all 2 answers agree)",
        "  skipped  reviews.llmeval.yaml:21 mug: its 2 answers disagree (2 different values)*",
    ])  # fmt: skip


def test_a_borrowed_case_is_written_in_the_file_that_spells_it(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    project(pytester, llm_project, answer)
    borrowing = pytester.path / "strict.llmeval.yaml"
    borrowing.write_text("suite: strict\ncases_from: reviews.llmeval.yaml\n")
    result = pytester.runpytest("--llm-update-goldens=missing")
    result.stdout.fnmatch_lines(["*: 2 written, 0 skipped*"])
    assert borrowing.read_text() == ("suite: strict\ncases_from: reviews.llmeval.yaml\n")
    assert len(changed_lines(COMMENTED, (pytester.path / "reviews.llmeval.yaml").read_text())) == 3


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--llm-models=m1,m2"], "writes one model's answers as the goldens: pass "
         "--llm-models=ONE (this run has 2: m1, m2)"),
        (["--llm-record=none"], "--llm-record=none forbids asking"),
        (["--llm-dry-run"], "--llm-dry-run asks nothing"),
    ],
    ids=["several-models", "record-none", "dry-run"],
)  # fmt: skip
def test_refused_as_a_usage_error(
    pytester: pytest.Pytester, llm_project: LLMProject, args: list[str], said: str
) -> None:
    project(pytester, llm_project, answer, more={"m2": answer})
    result = pytester.runpytest("--llm-models=m1", "--llm-update-goldens=missing", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert said in result.stderr.str()
    assert (pytester.path / "reviews.llmeval.yaml").read_text() == COMMENTED


def test_under_xdist_the_controller_writes_each_file_once(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    project(pytester, llm_project, answer)
    second = COMMENTED.replace("suite: reviews", "suite: more")
    (pytester.path / "more.llmeval.yaml").write_text(second)
    result = pytester.runpytest_subprocess("-n", "2", "--llm-update-goldens=all")
    result.stdout.fnmatch_lines(["*: 6 written, 0 skipped; review*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    for name, text in (("reviews", COMMENTED), ("more", second)):
        after = (pytester.path / f"{name}.llmeval.yaml").read_text()
        assert len(changed_lines(text, after)) == 5, name
    assert pytester.runpytest_subprocess("-n", "2").ret == pytest.ExitCode.OK


# Values as a JSON answer may hold: keys and strings YAML 1.1 would read as something else
# (yes, on, ~, 1e3, dates), YAML's flow indicators, quotes, line breaks, any character.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
    | st.sampled_from(["yes", "on", "~", "1e3", "2001-01-01", "a: b", "[x]", "#c", "- x"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(value=json_values, flow=st.booleans())
def test_any_json_value_is_written_so_that_it_reads_back(value: Any, flow: bool) -> None:
    golden = "{a: 1}" if flow else "\n        a: 1"
    text = (
        "suite: s\nprompt: {user: '{q}'}\nresponse_format: text\ncases:\n"
        f"    - id: old  # kept\n      inputs: {{q: x}}\n      expected: {golden}\n"
        "    - id: new\n      inputs: {q: y}\n"
    )
    out = rewrite_text(text, {"old": value, "new": value}, "s.llmeval.yaml")
    assert out.written == ("old", "new")
    data = yaml.safe_load(out.text)
    assert [case["expected"] for case in data["cases"]] == [value, value]
    assert out.text.startswith(text.split("      expected:")[0])


def test_an_alias_is_not_rewritten_and_a_missing_case_is_said() -> None:
    text = (
        "suite: s\nprompt: {user: '{q}'}\ncases:\n"
        "  - id: a\n    inputs: {q: x}\n    expected: &g {x: 1}\n"
        "  - id: b\n    inputs: {q: y}\n    expected: *g\n"
    )
    out = rewrite_text(text, {"a": {"x": 2}, "b": {"x": 3}, "c": {}}, "s.llmeval.yaml")
    assert out.written == ()
    assert out.skipped == {
        "a": "its `expected:` is an anchor or an alias: write it by hand",
        "b": "its `expected:` is an anchor or an alias: write it by hand",
        "c": "no case with this id in the file any more",
    }
    assert out.text == text
