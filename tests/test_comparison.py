"""Comparing two models on the same cases: values computed by hand, then end to end."""

from __future__ import annotations

import pytest

from pytest_llmeval.report.terminal import write_summary
from pytest_llmeval.results.comparison import Paired, pair
from pytest_llmeval.results.gate import decide
from pytest_llmeval.results.records import Record
from pytest_llmeval.results.stats import wilson
from tests.conftest import oracle, suite_yaml, write_config
from tests.openai_server import OpenAIServer, Request


def test_five_differing_cases_all_one_way_are_the_fewest_that_can_be_significant() -> None:
    # At no difference the statistic is (|b - c| - 1/2) / sqrt(b + c): 3.5/2 = 1.75 for
    # four cases one way, 4.5/sqrt(5) = 2.01 > 1.96 for five, whatever the number of cases.
    for n in (6, 60, 142):
        assert Paired(n - 4, 0, 4, 0).p_value > 0.05 > Paired(n - 5, 0, 5, 0).p_value
        assert Paired(n - 5, 0, 5, 0).decisive() == 5


@pytest.mark.parametrize(
    ("only_reference", "only_candidate", "p"),
    [
        (0, 0, 1.0),  # all agree: nothing to test
        (1, 0, 0.6171),  # 2 x (1 - Phi(0.5 / 1))
        (5, 0, 0.0442),  # 2 x (1 - Phi(4.5 / sqrt 5))
        (9, 2, 0.0500),  # 2 x (1 - Phi(6.5 / sqrt 11)): just not significant
        (2, 9, 0.0500),  # symmetric
        (10, 10, 1.0),
    ],
)
def test_p_values_of_no_difference_by_hand(
    only_reference: int, only_candidate: int, p: float
) -> None:
    paired = Paired(20, 5, only_reference, only_candidate)
    assert paired.p_value == pytest.approx(p, abs=1e-4)


def test_wilson_bounds_by_hand() -> None:
    # 10 of 10: centre (1 + z²/20) / (1 + z²/10) = 0.86123, half-width
    # z·sqrt(z²/400) / (1 + z²/10) = 0.13877 (z = 1.96), so 0.72246 to 1.
    assert wilson(10, 10) == pytest.approx((0.72246, 1.0), abs=1e-5)
    # 0 of 60 (the example suite's structural score): 0 to z²/(60 + z²) = 3.84146/63.84146.
    assert wilson(0, 60) == pytest.approx((0.0, 0.060172), abs=1e-6)


def test_the_difference_interval_when_all_agree_does_not_collapse() -> None:
    # Ten cases both got right. Above 0 the restricted estimate of the reference-only share
    # is 0, so the upper bound solves (10d - 1/2)^2 = z^2 10 d (1 - d), that is
    # (100 + 10 z^2) d^2 - (10 + 10 z^2) d + 1/4 = 0: d = 0.34454; below, the mirror.
    paired = Paired(both=10, neither=0, only_reference=0, only_candidate=0)
    assert paired.difference == 0
    assert paired.interval() == pytest.approx((-0.344537, 0.344537), abs=1e-6)
    assert paired.p_value == 1.0


def test_swapping_reference_and_candidate_mirrors_the_interval() -> None:
    one = Paired(both=12, neither=1, only_reference=2, only_candidate=9)
    other = Paired(both=12, neither=1, only_reference=9, only_candidate=2)
    low, high = one.interval()
    assert other.interval() == pytest.approx((-high, -low))
    assert one.difference == pytest.approx(7 / 24)
    assert low < one.difference < high
    assert low >= -1
    assert high <= 1


def test_pairing_counts_an_error_as_a_loss_and_leaves_out_unshared_cases() -> None:
    def record(case: str, model: str, outcome: str) -> Record:
        return Record(suite="s", case=case, model=model, nodeid=f"s::{case}[{model}]",
                      file="s.yaml", line=1, outcome=outcome)  # type: ignore[arg-type]  # fmt: skip

    reference = [record("a", "r", "pass"), record("b", "r", "pass"), record("c", "r", "miss"),
                 record("d", "r", "error"), record("e", "r", "pass")]  # fmt: skip
    candidate = [record("a", "c", "pass"), record("b", "c", "miss"), record("c", "c", "pass"),
                 record("d", "c", "pass")]  # fmt: skip
    # d: the reference errored, the candidate passed: a case only the candidate got right.
    assert pair(reference, candidate) == Paired(both=1, neither=0, only_reference=1,
                                                only_candidate=2)  # fmt: skip


