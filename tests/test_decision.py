"""gate.decide and report.view on hand-made records: the one decision every report takes,
and the words and rows made from it (no server, no pytest run)."""

from __future__ import annotations

from pytest_llmeval.report import view
from pytest_llmeval.results.gate import GateFailure, RegressionFailure, decide
from pytest_llmeval.results.records import Record


def records(model: str, outcomes: str, *, suite: str = "s", threshold: float | None = 0.5,
            latency: float = 1.0) -> list[Record]:  # fmt: skip
    """One record per letter: p(ass), m(iss), e(rror); case ids c0, c1, ..."""
    outcome = {"p": "pass", "m": "miss", "e": "error"}
    return [
        Record(suite=suite, case=f"c{n}", model=model, nodeid=f"{suite}::c{n}[{model}]",
               file=f"{suite}.llmeval.yaml", line=n + 1, outcome=outcome[o],  # type: ignore[arg-type]
               threshold=threshold, latency_s=latency, cost=0.001, reason="1 field(s) wrong"
               if o == "m" else "", diff=("star_rating: 2 → 1",) if o == "m" else ())
        for n, o in enumerate(outcomes)
    ]  # fmt: skip


def test_a_model_below_its_threshold_fails_the_decision_and_only_that_pair() -> None:
    decision = decide([*records("a", "ppppm"), *records("b", "pmmmm")], ["a", "b"])
    assert decision.state == "FAILED"
    (failure,) = decision.failures
    assert isinstance(failure, GateFailure)
    assert (failure.suite, failure.model, failure.value, failure.missed) == (
        "s", "b", 0.2, ("c1", "c2", "c3", "c4"))  # fmt: skip
    a, b = decision.summaries
    assert (decision.state_of(a), decision.state_of(b)) == ("passed", "FAILED")
    assert [(line.kind, line.line) for line in view.gate_lines(decision)] == [(
        "failed",
        "llmeval gate FAILED: s / b: accuracy 20.0% is below the threshold 50.0% by 30.0 "
        "points; missed: c1, c2, c3, c4",
    )]  # fmt: skip


def test_no_threshold_is_not_set_and_says_so() -> None:
    decision = decide(records("a", "pm", threshold=None))
    assert decision.state == "not set"
    assert decision.state_of(decision.summaries[0]) == "not gated"
    (line,) = view.gate_lines(decision)
    assert (line.kind, line.text, line.line) == (
        "unset",
        "no threshold set (--llm-threshold or a suite's `threshold:`)",
        "llmeval: no threshold set (--llm-threshold or a suite's `threshold:`)",
    )


def test_strict_confidence_holds_the_lower_bound_and_says_the_rule_first() -> None:
    # 4 of 5 is 80% >= 50%, but its Wilson interval's lower bound is 37.6%.
    decision = decide(records("a", "ppppm"), confidence="strict")
    (failure,) = decision.failures
    assert isinstance(failure, GateFailure)
    assert failure.bound is not None
    assert round(failure.bound, 3) == 0.376
    rule, failed = view.gate_lines(decision)
    assert rule.kind == "rule"
    assert rule.line == (
        "llmeval gate: --llm-confidence=strict: the lower 95% bound of each accuracy (or "
        "pass^N) is held against the threshold"
    )
    assert failed.text.startswith("FAILED: s / a: lower 95% bound 37.6% (accuracy 80.0%)")


def test_a_regression_fails_only_beyond_the_limit_and_beyond_noise() -> None:
    before = records("a", "p" * 12)
    now = records("a", "pppppp" + "mmmmmm")
    decision = decide(now, baseline=before, max_regression=10)
    (failure,) = decision.failures
    assert isinstance(failure, RegressionFailure)
    assert decision.regressed == (failure,)
    assert decision.below_threshold == ()
    (change,) = decision.changes
    assert change.newly_failing == ("c10", "c11", "c6", "c7", "c8", "c9")
    assert change.drop_points == 50.0
    assert change.p_value == 1 / 64  # six of six flips went the bad way
    assert view.failure_text(failure) == (
        "s / a: accuracy fell 50.0 points against the baseline (100.0% to 50.0%), more than "
        "--llm-max-regression=10 and more than run-to-run noise (6 newly failing, 0 newly "
        "passing, McNemar p = 0.016; flip rate 50.0%); newly failing: c10, c11, c6, c7, c8, c9"
    )
    assert view.change_lines(decision.changes) == ["s / a newly failing: c10, c11, c6, c7, c8, c9"]
    assert view.baseline_rows(decision.changes) == [
        ("s / a", "100.0%", "50.0%", "-50.0 pts", "1.00s", "1.00s", "$0.0120", "$0.0120")
    ]
    # Without a limit the same drop is shown, not gated.
    assert decide(now, baseline=before).failures == ()
    # Two of four flipping the bad way is a 50-point drop too, but no more than noise.
    assert decide(records("a", "ppmm"), baseline=records("a", "pppp"), max_regression=10
                  ).failures == ()  # fmt: skip


def test_comparisons_pair_each_model_with_the_reference_per_suite() -> None:
    decision = decide(
        [*records("ref", "pppppp"), *records("cand", "mmmmmm"),
         *records("ref", "pm", suite="t"), *records("cand", "pm", suite="t")],
        ["ref", "cand"], reference="ref", confidence="point",
    )  # fmt: skip
    worse, even = decision.comparisons
    assert (worse.suite, worse.candidate, worse.worse, worse.too_few) == ("s", "cand", True, False)
    assert (even.suite, even.significant, even.too_few) == ("t", False, True)
    rows, verdicts = view.paired_table(decision.comparisons_in("s"))
    assert rows[1] == ("cand", "6", "0", "0", "6", "0", "-100.0 pts",
                       rows[1][7], "0.025")  # fmt: skip
    # Two suites: the candidate's two p-values are Holm-adjusted (0.0245 x 2).
    assert verdicts == [
        "cand: WORSE than ref (p = 0.049 < 0.05; Holm-adjusted over 2 comparisons of cand)"
    ]
    _, verdicts = view.paired_table(decision.comparisons_in("t"))
    assert verdicts == [
        "cand: no significant difference from ref (p = 1.000; Holm-adjusted over 2 comparisons "
        "of cand); the data does not show it worse or better: they differ on 0 case(s), and no "
        "split of 2 cases can show anything"
    ]
    assert view.paired_heading(decision.comparisons_in("t")) == (
        "against ref (reference), on the cases both were asked:"
    )
    # No reference, no comparison.
    assert decide(decision.records).comparisons == ()


def test_rows_and_the_miss_text_come_from_the_figures() -> None:
    decision = decide([*records("a", "ppme"), *records("b", "pppp")], ["a", "b"])
    (_, rows), = decision.suites()  # fmt: skip
    table = view.suite_table(rows)
    assert table[0] == view.HEADER
    # The errored case counts as not passed: 2 of 4, each case its own cluster.
    assert table[1] == ("a", "4", "2", "1", "1", "50.0%", "15.0% to 85.0%", "-", "1.00s",
                        "1.00s", "0", "0", "$0.0040")  # fmt: skip
    (miss,) = rows[0].missed()
    assert view.miss_text(miss) == (
        "s.llmeval.yaml:3: case 'c2' of suite 's', model a: MISS (1 field(s) wrong)\n"
        "  star_rating: 2 → 1\nexpected:\n  null"
    )
    assert view.pct(None) == "-"
    assert view.threshold_label(0.995) == "threshold 99.5%"
