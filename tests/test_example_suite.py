"""The README's main command: the example suite replayed from its committed recordings."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from pytest_llmeval.suite.load import load_suite
from tests.conftest import ROOT, llmeval, run_example

README = (ROOT / "README.md").read_text()


MODELS = ("qwen-1.5b", "qwen-0.5b", "qwen-0.5b-ft")
SUITES = 3  # structural, the facts, judged: the same 142 cases each
CASES = 142


def section(heading: str) -> str:
    """The README's text under ``heading``, to the next heading of its level or above."""
    level = heading.split(" ")[0]
    text = README.split(f"\n{heading}\n")[1]
    return re.split(rf"\n#{{1,{len(level)}}} ", text)[0]


def shown_lines(text: str) -> list[str]:
    """The lines of the README's output blocks that are table rows and verdicts of a model."""
    return [line for line in text.splitlines() if line.startswith(MODELS)]


def test_the_example_suite_runs_offline_and_gives_the_recorded_table(tmp_path: Path) -> None:
    # No key and nothing listening on the models' ports: every answer must come from the
    # recordings (the suite's ini says --llm-record=none, so a missing one is an error).
    # The report elsewhere than the suite's settings put it: not into the checkout.
    result = run_example(f"--llm-html={tmp_path / 'report.html'}")
    out = result.stdout
    # The gate (0.9) fails every model, and the swap margin the candidates: exit status 1.
    assert result.returncode == 1, out + result.stderr
    answers = SUITES * len(MODELS) * CASES
    assert f"llmeval answers: {answers} replayed from example_suite/llmeval-cache/, 0 called" in out
    assert f"llmeval report: {tmp_path / 'report.html'}" in out
    assert (tmp_path / "report.html").stat().st_size > 0
    # What the README's first screen shows is what the replay prints, row for row: the
    # tables, the paired comparisons, the projections and the verdicts.
    shown = shown_lines(
        section("## The case study: may a fine-tuned small model replace a bigger one?")
    )
    assert len(shown) >= 15
    replayed = out.splitlines()
    for line in shown:
        assert line in replayed, line
    # As does the summary's last line.
    last = re.search(r"=+ \d+ passed, \d+ missed in [\d.]+s =+", README)
    assert last is not None
    counts = re.sub(r" in [\d.]+s", "", last.group(0))
    assert re.sub(r" in [\d.]+s", "", out.rstrip().splitlines()[-1]) == counts


def test_the_fine_tune_against_its_base_in_the_readme_replays_offline(tmp_path: Path) -> None:
    result = run_example(
        "--llm-models=qwen-0.5b,qwen-0.5b-ft", "--llm-reference-model=qwen-0.5b",
        f"--llm-html={tmp_path / 'report.html'}",
    )  # fmt: skip
    out = result.stdout
    assert f"llmeval answers: {SUITES * 2 * CASES} replayed" in out
    shown = shown_lines(section("### The fine-tune against its base"))
    assert len(shown) >= 4
    for line in shown:
        assert line in out.splitlines(), line


def test_the_judges_agreement_with_people_is_measured_offline() -> None:
    for labels in ("judge_labels", "judge_labels_likes"):
        done = llmeval(
            "agreement", f"example_suite/{labels}.yaml", "--record", "none",
            "--suite", "example_suite/product_reviews_judged.llmeval.yaml",
            "--config", "example_suite/pyproject.toml", cwd=ROOT,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        # The README reports the measured kappa of each field, and says what follows.
        figures = re.search(r"agreement [\d.]+% of \d+ graded; Cohen's kappa -?[\d.]+", done.stdout)
        assert figures is not None, done.stdout
        assert figures.group(0) in section("### Trusting a judge"), labels


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
