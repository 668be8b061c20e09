"""The README's main command: the example suite replayed from its committed recordings."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from pytest_llmeval.suite.load import load_suite
from tests.conftest import ROOT, llmeval, run_example

README = (ROOT / "README.md").read_text()


def test_the_example_suite_runs_offline_and_gives_the_recorded_table(tmp_path: Path) -> None:
    # No key and nothing listening on the model's port: every answer must come from the
    # recordings (the suite's ini says --llm-record=none, so a missing one is an error).
    # The report elsewhere than the suite's settings put it: not into the checkout.
    result = run_example(f"--llm-html={tmp_path / 'report.html'}")
    out = result.stdout
    # The 270M model misses (nearly) every case, and the gate (0.9) says so: exit status 1.
    assert result.returncode == 1, out + result.stderr
    assert re.search(r"=+ 5 passed, 115 missed in [\d.]+s =+$", out.rstrip()), out
    assert "llmeval answers: 120 replayed from example_suite/llmeval-cache/, 0 called" in out
    assert f"llmeval report: {tmp_path / 'report.html'}" in out
    assert (tmp_path / "report.html").stat().st_size > 0
    assert "llmeval gate FAILED: product-reviews / local-gemma: accuracy 0.0%" in out
    assert "llmeval gate FAILED: product-reviews-judged / local-gemma: accuracy 8.3%" in out
    # The tables are the live run's, as the README shows them: structural, then judged.
    what_you_see = README.split("## What you see")[1].split("\n## ")[0]
    shown = [line for line in what_you_see.splitlines() if line.startswith("local-gemma ")]
    replayed = [line for line in out.splitlines() if line.startswith("local-gemma ")]
    assert len(shown) == 2
    assert replayed == shown


def test_the_swap_comparison_in_the_readme_replays_offline(tmp_path: Path) -> None:
    result = run_example(
        "--llm-models=local-gemma,local-gemma-rp1", "--llm-reference-model=local-gemma",
        f"--llm-html={tmp_path / 'report.html'}",
    )  # fmt: skip
    out = result.stdout
    assert "llmeval answers: 240 replayed from example_suite/llmeval-cache/, 0 called" in out
    section = README.split("## Comparing with a reference model")[1].split("\n## ")[0]
    # Every table row and verdict the README shows is in the replayed output.
    shown = [line for line in section.splitlines() if line.startswith("local-gemma")]
    assert len(shown) == 5  # two table rows, two paired rows, a verdict
    for line in shown:
        assert line in out.splitlines(), line


def test_the_judges_agreement_with_people_is_measured_offline() -> None:
    done = llmeval(
        "agreement", "example_suite/judge_labels.yaml", "--record", "none",
        "--suite", "example_suite/product_reviews_judged.llmeval.yaml",
        "--config", "example_suite/pyproject.toml", cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # Gemma 3 270M passes nearly everything: no better than chance, as the README says.
    figures = "agreement 46.6% of 103 graded; Cohen's kappa -0.019"
    assert figures in done.stdout
    assert figures in README


def test_the_fine_tunes_training_file_is_the_export_of_its_goldens_and_none_is_evaluated(
    tmp_path: Path,
) -> None:
    example = ROOT / "example_suite"
    exported = tmp_path / "train.jsonl"
    done = llmeval("export", str(example / "product_reviews_train.llmeval.yaml"),
                   "-o", str(exported), cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    committed = example / "product_reviews_train.jsonl"
    assert exported.read_text() == committed.read_text()
    lines = [json.loads(line) for line in committed.read_text().splitlines()]
    assert len(lines) == 20
    # The study's prompt, the one every evaluated model is asked with.
    study = "Given a product review, provide the following fields in a JSON dict, where applicable"
    assert all(line["messages"][0]["content"].startswith(study) for line in lines)
    train, evaluation = (load_suite(example / name) for name in
                         ("product_reviews_train.llmeval.yaml", "product_reviews.llmeval.yaml"))  # fmt: skip
    assert train.messages == evaluation.messages
    assert train.response_format == evaluation.response_format
    assert len(evaluation.cases) == 142
    reviews = {case.inputs["review"] for case in evaluation.cases}
    assert not any(case.inputs["review"] in reviews for case in train.cases)
    # The record of the fine-tune whose answers are committed was made from this very file.
    record = json.loads((example / "FINETUNE.json").read_text())
    assert record["training_sha256"] == hashlib.sha256(committed.read_bytes()).hexdigest()
    assert (
        len(record["losses"]) == record["recipe"]["epochs"] * 20 // record["recipe"]["batch_size"]
    )
