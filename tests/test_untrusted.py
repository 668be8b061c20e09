"""Untrusted input: every model answer and every suite file. Whatever they hold, an answer
is a pass or a miss whose reason names the bound it passed, and a suite file is a Suite or
one located error item beside suites that still run: never a crash, a long traceback or a
long wait. Each failure once measured is reproduced here, then properties over thousands
of random answers, values and files."""

from __future__ import annotations

import contextlib
import difflib
import itertools
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_llmeval.results.saved_run import SavedRun
from pytest_llmeval.scoring import combined
from pytest_llmeval.scoring.fields import (
    MAX_FUZZY_CHARS,
    MAX_FUZZY_ITEMS,
    match,
    normalize,
    score_field,
    similarity,
)
from pytest_llmeval.scoring.structural import (
    MAX_DIFF_LINES,
    InvalidJSON,
    parse_answer,
    score,
    score_value,
)
from pytest_llmeval.suite import load
from pytest_llmeval.suite.load import CaseFileError, load_suite
from pytest_llmeval.suite.model import Suite
from pytest_llmeval.suite.rules import FieldRule, Scoring
from pytest_llmeval.support.bounds import (
    MAX_ANSWER_CHARS,
    MAX_DEPTH,
    MAX_LIST_ITEMS,
    MAX_NUMBER_DIGITS,
    MAX_VALUES,
    over_limit,
)
from tests.conftest import REVIEWS, LLMProject, oracle, suite_yaml

