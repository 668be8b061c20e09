"""A swap verdict that cannot be fooled: each way a bad swap could pass as good, tried as
a user would (and the statistics behind the verdicts, against hand-made tables and an
independent implementation)."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_llmeval.report import view
from pytest_llmeval.results.comparison import Paired
from pytest_llmeval.results.gate import ComparisonFailure, decide
from pytest_llmeval.results.records import Record, summarize
from pytest_llmeval.results.stats import Z95, holm, paired_interval, paired_p, wilson
from tests.conftest import kettle_wrong, llmeval, oracle, suite_yaml, write_config
from tests.openai_server import OpenAIServer, Reply, Request


def records(model: str, outcomes: str, *, suite: str = "s", threshold: float | None = None,
            repeat: int = 0) -> list[Record]:  # fmt: skip
    outcome = {"p": "pass", "m": "miss", "e": "error"}
    return [Record(suite=suite, case=f"c{n}", model=model, nodeid=f"{suite}::c{n}[{model}]",
                   file="s.yaml", line=n + 1, outcome=outcome[o],  # type: ignore[arg-type]
                   threshold=threshold, repeat=repeat)
            for n, o in enumerate(outcomes)]  # fmt: skip


# 1. Errors are never an escape.


def test_a_model_whose_endpoint_is_down_fails_the_gate_by_name(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("up", oracle)
    pytester.makepyprojecttoml(f"""