def test_the_summary_compares_every_model_with_the_reference(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    def one_star_off(request: Request) -> object:
        answer = oracle(request)
        return {**answer, "star_rating": answer["star_rating"] - 1}

    openai_server.on("m1", oracle)
    openai_server.on("m2", one_star_off)
    openai_server.on("m3", oracle)
    write_config(pytester, openai_server, ["m1", "m2", "m3"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest("--llm-reference-model=m1")
    result.stdout.fnmatch_lines([
        "against m1 (reference), on the cases both were asked:",
        "candidate *cases *both right *both wrong *only reference *only candidate *difference"
        " *95% CI *p",
        # Three cases, m2 wrong on all: -100 points; p = 2 x (1 - Phi(2.5 / sqrt 3)) = 0.149.
        "m2 * 3 * 0 * 0 * 3 * 0 *-100.0 pts *-100.0 pts to +25.9 pts * 0.149",
        "m3 * 3 * 3 * 0 * 0 * 0 * 0.0 pts *-69.0 pts to +69.0 pts * 1.000",
        "m2: no significant difference from m1 (p = 0.149); the data does not show it worse or "
        "better: they differ on 3 case(s), and no split of 3 cases can show anything",
        "m3: no significant difference from m1 (p = 1.000)*",
    ])  # fmt: skip


def test_a_reference_model_not_in_the_run_is_a_usage_error(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    write_config(pytester, openai_server, ["m1"])
    result = pytester.runpytest("--llm-reference-model=gpt-4")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-reference-model gpt-4 is not one of the models run (m1)"])


class Lines:
    """A terminal writer that keeps the lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.partial = ""

    def write(self, content: str, **markup: bool) -> None:
        *done, self.partial = (self.partial + content).split("\n")
        self.lines += done

    def write_line(self, line: str, **markup: bool) -> None:
        self.lines.append(line)

    def write_sep(self, sep: str, title: str | None = None, **markup: bool) -> None:
        self.lines.append(f"--- {title}")


def test_six_cases_all_lost_are_worse_and_fail_the_gate_and_six_won_better() -> None:
    def results(model: str, outcomes: str) -> list[Record]:
        return [Record(suite="s", case=f"c{n}", model=model, nodeid=f"s::c{n}[{model}]",
                       file="s.yaml", line=n, outcome="pass" if o == "p" else "miss")
                for n, o in enumerate(outcomes)]  # fmt: skip

    records = [*results("ref", "pppppp"), *results("worse", "mmmmmm"),
               *results("better", "pppppp"), *results("mixed", "ppmmpm")]  # fmt: skip
    lines = Lines()
    write_summary(lines, decide(records, ["ref", "worse", "better", "mixed"], reference="ref"),
                  misses_shown=0)  # fmt: skip
    # 2 x (1 - Phi(5.5 / sqrt 6)) = 0.025
    assert "worse: WORSE than ref (p = 0.025 < 0.05)" in lines.lines
    assert lines.lines[-1] == (
        "llmeval gate FAILED: s / worse: WORSE than ref by 100.0 points on 6 cases "
        "(p = 0.025): 6 right only by ref, 0 only by worse"
    )
    # The same as the reference on every case: nothing to test.
    assert any(line.startswith("better: no significant difference") for line in lines.lines)
    assert any(line.startswith("mixed: no significant difference from ref (p = 0.149)")
               for line in lines.lines)  # fmt: skip
    flipped = Lines()
    write_summary(flipped, decide(records, ["worse", "ref"], reference="worse"),
                  misses_shown=0)  # fmt: skip
    assert "ref: BETTER than worse (p = 0.025 < 0.05)" in flipped.lines
    assert "llmeval gate FAILED" not in "\n".join(flipped.lines)
