"""--junitxml agrees with the exit status: figures as properties on every item, and misses
as failures exactly when their suite and model fail the gate."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.conftest import LLMProject, kettle_wrong, oracle


def cases(pytester: pytest.Pytester) -> dict[str, ET.Element]:
    root = ET.parse(pytester.path / "junit.xml").getroot()
    return {case.get("name", ""): case for case in root.iter("testcase")}


@pytest.mark.parametrize("n", ["1", "2"], ids=["one-process", "xdist"])
def test_items_carry_their_figures_and_gated_misses_fail(
    n: str, pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    llm_project({"m1": oracle, "m2": kettle_wrong}, ini="llmeval_threshold = 0.9")
    flags = ["--junitxml=junit.xml"] + (["-n", n] if n != "1" else [])
    result = pytester.runpytest(*flags)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # m2: 66.7% < 90%
    found = cases(pytester)
    kettle = found["kettle[m2]"]
    props = {p.get("name"): p.get("value") for p in kettle.iter("property")}
    assert props["llmeval_model"] == "m2"
    assert props["llmeval_outcome"] == "miss"
    assert float(props["llmeval_score"] or "") == pytest.approx(0.75)
    assert props["llmeval_fields"] == (
        '{"product": true, "specific_dislikes": true, "specific_likes": true, "star_rating": false}'
    )
    assert float(props["llmeval_latency_s"] or "") > 0
    assert int(props["llmeval_input_tokens"] or "") > 0
    assert props["llmeval_cached"] == "False"
    assert "llmeval_cost" in props
    failure = kettle.find("failure")
    assert failure is not None
    assert "star_rating: expected 5, got 1" in (failure.text or "")
    # Passing items stay passes; the suite's failure count is the gate's misses.
    assert found["kettle[m1]"].find("failure") is None
    (suite,) = ET.parse(pytester.path / "junit.xml").getroot().iter("testsuite")
    assert suite.get("failures") == "1"


def test_misses_of_a_model_that_passes_the_gate_stay_passes(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    llm_project({"m2": kettle_wrong}, ini="llmeval_threshold = 0.6")
    result = pytester.runpytest("--junitxml=junit.xml")
    assert result.ret == pytest.ExitCode.OK
    kettle = cases(pytester)["kettle[m2]"]
    assert kettle.find("failure") is None
    props = {p.get("name"): p.get("value") for p in kettle.iter("property")}
    assert props["llmeval_outcome"] == "miss"