[tool.pytest.ini_options]
llmeval_models = "up,down"
[tool.llmeval.models.up]
base_url = "{openai_server.url}"
[tool.llmeval.models.down]
base_url = "http://127.0.0.1:9/v1"
""")
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest("--llm-threshold=0.8", "--llm-max-retries=0",
                                "--llm-markdown=summary.md", "--llm-save=run.json")  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "down * 3 * 0 * 0 * 3 * 0.0% *",
        "llmeval gate FAILED: reviews / down: accuracy 0.0% is below the threshold 80.0% by "
        "80.0 points; missed: none; errored: desk-chair, headphones, kettle",
    ])  # fmt: skip
    assert "llmeval gate passed" not in result.stdout.str()
    assert "**Gate: FAILED**" in (pytester.path / "summary.md").read_text()
    again = llmeval("gate", str(pytester.path / "run.json"))
    assert again.returncode == 1
    assert "reviews / down: accuracy 0.0% (0 of 3)" in again.stdout


def test_a_model_that_errors_exactly_where_it_would_miss_is_not_at_100_percent() -> None:
    # Right on 110, errored on the 4 it would have missed: 110 of 114, not 110 of 110.
    decision = decide(records("m", "p" * 110 + "e" * 4, threshold=0.99))
    (summary,) = decision.summaries
    assert summary.accuracy == pytest.approx(110 / 114)
    assert decision.state == "FAILED"
    # The down model alone: 0%, failed, not "no threshold set".
    alone = decide(records("down", "eee", threshold=0.8))
    assert alone.state == "FAILED"
    assert view.gate_lines(alone)[0].text.startswith("FAILED: s / down: accuracy 0.0%")


def test_an_error_is_a_loss_for_the_side_that_errored_in_the_pairing() -> None:
    # The candidate errors on the cases the reference got right: that is worse, not p = 1.
    ref = records("ref", "pppppppppp" + "mmmmm")
    cand = records("cand", "eeeeeeeeee" + "mmmmm")
    (c,) = decide([*ref, *cand], reference="ref").comparisons
    assert (c.paired.only_reference, c.paired.only_candidate) == (10, 0)
    assert c.worse


# 2. Repeats are clustered by case.


@pytest.mark.parametrize("times", [3, 10])
def test_asking_again_for_the_same_answers_changes_no_bound(times: int) -> None:
    once = records("m", "p" * 12 + "m" * 3)
    again = [r for n in range(times) for r in records("m", "p" * 12 + "m" * 3, repeat=n)]
    (one,) = summarize(once)
    (many,) = summarize(again)
    assert one.interval == pytest.approx(many.interval)
    assert many.accuracy == one.accuracy == 0.8
    # Strict: 12 of 15 has its lower bound at 54.8%: failed, however often it is asked.
    for answers in (once, again):
        strict = decide([replace_threshold(r, 0.7) for r in answers], confidence="strict")
        assert strict.state == "FAILED"


def replace_threshold(record: Record, threshold: float) -> Record:
    return Record.from_dict({**record.to_dict(), "threshold": threshold})


def test_flaky_cases_count_for_more_than_one_but_less_than_all_their_answers() -> None:
    # Four cases right every time, four right one time in two, each asked four times:
    # case means 1 and 0.5, mean 0.75, spread 1/16 against 3/16 were every case all right
    # or all wrong: the effective number of cases is 8 x 3 = 24 (of 32 answers).
    answers = [r for n in range(4) for r in records("m", "pppp" + ("pppp" if n % 2 else "mmmm"),
                                                    repeat=n)]  # fmt: skip
    (s,) = summarize(answers)
    assert s.accuracy == 0.75
    assert s.interval == pytest.approx(wilson(18, 24))


# 3. One method for the paired interval and its verdict.


def test_the_interval_excludes_zero_exactly_when_p_is_below_five_percent() -> None:
    """Every paired table of up to 40 cases."""
    disagreements = []
    for n in range(1, 41):
        for b in range(n + 1):
            for c in range(n + 1 - b):
                low, high = paired_interval(b, c, n)
                if (low > 0 or high < 0) != (paired_p(b, c, n) < 0.05):
                    disagreements.append((n, b, c))
    assert disagreements == []


@pytest.mark.parametrize(
    ("table", "interval"),
    [
        # (both, neither, only reference, only candidate) → candidate minus reference.
        ((30, 30, 0, 0), (-0.0750, 0.0750)),  # nobody differs: no collapse to 0 to 0
        ((1, 0, 0, 0), (-0.9454, 0.9454)),  # n = 1
        ((0, 60, 0, 0), (-0.0750, 0.0750)),  # all wrong
        ((60, 0, 0, 0), (-0.0750, 0.0750)),  # all right
        ((14, 14, 10, 22), (0.0071, 0.3783)),  # the issue's 14/10/22/14
    ],
)
def test_paired_intervals_by_hand(
    table: tuple[int, int, int, int], interval: tuple[float, float]
) -> None:
    paired = Paired(*table)
    assert paired.interval() == pytest.approx(interval, abs=1e-4)


def test_the_issues_table_has_one_answer_from_interval_and_p_value() -> None:
    # Newcombe's interval excluded 0 beside McNemar's exact p = 0.0501; one method says
    # one thing: the interval excludes 0 and p = 0.042.
    paired = Paired(both=14, neither=14, only_reference=10, only_candidate=22)
    low, _ = paired.interval()
    assert low > 0
    assert paired.p_value == pytest.approx(0.0421, abs=1e-4)


def reference_statistic(b: int, c: int, n: int, delta: float) -> float:
    """The same score statistic with the nuisance share found numerically: the likelihood
    of (b, c, rest) maximised over the reference-only share q, the candidate-only share
    being q + delta (golden-section search), instead of the closed form."""
    low_q, high_q = max(0.0, -delta), min(1.0, (1 - delta) / 2)

    def log_likelihood(q: float) -> float:
        shares = (q + delta, q, 1 - 2 * q - delta)
        return sum(k * math.log(p) for k, p in zip((b, c, n - b - c), shares, strict=True)
                   if k)  # fmt: skip

    ratio = (math.sqrt(5) - 1) / 2
    lo, hi = low_q + 1e-12, high_q - 1e-12
    for _ in range(60):
        x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if log_likelihood(x1) < log_likelihood(x2):
            lo = x1
        else:
            hi = x2
    q = (lo + hi) / 2
    gap = b - c - n * delta
    gap = math.copysign(max(0.0, abs(gap) - 0.5), gap)
    return gap / math.sqrt(n * (2 * q + delta * (1 - delta)))


def reference_interval(b: int, c: int, n: int) -> tuple[float, float]:
    """Where the reference statistic crosses -z and +z, found on a grid of 1/2000 and then
    halved down to 1e-7."""
    grid = [d / 2000 for d in range(-1999, 2000)]
    kept = [d for d in grid if abs(reference_statistic(b, c, n, d)) <= Z95]

    def edge(inside: float, outside: float) -> float:
        while abs(outside - inside) > 1e-7:
            middle = (inside + outside) / 2
            if abs(reference_statistic(b, c, n, middle)) <= Z95:
                inside = middle
            else:
                outside = middle
        return inside

    return edge(kept[0], max(-1.0, kept[0] - 1 / 2000)), edge(
        kept[-1], min(1.0, kept[-1] + 1 / 2000)
    )


@pytest.mark.parametrize(("b", "c", "n"), [
    (0, 0, 1), (1, 0, 1), (0, 0, 10), (3, 0, 10), (0, 7, 12), (2, 5, 12), (6, 6, 12),
    (5, 1, 20), (12, 3, 30), (0, 0, 60), (22, 10, 60), (4, 15, 142),
])  # fmt: skip
def test_the_paired_interval_agrees_with_an_independent_implementation(
    b: int, c: int, n: int
) -> None:
    low, high = paired_interval(b, c, n)
    ref_low, ref_high = reference_interval(b, c, n)
    assert low == pytest.approx(ref_low, abs=1e-5)
    assert high == pytest.approx(ref_high, abs=1e-5)


@given(
    st.integers(1, 300).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(0, n)).flatmap(
            lambda nb: st.tuples(st.just(nb[0]), st.just(nb[1]), st.integers(0, nb[0] - nb[1]))
        )
    )
)
def test_paired_intervals_are_ordered_mirrored_and_contain_the_estimate(
    table: tuple[int, int, int],
) -> None:  # fmt: skip
    n, b, c = table
    low, high = paired_interval(b, c, n)
    estimate = (b - c) / n
    assert -1 <= low <= estimate <= high <= 1
    assert high - low > 0  # never collapses, even with nobody differing
    mirror = paired_interval(c, b, n)
    assert mirror == pytest.approx((-high, -low), abs=1e-9)
    assert 0 <= paired_p(b, c, n) <= 1


# 4. WORSE fails the run, in every report's words.


def test_a_candidate_shown_worse_fails_the_run_llmeval_gate_and_the_markdown(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    cases = {f"case{i}": (f"Review number {i}.", {"n": i}) for i in range(8)}

    def right(request: Request) -> dict[str, int]:
        found = re.search(r"Review number (\d+)", request.last_user_content)
        assert found is not None
        return {"n": int(found.group(1))}

    openai_server.on("ref", right)
    openai_server.on("cand", {"n": -1})
    write_config(pytester, openai_server, ["ref", "cand"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml(cases=cases))
    result = pytester.runpytest("--llm-reference-model=ref", "--llm-save=run.json",
                                "--llm-markdown=summary.md")  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # 2 x (1 - Phi(7.5 / sqrt 8)) = 0.008
    worse = ("reviews / cand: WORSE than ref by 100.0 points on 8 cases (p = 0.008): "
             "8 right only by ref, 0 only by cand")  # fmt: skip
    result.stdout.fnmatch_lines(["cand: WORSE than ref (p = 0.008 < 0.05)",
                                 f"llmeval gate FAILED: {worse}"])  # fmt: skip
    summary = (pytester.path / "summary.md").read_text()
    assert "**Gate: FAILED**" in summary
    assert f"- FAILED: {worse}" in summary
    assert "- cand: WORSE than ref (p = 0.008 < 0.05)" in summary
    again = llmeval("gate", str(pytester.path / "run.json"))
    assert again.returncode == 1
    assert f"llmeval gate FAILED: {worse}" in again.stdout


def test_tiny_p_values_print_as_below_a_thousandth() -> None:
    # 134 against 120 of 142: 14 cases only the reference got right, none the other way.
    paired = Paired(both=120, neither=8, only_reference=14, only_candidate=0)
    assert paired.p_value < 0.001
    assert view.p_text(paired.p_value) == "p < 0.001"
    (c,) = decide([*records("ref", "p" * 134 + "m" * 8),
                   *records("cand", "p" * 120 + "m" * 22)], reference="ref").comparisons  # fmt: skip
    assert view.verdict_text(c) == "cand: WORSE than ref (p < 0.001 < 0.05)"


# 5. Non-inferiority: the swap question.


def test_the_swap_margin_accepts_only_a_candidate_shown_within_it() -> None:
    ref = records("ref", "p" * 400 + "m" * 100)
    same = records("cand", "p" * 398 + "m" * 2 + "p" * 2 + "m" * 98)  # 2 lost, 2 won
    close = decide([*ref, *same], reference="ref", swap_margin=5)
    (c,) = close.comparisons
    assert c.within_margin
    assert close.failures == ()
    assert view.margin_text(c) == (
        "cand: could be up to 1.0 points worse than ref (one-sided 95% bound; margin 5): "
        "within the margin"
    )
    # Few cases: the same no-difference, but the data cannot show it within 5 points.
    few = decide([*records("ref", "p" * 30 + "m" * 10), *records("cand", "p" * 30 + "m" * 10)],
                 reference="ref", swap_margin=5)  # fmt: skip
    (failure,) = few.failures
    assert isinstance(failure, ComparisonFailure)
    assert failure.reason == "margin"
    assert view.failure_text(failure) == (
        "s / cand: could be up to 8.5 points worse than ref (one-sided 95% bound; margin 5): "
        "not shown within the margin"
    )


# 7. Multiplicity is said and handled.


def test_a_candidates_comparisons_over_several_suites_are_holm_adjusted() -> None:
    both = [r for s in ("a", "b", "c") for r in records("ref", "pppppp", suite=s)]
    lost = [*records("cand", "mmmmmm", suite="a"), *records("cand", "pppppp", suite="b"),
            *records("cand", "pppppp", suite="c")]  # fmt: skip
    decision = decide([*both, *lost], reference="ref")
    a, b, c = decision.comparisons
    assert (a.family, b.family, c.family) == (3, 3, 3)
    assert a.adjusted_p == pytest.approx(min(1.0, 3 * a.paired.p_value))
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # 6 of 6 lost alone is p = 0.025; over three suites it is 0.074: no longer WORSE.
    assert not a.worse
    assert view.verdict_text(a).startswith(
        "cand: no significant difference from ref (p = 0.074; Holm-adjusted over 3 comparisons "
        "of cand)"
    )


# 8. Pre-flight.


def test_pytest_help_works_with_the_plugin_installed(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*--llm-swap-margin=LLM_SWAP_MARGIN*"])
    assert "95% interval" in result.stdout.str()


def test_a_misspelt_ini_key_stops_the_run_with_what_it_meant(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\nllmeval_treshold = 0.9\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*llmeval: *pyproject.toml: unknown option 'llmeval_treshold' (did you mean "
        "'llmeval_threshold'?)"
    ])  # fmt: skip


@pytest.mark.parametrize("flag", ["--collect-only", "--llm-dry-run"])
def test_listing_or_a_dry_run_fails_beside_an_invalid_suite(
    pytester: pytest.Pytester, openai_server: OpenAIServer, flag: str
) -> None:
    write_config(pytester, openai_server, ["m1"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml(), broken="suite: broken\ncases: [1]\n")
    result = pytester.runpytest(flag)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["llmeval: invalid case file:", "broken.llmeval.yaml:2: *"])


def test_after_a_failed_gate_last_failed_reruns_exactly_its_misses(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("m1", oracle)
    openai_server.on("m2", kettle_wrong)
    write_config(pytester, openai_server, ["m1", "m2"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    first = pytester.runpytest("--llm-threshold=0.9")
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    again = pytester.runpytest("--llm-threshold=0.9", "--lf", "-v")
    again.stdout.fnmatch_lines(["*run-last-failure: rerun previous 1 failure*"])
    again.stdout.fnmatch_lines(["reviews.llmeval.yaml::kettle[[]m2[]] MISS*"])
    assert again.parseoutcomes() == {"missed": 1}


# 9. Words that mislead.


def test_a_one_letter_key_hides_no_ordinary_word(
    pytester: pytest.Pytester, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHORT_KEY", "e")
    openai_server.on("m1", Reply(status=404, error_message="The model does not exist"))
    pytester.makepyprojecttoml(f"""
