"""The judge and the per-field scorers: grades read from free text, fields scored each their
own way, and judged suites end to end against the test server acting as the judge."""

from __future__ import annotations

import json
import re

import pytest

from pytest_llmeval.scoring.fields import normalize, score_field
from pytest_llmeval.scoring.judge import DEFAULT_PROMPT, NUDGE, parse_grade
from pytest_llmeval.suite.rules import FieldRule
from tests.conftest import REVIEWS, oracle, write_config
from tests.openai_server import OpenAIServer, Reply, Request


@pytest.mark.parametrize(
    ("said", "grade"),
    [
        ("The answer lists both complaints.\nGRADE: CORRECT", "CORRECT"),
        ("Step 1: ...\nGRADE: INCORRECT", "INCORRECT"),
        ("**Grade:** correct.", "CORRECT"),
        ("grade = Incorrect", "INCORRECT"),
        ("GRADE: not correct", "INCORRECT"),
        ("It misses one dislike.\n\nINCORRECT", "INCORRECT"),
        ("Looks the same to me. Correct.", "CORRECT"),
        ("Both items are there: **CORRECT**", "CORRECT"),
        ("First GRADE: CORRECT\nOn reflection... GRADE: INCORRECT", "INCORRECT"),
        ("", None),
        ("I cannot tell.", None),
        ("Is it correct or incorrect? Hard to say.", None),
        ("It was graded incorrectly before.", None),
        ("GRADE: maybe", None),
        (DEFAULT_PROMPT, None),  # a judge that only echoes its instructions
        ("CORRECTに通りに", "CORRECT"),  # a small model running on into another script
        ("CORRECTButtonClicked", "CORRECT"),  # an opening verdict in capitals
        ("Correctly, the answer names both.", None),
        ("CORRECTLY lists nothing; wrong", None),
        # Prose about correctness is no grade: the judge is asked again.
        ("The answer isn't correct.", None),
        ("This is not the correct answer.", None),
        ("Is it correct? No.", None),
        ("The answer is wrong.\nThe reference is correct.", None),
    ],
)
def test_grades_are_read_from_what_the_judge_says(said: str, grade: str | None) -> None:
    assert parse_grade(said) == grade


@pytest.mark.parametrize(
    ("rule", "expected", "actual", "passed"),
    [
        (FieldRule("exact"), 2, 2.0, True),
        (FieldRule("exact"), True, 1, False),
        (FieldRule("exact"), "Desk chair", "desk chair", False),
        (FieldRule("normalized"), "Desk chair", "  desk-chair! ", True),
        (FieldRule("normalized"), "desk chair", "office chair", False),
        (FieldRule("numeric", tolerance=0.5), 4, 4.5, True),
        (FieldRule("numeric", tolerance=0.5), 4, 4.6, False),
        (FieldRule("numeric"), 4, "4", False),
        (FieldRule("unordered"), ["a", "b", "b"], ["b", "a", "b"], True),
        (FieldRule("unordered"), ["a", "b", "b"], ["a", "b"], False),
        (FieldRule("fuzzy_list", threshold=0.8), ["height adjustment faulty"],
         ["Height adjustment is faulty"], True),
        (FieldRule("fuzzy_list", threshold=0.8), ["uncomfortable"], ["comfortable seat"], False),
        (FieldRule("fuzzy_list"), ["quiet"], ["quiet", "cheap"], False),
        (FieldRule("fuzzy_list"), [], [], True),
    ],
)  # fmt: skip
def test_field_scorers(rule: FieldRule, expected: object, actual: object, passed: bool) -> None:
    assert score_field(rule, expected, actual).passed is passed


def test_normalized_text_ignores_case_punctuation_and_spacing() -> None:
    assert normalize("  The  Height-Adjustment, faulty! ") == "the height adjustment faulty"


# -- judged suites end to end --------------------------------------------------------------

JUDGED_SUITE = """\
suite: reviews
prompt:
  system: Extract product, star_rating, specific_likes, specific_dislikes as JSON.
  user: "{review}"
scoring:
  method: fields
  fields:
    product: normalized
    star_rating: {method: numeric, tolerance: 0}
    specific_likes: unordered
    specific_dislikes: judge
cases:
"""


def judged_suite(scoring: str | None = None) -> str:
    text = JUDGED_SUITE if scoring is None else re.sub(
        r"scoring:\n(  .*\n)+", scoring, JUDGED_SUITE
    )  # fmt: skip
    for case_id, (review, expected) in REVIEWS.items():
        text += f"  - id: {case_id}\n    inputs: {{review: {json.dumps(review)}}}\n"
        text += f"    expected: {json.dumps(expected)}\n"
    return text


def reworded(request: Request) -> dict[str, object]:
    """Right, but every dislike said in other words (and the product in capitals)."""
    answer = oracle(request)
    return {
        **answer,
        "product": str(answer["product"]).upper(),
        "specific_dislikes": [f"the {d} part" for d in answer["specific_dislikes"]],  # type: ignore[attr-defined]
    }