# At least 2,000 examples a property; no example database written into the worktree.
PROPERTY = settings(
    max_examples=2000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
EXPECTED = REVIEWS["kettle"][1]


def nested(depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


# Seconds. What is refused takes milliseconds (unloaded), what is scored at the bounds
# about a second; the room above is for a loaded machine (tests run beside others).
IMMEDIATE = 1.0
AT_THE_BOUNDS = 10.0


def timed(work: Callable[[], Any], repeat: int = 1) -> tuple[Any, float]:
    """The result and the best time of ``repeat`` runs (the least disturbed by load)."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return result, best


def settled(text: str, expected: Any = EXPECTED, scoring: Scoring | None = None) -> Any:
    verdict, to_judge = combined.settle(expected, text, scoring or Scoring(), True)
    assert to_judge == []
    return verdict


# -- answers: each failure once measured ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # 1 KB: INTERNALERROR and exit 3 (a RecursionError turning the record into data).
        ("[" * 500 + "]" * 500, f"answer nested deeper than {MAX_DEPTH} levels"),
        # json's RecursionError: a FAILED item with a 400-1,100-line traceback.
        ("[" * 10_000 + "]" * 10_000, f"answer nested deeper than {MAX_DEPTH} levels"),
        ('{"a": ' * 10_000 + "1" + "}" * 10_000, f"answer nested deeper than {MAX_DEPTH} levels"),
        ("[" * 10_000, f"answer nested deeper than {MAX_DEPTH} levels"),
        ("Here it is: " + "[" * 10_000, f"answer nested deeper than {MAX_DEPTH} levels"),
        # int('1' * 5000): ValueError past Python's 4,300 digits.
        ("1" * 5000, f"answer has a number longer than {MAX_NUMBER_DIGITS} digits"),
        ('{"star_rating": ' + "9" * 5000 + "}", "answer has a number longer than 100 digits"),
        ("0." + "1" * 5000, "answer has a number longer than 100 digits"),
        ('{"star_rating": 1e400}', "answer has a number out of range (1e400)"),
        ('{"star_rating": NaN}', "answer has NaN, which is not a JSON number"),
        ('{"star_rating": -Infinity}', "answer has -Infinity, which is not a JSON number"),
        # 39-54 s in DeepDiff.
        ("[" + "1," * 300_000 + "1]", f"answer longer than {MAX_ANSWER_CHARS:,} characters"),
        (json.dumps(list(range(MAX_LIST_ITEMS + 1))), "answer has a list of more than 100 items"),
        (
            json.dumps({f"f{i}": i for i in range(MAX_LIST_ITEMS + 1)}),
            "answer has an object with more than 100 fields",
        ),
        (
            json.dumps([[0] * 99 for _ in range(11)]),
            f"answer has more than {MAX_VALUES:,} values",
        ),
    ],
    ids=[
        "500-brackets", "10000-deep", "10000-deep-objects", "unclosed", "in-prose",
        "5000-digits", "5000-digit-field", "5000-digit-fraction", "overflow", "nan", "infinity",
        "300000-items", "long-list", "wide-object", "many-values",
    ],
)  # fmt: skip
def test_an_answer_past_a_bound_is_an_immediate_miss_that_names_it(text: str, reason: str) -> None:
    verdict, seconds = timed(lambda: settled(text))
    assert (verdict.outcome, verdict.reason) == ("miss", reason)
    assert verdict.answer is None  # nothing deep or huge goes on into the record
    assert verdict.fields == dict.fromkeys(EXPECTED, False)
    assert verdict.diff[0].startswith("raw answer: ")
    assert len(verdict.diff[0]) < 200
    assert seconds < IMMEDIATE


def test_each_bound_itself_is_still_scored() -> None:
    for answer in (
        nested(MAX_DEPTH),
        list(range(MAX_LIST_ITEMS)),
        {f"f{i}": i for i in range(MAX_LIST_ITEMS)},
        [[0] * 99] * 9 + [[0] * 98],  # 1,000 values: the outer list, 10 lists, 989 zeros
        int("9" * MAX_NUMBER_DIGITS),
        "x" * (MAX_ANSWER_CHARS - 2),
    ):
        text = json.dumps(answer)
        assert len(text) <= MAX_ANSWER_CHARS
        assert settled(text, answer).passed, text[:80]
        assert settled(text, answer, Scoring(ignore_order=True)).passed, text[:80]
    assert settled(json.dumps(nested(MAX_DEPTH + 1))).reason.startswith("answer nested deeper")


def test_an_unclosed_code_fence_is_read_in_linear_time() -> None:
    # The fence's regular expression backtracked cubically: 4,000 spaces took 33 s.
    for text in ("``` " + " " * 90_000 + "x", "```json\n" * 10_000, "x ```" + "\t" * 90_000):
        verdict, seconds = timed(lambda text=text: settled(text))
        assert verdict.outcome == "miss"
        assert seconds < IMMEDIATE
    assert parse_answer('Sure:\n```json\n{"a": [1]}\n```\nAnything else?') == {"a": [1]}
    assert parse_answer("```JSON {} ``` and ```[1]```") == {}


def test_brackets_and_digits_inside_strings_are_not_structure() -> None:
    text = json.dumps({"product": "[" * 5000, "notes": "1" * 5000})
    assert parse_answer(text) == {"product": "[" * 5000, "notes": "1" * 5000}
    escaped = json.dumps({"a": '\\"[[[' * 2000})
    assert parse_answer(escaped) == {"a": '\\"[[[' * 2000}


def test_a_python_value_of_any_shape_is_measured_without_recursion() -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(100_000):
        inner.append([])
        inner = inner[0]
    looped: list[Any] = [1]
    looped.append(looped)
    assert over_limit(deep) == f"answer nested deeper than {MAX_DEPTH} levels"
    assert over_limit(looped) == f"answer nested deeper than {MAX_DEPTH} levels"  # for ever
    assert over_limit(10**5000) == "answer has a number longer than 100 digits"
    assert over_limit([math.nan]) == "answer has nan, which is not a JSON number"
    assert over_limit({"a": 1}, "expected") is None
    for value in (deep, looped, 10**5000, [math.inf], {1: "not a JSON key"}, {"s": {1, 2}}):
        verdict, seconds = timed(lambda value=value: score_value({"a": 1}, value, Scoring()))
        assert verdict.outcome == "miss"
        assert seconds < IMMEDIATE
    # An expected value past a bound cannot be matched: every item says so.
    verdict = score_value(nested(MAX_DEPTH + 1), nested(MAX_DEPTH), Scoring())
    assert verdict.reason == f"expected nested deeper than {MAX_DEPTH} levels"


def adversarial() -> Iterator[tuple[str, Any, Any]]:
    """Wrong answers shaped for DeepDiff's slowest paths, within every bound."""
    yield "a chain of lists", nested(MAX_DEPTH - 3, [list(range(99)) for _ in range(9)]), \
        nested(MAX_DEPTH - 3, [list(range(1, 100)) for _ in range(9)])  # fmt: skip
    yield "reordered at depth", nested(MAX_DEPTH - 3, [list(range(99)) for _ in range(9)]), \
        nested(MAX_DEPTH - 3, [[-1, *range(97, 0, -1)] for _ in range(9)])  # fmt: skip
    items = [{"k": i, "v": "x"} for i in range(MAX_LIST_ITEMS)]
    yield "60% of the items changed", items, [{**item, "v": "y"} if item["k"] < 60 else item
                                               for item in items]  # fmt: skip
    yield "chains of lists", [nested(MAX_DEPTH - 3, [1, 2]) for _ in range(19)], \
        [nested(MAX_DEPTH - 3, [2, 3]) for _ in range(19)]  # fmt: skip

    def tree(depth: int, leaf: int) -> Any:
        return leaf if depth == 0 else [tree(depth - 1, leaf), tree(depth - 1, leaf + 1)]

    yield "a binary tree of lists", tree(8, 0), tree(8, 1)
    yield "wide and changed", {f"f{i}": list(range(8)) for i in range(MAX_LIST_ITEMS)}, \
        {f"f{i}": list(range(1, 9))[::-1] for i in range(MAX_LIST_ITEMS)}  # fmt: skip


@pytest.mark.parametrize(
    "scoring",
    [Scoring(), Scoring(ignore_order=True), Scoring(ignore_order=True, numeric_tolerance=0.01)],
    ids=["ordered", "ignore-order", "ignore-order-tolerance"],
)
def test_the_slowest_answers_within_the_bounds_score_in_about_a_second(scoring: Scoring) -> None:
    # Unbounded, the first took 124 s under ignore_order, the third 13 s at 400 items.
    for name, expected, answer in adversarial():
        text = json.dumps({"a": answer})
        assert over_limit(json.loads(text)) is None, name
        verdict, seconds = timed(lambda t=text, e=expected: settled(t, {"a": e}, scoring), 2)
        assert verdict.outcome == "miss", name
        assert seconds < AT_THE_BOUNDS, (name, seconds)


def test_a_right_answer_passes_without_deepdiff_however_large() -> None:
    expected = [{"k": i, "tags": [f"t{i}", f"u{i}"]} for i in range(MAX_LIST_ITEMS)]
    answer = [{"k": float(i), "tags": [f"U{i}", f"T{i}"]} for i in range(MAX_LIST_ITEMS)][::-1]
    scoring = Scoring(ignore_order=True, ignore_string_case=True)
    verdict, seconds = timed(lambda: settled(json.dumps({"a": answer}), {"a": expected}, scoring))
    assert verdict.passed
    assert seconds < IMMEDIATE


def test_a_long_diff_lists_its_first_differences_and_counts_the_rest() -> None:
    many = score({f"f{i}": i for i in range(100)}, json.dumps({f"f{i}": -i for i in range(100)}),
                 Scoring())  # fmt: skip
    assert many.reason == "99 differences"
    assert len(many.diff) == 99
    wide = score({f"f{i}": [i] for i in range(100)},
                 json.dumps({f"f{i}": [i, -i, i + 1] for i in range(100)}), Scoring())  # fmt: skip
    assert wide.reason == "200 differences"
    assert len(wide.diff) == MAX_DIFF_LINES + 1
    assert wide.diff[-1] == "… and 100 more differences"


def test_ints_and_floats_stay_equal_under_ignore_order() -> None:
    # Equal without DeepDiff pairing them, whatever its pairing budget has left.
    assert settled('{"a": [2.0, 1, [3.0, 4]]}', {"a": [1, 2, [4, 3]]},
                   Scoring(ignore_order=True)).passed  # fmt: skip
    assert not settled('{"a": [true, 2]}', {"a": [1, 2]}, Scoring(ignore_order=True)).passed


def test_free_text_is_stripped_on_both_sides() -> None:
    block = "Paris, the capital.\n"  # a YAML block scalar (`|`) ends with a newline
    for scoring in (Scoring(), Scoring(method="fields"), Scoring(ignore_string_case=True)):
        verdict, _ = combined.settle(block, "  Paris, the capital.  \n\n", scoring, False)
        assert verdict.passed, scoring
        assert verdict.answer == "Paris, the capital."
    verdict, _ = combined.settle("  Paris  ", "Lyon", Scoring(), False)
    assert verdict.diff == ('(whole answer): expected "Paris", got "Lyon"',)


def test_a_free_text_answer_past_the_bound_is_not_judged() -> None:
    scoring = Scoring(method="judge")
    verdict, to_judge = combined.settle({"a": 1}, "x" * (MAX_ANSWER_CHARS + 1), scoring, False)
    assert (verdict.outcome, to_judge) == ("miss", [])
    assert verdict.reason == f"answer longer than {MAX_ANSWER_CHARS:,} characters"
    assert combined.settle({"a": 1}, "x" * 1000, scoring, False)[1] != []


# -- fuzzy_list ---------------------------------------------------------------------------

FUZZY = FieldRule("fuzzy_list", threshold=0.7)


def greedy(rule: FieldRule, expected: list[str], actual: list[str]) -> bool:
    """fuzzy_list as it was: each expected item in turn takes its most similar answer."""
    left = [normalize(a) for a in actual]
    for item in expected:
        scores = [difflib.SequenceMatcher(None, normalize(item), a).ratio() for a in left]
        best = max(range(len(left)), key=scores.__getitem__, default=None)
        if best is None or scores[best] < rule.threshold:
            return False
        left.pop(best)
    return not left


def test_fuzzy_list_matches_optimally_where_greedy_matching_depended_on_order() -> None:
    expected = ["boils great sound", "fan boils great"]
    answer = ["boils great", "great sound"]
    assert greedy(FUZZY, expected, answer) is False
    assert greedy(FUZZY, expected[::-1], answer) is True
    for left, right in itertools.product(itertools.permutations(expected),
                                         itertools.permutations(answer)):  # fmt: skip
        assert score_field(FUZZY, list(left), list(right)).passed


def test_fuzzy_similarity_is_the_same_either_way() -> None:
    a, b = "sound fan cheap", "loud band cheap"
    ratios = (
        difflib.SequenceMatcher(None, a, b).ratio(),
        difflib.SequenceMatcher(None, b, a).ratio(),
    )
    assert ratios == (2 / 3, 0.8)  # at threshold 0.8 the old scorer passed one way only
    assert similarity(a, b) == similarity(b, a) == pytest.approx(11 / 15)
    rule = FieldRule("fuzzy_list", threshold=0.8)
    assert score_field(rule, [a], [b]).passed == score_field(rule, [b], [a]).passed
    assert not score_field(rule, [a], [b]).passed


def test_fuzzy_list_keeps_its_meaning() -> None:
    rule = FieldRule("fuzzy_list", threshold=0.8)
    assert score_field(rule, ["Height adjustment faulty"], ["the height-adjustment: FAULTY"]).passed
    extra = score_field(rule, ["quiet"], ["cheap", "Quiet!"])
    assert extra.detail == 'unexpected "cheap" (similarity < 0.8)'
    missing = score_field(rule, ["quiet", "boils fast"], ["quiet"])
    assert missing.detail == 'missing "boils fast" (similarity < 0.8)'
    assert score_field(rule, [1, {"a": 2}], [{"a": 2.0}, 1.0]).passed  # JSON values by JSON
    assert not score_field(rule, ["quiet"], "quiet").passed


def test_fuzzy_list_bounds_its_lists() -> None:
    rule = FieldRule("fuzzy_list", threshold=0.5)
    many = [f"item {i}" for i in range(MAX_FUZZY_ITEMS + 1)]
    result = score_field(rule, many, many)
    assert result.detail == "fuzzy_list compares lists of at most 50 items; expected has 51"
    long = ["word " * 100 for _ in range(5)]
    result = score_field(rule, ["x"], long)
    assert result.detail == (
        f"fuzzy_list compares lists of at most {MAX_FUZZY_CHARS:,} characters; answer has 2,495"
    )
    # At the bounds, every item like every other, it takes well under a second.
    alike = [("great sound " * 4)[: MAX_FUZZY_CHARS // MAX_FUZZY_ITEMS - 1] + str(i % 10)
             for i in range(MAX_FUZZY_ITEMS)]  # fmt: skip
    result, seconds = timed(lambda: score_field(FieldRule("fuzzy_list", threshold=0.0),
                                                alike, alike[::-1]), 3)  # fmt: skip
    assert result.passed
    assert seconds < AT_THE_BOUNDS


def test_unordered_counts_items_in_linear_time() -> None:
    rule = FieldRule("unordered")
    assert score_field(rule, [1, 2, 2], [2, 1.0, 2]).passed
    assert score_field(rule, [2, 1, 2], [2, 3]).detail == "missing 1, 2; unexpected 3"
    big = list(range(5_000))  # compared item by item, 25 million comparisons
    result, seconds = timed(lambda: score_field(rule, big, [*big[::-1], 0]), 3)
    assert result.detail == "unexpected 0"
    assert seconds < IMMEDIATE


# -- suite files: each failure once measured ----------------------------------------------

GOOD = suite_yaml()
RATING = '"star_rating": 2'


def broken(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


BOMB = "\n".join(
    ['bomb0: &b0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"bomb{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 10)}]" for i in range(1, 9)]
)
BROKEN = {
    "control-character": (
        broken("uncomfortable", "uncomfor\x01table"),
        "8: YAML error: the character U+0001 is not allowed in a YAML file; "
        'in a double-quoted string write it as "\\x01"',
    ),
    "float": (broken(RATING, '"star_rating": !!float x'), "9: YAML error: 'x' is not a valid !!float"),
    "bool": (broken(RATING, '"star_rating": !!bool maybe'),
             "9: YAML error: 'maybe' is not a valid !!bool"),
    "timestamp": (broken(RATING, '"star_rating": !!timestamp x'),
                  "9: YAML error: 'x' is not a valid !!timestamp"),
    "long-int": (broken(RATING, '"star_rating": ' + "1" * 5000),
                 "9: YAML error: a number longer than 100 characters"),
    "deep": (broken(RATING, '"star_rating": ' + "[" * 1000 + "]" * 1000),
             f"9: nested deeper than {load.MAX_DEPTH} levels"),
    "method-list": (broken("method: structural", "method: [structural]"),
                    "5: `scoring.method` must be one of fields, judge, structural, not ['structural']"),
    "role-list": (
        broken('prompt:\n  system: Extract product, star_rating, specific_likes, '
               'specific_dislikes as JSON.\n  user: "{review}"',
               'messages:\n  - {role: [user], content: "{review}"}'),
        "3: `messages[0].role` must be one of assistant, developer, system, user, not ['user']",
    ),
    "alias-bomb": (
        broken("cases:", BOMB + "\ncases:"),
        "9: aliases repeat more than 10,000 values (at *b2): refused, so that a few lines "
        "cannot expand into gigabytes",
    ),
    "recursive-alias": (broken('expected: {"product"', 'expected: &r {"self": *r, "product"'),
                        "9: the alias *r is inside the value it names"),
    "nan": (broken(RATING, '"star_rating": .nan'),
            "9: YAML error: '.nan' is not a finite number: NaN and infinities are refused"),
    "infinity": (broken(RATING, '"star_rating": -.inf'),
                 "9: YAML error: '-.inf' is not a finite number: NaN and infinities are refused"),
    "threshold-nan": (broken("cases:", "threshold: .NaN\ncases:"),
                      "6: YAML error: '.NaN' is not a finite number: NaN and infinities are refused"),
    "tolerance-infinity": (
        broken("ignore_string_case: true}", "ignore_string_case: true, numeric_tolerance: .inf}"),
        "5: YAML error: '.inf' is not a finite number: NaN and infinities are refused",
    ),
    "date-input": (broken('{review: "Five', '{when: 2024-01-01, review: "Five'),
                   "11: case 'kettle': `inputs` must be JSON-like"),
    "deep-through-aliases": (
        broken("cases:", "\n".join(["l0: &l0 [1]"] + [f"l{i}: &l{i} [*l{i - 1}]"
                                                      for i in range(1, 70)]) + "\ncases:"),
        f"69: nested deeper than {load.MAX_DEPTH} levels through the alias *l62",
    ),
    "expected-past-a-bound": (
        broken(RATING, '"star_rating": ' + str(list(range(101)))),
        "9: case 'desk-chair': `expected` has a list of more than 100 items: no answer could match it",
    ),
    "cases-from-nul": (
        'suite: j\ncases_from: "a\\0.llmeval.yaml"\n',
        "2: `cases_from: 'a\\x00.llmeval.yaml'` cannot be read: embedded null byte",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("text", "problem"), BROKEN.values(), ids=BROKEN.keys())
def test_a_bad_suite_file_is_one_located_problem_found_quickly(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "s.llmeval.yaml"
    path.write_text(text, encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(CaseFileError) as caught:
        load_suite(path, display="s.llmeval.yaml")
    assert time.perf_counter() - start < IMMEDIATE  # the bomb once took 38 s and 1.8 GB
    lines = caught.value.lines
    assert any(f"s.llmeval.yaml:{problem}" in line for line in lines), lines
    assert all(p.file == "s.llmeval.yaml" and p.line for p in caught.value.problems)


def test_every_bad_scalar_is_reported_at_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "s.llmeval.yaml"
    path.write_text(GOOD.replace(RATING, '"star_rating": !!float x')
                    .replace('"star_rating": 5', '"star_rating": .nan'), encoding="utf-8")  # fmt: skip
    with pytest.raises(CaseFileError) as caught:
        load_suite(path, display="s.llmeval.yaml")
    assert [p.line for p in caught.value.problems] == [9, 12]


def test_aliases_and_merge_keys_within_the_budget_still_load(tmp_path: Path) -> None:
    path = tmp_path / "s.llmeval.yaml"
    path.write_text(
        "suite: s\n"
        "prompt: {user: '{review}'}\n"
        "cases:\n"
        "  - id: a\n"
        "    inputs: &in {review: a chair}\n"
        "    expected: &base {product: chair, tags: [a, b]}\n"
        "  - id: b\n"
        "    inputs: *in\n"
        "    expected: {<<: *base, product: stool}\n",
        encoding="utf-8",
    )
    suite = load_suite(path)
    assert [c.expected for c in suite.cases] == [
        {"product": "chair", "tags": ["a", "b"]},
        {"product": "stool", "tags": ["a", "b"]},
    ]
    assert suite.cases[1].inputs == {"review": "a chair"}


def test_a_file_that_is_not_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "s.llmeval.yaml"
    path.write_bytes(GOOD.encode().replace(b"kettle", b"k\xffttle", 1))
    with pytest.raises(CaseFileError) as caught:
        load_suite(path, display="s.llmeval.yaml")
    (problem,) = caught.value.problems
    assert (problem.line, problem.text[:12]) == (10, "cannot read:")


# -- end to end -------------------------------------------------------------------------------


def test_broken_suites_beside_a_good_one_are_one_error_each_and_the_good_one_runs(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    llm_project({"m1": oracle}, ini='llmeval_threshold = "1.0"')
    for n, (text, _) in enumerate(BROKEN.values()):
        pytester.makefile(".llmeval.yaml", **{f"broken{n}": text.replace("suite: reviews",
                                                                         f"suite: broken{n}")})  # fmt: skip
    result = pytester.runpytest()
    result.assert_outcomes(passed=3, errors=len(BROKEN))
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    assert "Interrupted" not in out
    assert "Traceback" not in out
    for n, (_, problem) in enumerate(BROKEN.values()):
        assert f"broken{n}.llmeval.yaml:{problem}" in out, problem
    result.stdout.fnmatch_lines(["*llmeval: reviews (threshold 100%: needs 3 of 3)*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the error items fail the run


HOSTILE = {
    "brackets": "[" * 500 + "]" * 500,
    "deep": "[" * 10_000 + "]" * 10_000,
    "digits": "1" * 5000,
    "long": "[" + "1," * 300_000 + "1]",
    "nan": '{"product": NaN}',
    "fence": "```" + " " * 20_000 + "x",
}


def test_hostile_answers_are_misses_in_every_report_and_the_results(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    at_the_bound = {**EXPECTED, "product": nested(MAX_DEPTH - 1, "kettle")}  # parsed and kept
    llm_project({**{name: text for name, text in HOSTILE.items()},
                 "bound": json.dumps(at_the_bound)})  # fmt: skip
    result, seconds = timed(lambda: pytester.runpytest(
        "--llm-save=run.json", "--llm-html=report.html", "--llm-markdown=report.md",
        "--junitxml=junit.xml"))  # fmt: skip
    assert result.parseoutcomes() == {"missed": 3 * (len(HOSTILE) + 1)}
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    assert "Traceback" not in out
    saved = SavedRun.load(pytester.path / "run.json")
    reasons = {r.model: r.reason for r in saved.records if r.model != "bound"}
    assert reasons == {
        "brackets": f"answer nested deeper than {MAX_DEPTH} levels",
        "deep": f"answer nested deeper than {MAX_DEPTH} levels",
        "digits": "answer has a number longer than 100 digits",
        "long": f"answer longer than {MAX_ANSWER_CHARS:,} characters",
        "nan": "answer has NaN, which is not a JSON number",
        "fence": "invalid JSON (Expecting value at line 1 column 1)",
    }
    assert len(saved.records) == 3 * (len(HOSTILE) + 1)
    assert {r.outcome for r in saved.records} == {"miss"}
    kept = [r for r in saved.records if r.model == "bound"]
    assert all(r.parsed is not None for r in kept)
    assert all(r.parsed is None for r in saved.records if r.model != "bound")
    for report in ("report.html", "report.md", "junit.xml"):
        assert (pytester.path / report).stat().st_size > 0
    assert result.ret == pytest.ExitCode.OK  # no threshold: misses alone pass
    assert seconds < 6 * AT_THE_BOUNDS


# -- properties -------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet='aAbB é1[]{}"\\ ', max_size=6)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet="abAB_", max_size=3), inner, max_size=4)
    ),
    max_leaves=16,
)
OPTIONS = st.builds(
    Scoring,
    ignore_order=st.booleans(),
    ignore_string_case=st.booleans(),
    numeric_tolerance=st.sampled_from([0.0, 0.5]),
    # An exclusion (of a field no value has) makes DeepDiff compare even equal values.
    exclude_paths=st.sampled_from([(), ("zz",)]),
)
JSONISH = st.text(alphabet='[]{}",:0123456789.eE+-\\ \nNaIfinity`jsonJSON', max_size=200)


@PROPERTY
@given(text=st.text(max_size=200) | JSONISH, expected=JSON_VALUES, json_mode=st.booleans())
def test_any_text_is_an_answer(text: str, expected: Any, json_mode: bool) -> None:
    with contextlib.suppress(InvalidJSON):
        parse_answer(text)
    for scoring in (Scoring(), Scoring(method="fields"), Scoring(method="judge")):
        verdict, _ = combined.settle(expected, text, scoring, json_mode)
        assert verdict.outcome in ("pass", "miss")


@PROPERTY
@given(value=JSON_VALUES | st.floats(), expected=JSON_VALUES, scoring=OPTIONS,
       indent=st.sampled_from([None, 2]))  # fmt: skip
def test_any_json_value_is_an_answer(
    value: Any, expected: Any, scoring: Scoring, indent: Any
) -> None:
    text = json.dumps(value, indent=indent)
    assert score(expected, text, scoring).outcome in ("pass", "miss")
    assert score_value(expected, value, scoring).outcome in ("pass", "miss")
    fenced = f"Here:\n```json\n{text}\n```"
    assert combined.settle(expected, fenced, scoring, True)[0].outcome in ("pass", "miss")


@PROPERTY
@given(value=JSON_VALUES, scoring=OPTIONS)
def test_a_value_scored_against_itself_passes(value: Any, scoring: Scoring) -> None:
    assert score_value(value, value, scoring).passed
    assert score(value, json.dumps(value), scoring).passed
    assert combined.settle(value, json.dumps(value), scoring, True)[0].passed
    for method in ("exact", "normalized", "numeric", "unordered", "fuzzy_list"):
        assert score_field(FieldRule(method, threshold=1.0), value, value).passed, method


WORDS = st.lists(
    st.sampled_from(["quiet", "quite", "fast", "boils", "great", "sound", "band", "fan", "a"]),
    min_size=1,
    max_size=3,
).map(" ".join)
ITEMS = st.lists(WORDS | st.text(alphabet="ab c", max_size=6) | JSON_SCALARS, max_size=6)


@PROPERTY
@given(data=st.data(), expected=ITEMS, answer=ITEMS,
       threshold=st.sampled_from([0.0, 0.5, 0.7, 0.8, 1.0]))  # fmt: skip
def test_unordered_and_fuzzy_list_ignore_the_order_of_either_side(
    data: st.DataObject, expected: list[Any], answer: list[Any], threshold: float
) -> None:
    left = data.draw(st.permutations(expected))
    right = data.draw(st.permutations(answer))
    for rule in (FieldRule("unordered"), FieldRule("fuzzy_list", threshold=threshold)):
        assert score_field(rule, expected, answer) == score_field(rule, left, right), rule


@PROPERTY
@given(a=WORDS | st.text(max_size=12), b=WORDS | st.text(max_size=12))
def test_fuzzy_similarity_is_symmetric(a: str, b: str) -> None:
    assert similarity(a, b) == similarity(b, a)
    assert 0.0 <= similarity(a, b) <= 1.0
    assert similarity(a, a) == 1.0


@PROPERTY
@given(expected=st.lists(WORDS, max_size=5), answer=st.lists(WORDS, max_size=5),
       threshold=st.sampled_from([0.0, 0.5, 0.7, 0.8]))  # fmt: skip
def test_fuzzy_matching_is_the_best_one_to_one_assignment(
    expected: list[str], answer: list[str], threshold: float
) -> None:
    alike = [[similarity(a, b) for b in answer] for a in expected]

    def worth(pairs: Iterator[tuple[int, int]]) -> tuple[int, int]:
        """Pairs at the threshold, then their similarity summed as `match` sums it."""
        kept = [alike[i][j] for i, j in pairs if alike[i][j] >= threshold]
        return len(kept), sum(round(s * 10**6) for s in kept)

    n, m = len(expected), len(answer)
    if n <= m:
        every = [
            zip(range(n), chosen, strict=True) for chosen in itertools.permutations(range(m), n)
        ]
    else:
        every = [
            zip(chosen, range(m), strict=True) for chosen in itertools.permutations(range(n), m)
        ]
    best = max(worth(pairs) for pairs in every)
    pairs = match(expected, answer, threshold)
    assert len(set(pairs.values())) == len(pairs)
    assert all(similarity(expected[i], answer[j]) >= threshold for i, j in pairs.items())
    assert worth(iter(pairs.items())) == best


# Suite files: random YAML, and a valid suite mutated.

YAML_PIECES = [
    "suite: s\n", "cases:\n", "  - id: a\n", "    expected: ", "prompt: {user: '{x}'}\n",
    "inputs: {x: 1}\n", "messages: [{role: user, content: hi}]\n", "scoring: ", "method: ",
    "fields: {a: fuzzy_list}\n", "threshold: ", "judge: {}\n", "response_format: text\n",
    "cases_from: other.llmeval.yaml\n", "[", "]", "{", "}", ", ", ": ", "- ", "? ", "\n",
    "  ", "\t", "'", '"', "\\", "#", "|\n", ">\n", "---\n", "...\n", "%YAML 1.1\n",
    "&a ", "*a", "&b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]", "<<: *a\n", "<<: ", "=",
    "!!float x", "!!bool maybe", "!!timestamp x", "!!int 0x", "!!binary ~", "!!set {a}",
    "!!omap [a]", "!!python/object:os.system", "!mytag ", "!<tag:x> ", ".nan", "-.inf",
    "1e999", "1.0e+999", "0x" + "f" * 120, "1" * 5000, "1:2:3:4:5", "2024-01-01", "~",
    "[" * 100, "{a: " * 70, "\x01", "\x00", "\x85", "\u2028", "\ufeff", "é", "\U0001d11e",
    "role: [user]", "method: [structural]", "[x]: y", "{a: b}: c", "structural", "1.5",
]  # fmt: skip
PRINTABLE = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=4)
RANDOM_YAML = st.lists(st.sampled_from(YAML_PIECES) | PRINTABLE, max_size=24).map(
    "".join
) | st.text(max_size=120)

VALID = suite_yaml(cases={"kettle": REVIEWS["kettle"]})
# Every part of a suite at once: per-field scoring with a judge, a schema, aliases.
RICH = """\
suite: rich
description: every part at once
prompt:
  system: Extract the fields.
  user: "{review}"
response_format: {type: object, properties: {product: {type: string}}}
scoring:
  method: fields
  ignore_string_case: true
  numeric_tolerance: 0.5
  exclude_paths: [notes]
  fields:
    product: normalized
    star_rating: {method: numeric, tolerance: 0.5}
    specific_likes: {method: fuzzy_list, threshold: 0.8}
    tags: unordered
    specific_dislikes: judge
  judge: {model: j, criteria: Be strict., only_when_different: true}
threshold: 0.5
cases:
  - id: kettle
    inputs: &in {review: "Five stars: it boils fast."}
    expected: &kettle {product: kettle, star_rating: 5, specific_likes: [boils fast], tags: [a, b]}
    tags: [ordinary]
    notes: A note.
  - id: kettle-again
    inputs: *in
    expected: {<<: *kettle, star_rating: 4.5}
  - id: own-turns
    messages: [{role: system, content: Be brief.}, {role: user, content: Hi}]
    expected: {product: none, star_rating: 0, specific_likes: [], tags: []}
"""


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from([VALID, RICH]))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        to = draw(st.integers(at, min(len(text), at + 20)))
        kind = draw(st.sampled_from(["insert", "replace", "delete", "repeat"]))
        piece = draw(st.sampled_from(YAML_PIECES) | st.text(max_size=3))
        if kind == "insert":
            text = text[:at] + piece + text[at:]
        elif kind == "replace":
            text = text[:at] + piece + text[to:]
        elif kind == "delete":
            text = text[:at] + text[to:]
        else:
            text = text[:to] + text[at:to] + text[at:]
    return text


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("suites")
    (directory / "other.llmeval.yaml").write_text(VALID, encoding="utf-8")
    return directory


def located(error: CaseFileError, text: str) -> None:
    assert error.problems
    for problem in error.problems:
        assert problem.file == "s.llmeval.yaml", problem
        assert isinstance(problem.line, int), problem
        assert 1 <= problem.line <= len(text.splitlines()) + 1, problem


def loaded(directory: Path, text: str) -> Suite | CaseFileError:
    """The suite in ``text``, or its CaseFileError: every problem with a file and a line,
    and a suite whose every value can be sent, scored and saved as JSON."""
    path = directory / "s.llmeval.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        suite = load_suite(path, display="s.llmeval.yaml")
    except CaseFileError as exc:
        located(exc, text)
        return exc
    for case in suite.cases:
        json.dumps([case.expected, case.inputs], allow_nan=False)
        assert suite.render(case)
    return suite


@PROPERTY
@given(text=RANDOM_YAML)
def test_any_text_as_a_suite_file_is_a_suite_or_located_problems(
    suite_dir: Path, text: str
) -> None:
    loaded(suite_dir, text)


@PROPERTY
@given(text=mutated())
def test_a_mutated_suite_is_a_suite_or_located_problems(suite_dir: Path, text: str) -> None:
    loaded(suite_dir, text)


def test_the_suites_mutated_are_valid(suite_dir: Path) -> None:
    for text in (VALID, RICH):
        assert isinstance(loaded(suite_dir, text), Suite)