[tool.pytest.ini_options]
llmeval_models = "m1"
[tool.llmeval.models.m1]
base_url = "{openai_server.url}"
api_key_env = "SHORT_KEY"
""")
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest("--llm-max-retries=0")
    out = result.stdout.str()
    assert "The model does not exist" in out
    assert "***" not in out
    # And a connection error is said once, not twice over "During handling".
    assert "During handling of the above exception" not in out


def test_no_change_is_zero_points_not_minus_zero() -> None:
    assert view.points(-0.0) == "0.0 pts"
    assert view.points(-0.00001) == "0.0 pts"
    assert view.points(0.05) == "+5.0 pts"


def test_quiet_keeps_the_confidence_rule_on_a_failed_gate(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("m1", kettle_wrong)
    write_config(pytester, openai_server, ["m1"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest("-q", "--llm-threshold=0.9", "--llm-confidence=strict")
    result.stdout.fnmatch_lines([
        "llmeval gate: --llm-confidence=strict: the lower 95% bound of each accuracy*",
        "llmeval gate FAILED: 1 suite/model pair(s) below threshold",
    ])  # fmt: skip


def test_a_suites_own_threshold_wins_in_the_run_and_in_llmeval_gate(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("m1", kettle_wrong)  # 2 of 3
    write_config(pytester, openai_server, ["m1"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml(threshold=0.9))
    run = pytester.runpytest("--llm-threshold=0.5", "--llm-save=run.json")
    assert run.ret == pytest.ExitCode.TESTS_FAILED  # the suite's 90% stands
    again = llmeval("gate", str(pytester.path / "run.json"), "--threshold", "0.5")
    assert again.returncode == 1
    assert "below the threshold 90.0%" in again.stdout


def test_markdown_keeps_the_reason_of_an_invalid_json_miss(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("m1", "this is not JSON at all")
    write_config(pytester, openai_server, ["m1"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    pytester.runpytest("--llm-markdown=summary.md")
    misses = [line for line in (pytester.path / "summary.md").read_text().splitlines()
              if line.startswith("- `")]  # fmt: skip
    assert len(misses) == 3
    assert all("JSON" in line.split(".yaml:")[1] for line in misses), misses


def test_junit_figures_are_rounded(pytester: pytest.Pytester, openai_server: OpenAIServer) -> None:
    openai_server.on("m1", oracle)
    write_config(pytester, openai_server, ["m1"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    pytester.runpytest("--junitxml=junit.xml")
    xml = (pytester.path / "junit.xml").read_text()
    costs = re.findall(r'name="llmeval_cost" value="([^"]+)"', xml)
    assert len(costs) == 3
    # As written: 0.000038, not 3.8000000000000005e-05.
    assert all(float(cost) == round(float(cost), 6) and len(cost) <= 8 for cost in costs), costs


def test_repeat_recordings_are_named_as_their_items(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("m1", oracle)
    write_config(pytester, openai_server, ["m1"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest("--llm-repeat=2", "-v")
    result.stdout.fnmatch_lines(["*kettle[[]m1-r2[]] PASSED*"])
    assert (pytester.path / "llmeval-cache" / "reviews" / "kettle.m1.r2.json").is_file()
    result.stdout.fnmatch_lines(["model *answers *pass *miss *error *", "m1 * 6 * 6 * 0 * 0 *"])