def section(prompt: str, title: str) -> str:
    return prompt.split(title + "\n", 1)[1].split("\n\n", 1)[0]


def fair_judge(request: Request) -> Reply:
    """CORRECT when every reference dislike's words appear in the graded answer."""
    prompt = request.last_user_content
    reference = json.loads(section(prompt, "Reference answer:"))
    answer = section(prompt, "Answer to grade:")
    right = all(word in answer for item in reference for word in item.split())
    grade = "CORRECT" if right else "INCORRECT"
    return Reply(content=f"The answer covers {'all' if right else 'not all'} items.\nGRADE: {grade}",
                 prompt_tokens=100, completion_tokens=10)  # fmt: skip


def judge_config(pytester: pytest.Pytester, server: OpenAIServer, ini: str = "") -> None:
    """m1 under test; the judge configured (priced), not in the matrix."""
    pytester.makepyprojecttoml(f"""
[tool.pytest.ini_options]
llmeval_models = "m1"
llmeval_judge_model = "judge"
{ini}

[tool.llmeval.models.m1]
base_url = "{server.url}"
price = {{input_per_1k = 0.001, output_per_1k = 0.002}}

[tool.llmeval.models.judge]
base_url = "{server.url}"
price = {{input_per_1k = 0.01, output_per_1k = 0.02}}
""")


def judged_project(pytester: pytest.Pytester, server: OpenAIServer) -> None:
    """m1 rewording the dislikes, a fair judge, and the mixed per-field suite."""
    server.on("m1", reworded)
    server.on("judge", fair_judge)
    judge_config(pytester, server)
    pytester.makefile(".llmeval.yaml", reviews=judged_suite())


def test_a_mixed_suite_scores_each_field_its_own_way(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    judged_project(pytester, openai_server)
    result = pytester.runpytest()
    assert result.parseoutcomes() == {"passed": 3}
    # Two reviews have dislikes to judge; the kettle's (none) match exactly, so no judge.
    judged = [r for r in openai_server.requests if r.model == "judge"]
    assert len(judged) == 2
    out = result.stdout.str()
    # The judge's cost apart: 2 answers x (100 x $0.01 + 10 x $0.02) / 1000 = $0.0024.
    header = next(line for line in result.stdout.lines if line.startswith("model "))
    assert header.endswith("cost  judge cost")
    row = next(line for line in result.stdout.lines if line.startswith("m1 "))
    assert row.endswith("$0.0024")
    for field in ("product", "star_rating", "specific_likes", "specific_dislikes"):
        assert re.search(rf"^{field} +100\.0%$", out, re.M), out


def test_a_wrong_field_fails_the_case_and_the_judge_says_why(
    pytester: pytest.Pytester, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the judge's words on one line, not folded

    def wrong_dislikes(request: Request) -> dict[str, object]:
        answer = oracle(request)
        return {**answer, "specific_dislikes": ["price"] if answer["specific_dislikes"] else []}

    openai_server.on("m1", wrong_dislikes)
    openai_server.on("judge", fair_judge)
    judge_config(pytester, openai_server)
    pytester.makefile(".llmeval.yaml", reviews=judged_suite())
    result = pytester.runpytest()
    assert result.parseoutcomes() == {"passed": 1, "missed": 2}
    result.stdout.fnmatch_lines([
        "MISS reviews.llmeval.yaml::desk-chair[[]m1[]]*",
        "*specific_dislikes: the judge graded it INCORRECT: The answer covers not all items. GRADE: INCORRECT",
    ])  # fmt: skip
    assert re.search(r"^specific_dislikes +33\.3%$", result.stdout.str(), re.M)


def test_an_unreadable_grade_is_asked_again_once_then_is_an_error(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("m1", reworded)

    # desk-chair: unreadable, then a grade; headphones: unreadable twice.
    def vague_judge(request: Request) -> str:
        asked_again = len(request.messages) > 1
        if "band pinches" in request.messages[0]["content"] or not asked_again:
            return "Hmm, hard to say."
        return "GRADE: CORRECT"

    openai_server.on("judge", vague_judge)
    judge_config(pytester, openai_server)
    pytester.makefile(".llmeval.yaml", reviews=judged_suite())
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines([
        "reviews.llmeval.yaml:*: case 'headphones', model m1: not judged: judge judge gave "
        "no CORRECT/INCORRECT grade for 'specific_dislikes' in 2 answers; it last said: "
        "'Hmm, hard to say.'",
    ])  # fmt: skip
    judged = [r for r in openai_server.requests if r.model == "judge"]
    assert len(judged) == 4
    # Asked again with its own answer in view and a nudge to grade.
    again = [r.messages for r in judged if len(r.messages) > 1]
    assert len(again) == 2
    assert [m["role"] for m in again[0]] == ["user", "assistant", "user"]
    assert again[0][1]["content"] == "Hmm, hard to say."
    assert again[0][2]["content"] == NUDGE


def test_judge_answers_are_recorded_and_replayed(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    judged_project(pytester, openai_server)
    pytester.runpytest().assert_outcomes(passed=3)
    calls = openai_server.calls()
    recorded = sorted(p.name for p in (pytester.path / "llmeval-cache" / "reviews").iterdir())
    assert len([n for n in recorded if ".judge-specific_dislikes.judge." in n]) == 2
    again = pytester.runpytest("--llm-record=none", "-v")
    again.assert_outcomes(passed=3)
    again.stdout.fnmatch_lines(["*desk-chair[[]m1[]] PASSED (replayed)*"])
    assert openai_server.calls() == calls
    # The judged answer is part of the judge's key: a new answer is judged anew.
    openai_server.on("m1", lambda r: {**reworded(r), "specific_dislikes": ["other words"]})
    assert pytester.runpytest("--llm-record=all").parseoutcomes() == {"passed": 1, "missed": 2}


def test_whole_answers_judged_and_only_when_different(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("m1", lambda r: oracle(r) if "kettle" in r.last_user_content.lower()
                     else reworded(r))  # fmt: skip
    openai_server.on("judge", "Same meaning.\nGRADE: CORRECT")
    judge_config(pytester, openai_server)
    scoring = "scoring:\n  method: judge\n  judge: {criteria: Ignore letter case.}\n"
    pytester.makefile(".llmeval.yaml", reviews=judged_suite(scoring))
    pytester.runpytest().assert_outcomes(passed=3)
    prompts = [r.last_user_content for r in openai_server.requests if r.model == "judge"]
    assert len(prompts) == 2  # the kettle's exact answer needed no judge
    assert all("Ignore letter case." in p for p in prompts)
    assert all("Input:\nHeadphones" in p or "Input:\nThis desk chair" in p for p in prompts)


def test_a_judged_suite_needs_a_judge_model(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    write_config(pytester, openai_server, ["m1"])
    pytester.makefile(".llmeval.yaml", reviews=judged_suite())
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "reviews.llmeval.yaml: suite 'reviews' is scored by a judge: no judge model: pass "
        "--llm-judge-model=NAME (ini llmeval_judge_model) or set scoring.judge.model",
    ])  # fmt: skip
    assert openai_server.calls() == 0


def test_a_few_shot_judge_gets_its_turns_filled_in(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("m1", reworded)
    openai_server.on("judge", "CORRECT")
    judge_config(pytester, openai_server)
    scoring = (
        "scoring:\n  method: fields\n  ignore_string_case: true\n  fields: {specific_dislikes: judge}\n  judge:\n"
        "    messages:\n"
        '      - {role: user, content: \'Reference: ["loud"] Answer: ["noisy"]\'}\n'
        "      - {role: assistant, content: CORRECT}\n"
        "      - {role: user, content: 'Review: {input} Reference: {reference} Answer: {answer}'}\n"
    )
    pytester.makefile(".llmeval.yaml", reviews=judged_suite(scoring))
    pytester.runpytest().assert_outcomes(passed=3)
    asked = [r.messages for r in openai_server.requests if r.model == "judge"]
    assert len(asked) == 2
    assert [m["role"] for m in asked[0]] == ["user", "assistant", "user"]
    last = {m[-1]["content"] for m in asked}
    assert (
        'Review: Headphones, 3 stars. Great sound, but the band pinches. Reference: ["band pinches"] Answer: ["the band pinches part"]'
        in last
    )


def test_a_judge_turn_without_the_answer_is_a_located_error(pytester: pytest.Pytester) -> None:
    scoring = (
        "scoring:\n  method: judge\n  judge:\n"
        "    messages: [{role: user, content: 'Is {answer} right?'}]\n"
    )
    pytester.makefile(".llmeval.yaml", reviews=judged_suite(scoring))
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\nllmeval_models = "gpt-4o"\n')
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "reviews.llmeval.yaml:8: `judge.messages`: its last turn needs {reference} and {answer}"
    ])  # fmt: skip


def test_under_xdist_each_answer_is_judged_once(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    judged_project(pytester, openai_server)
    result = pytester.runpytest_subprocess("-n", "2")
    assert result.parseoutcomes() == {"passed": 3}
    assert openai_server.calls("m1") == 3
    assert openai_server.calls("judge") == 2
    # Every worker works through every request; the one that does not send a judge
    # request may find it already recorded by the one that did (0 or 1 here, by timing).
    # What matters is above: the judge was asked once per answer.
    result.stdout.fnmatch_lines(
        ["llmeval judge: 2 grades for 2 answers, [01] of those answers judged from recordings"]
    )
