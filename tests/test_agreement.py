"""`llmeval agreement`: a judge measured against human labels, with hand-computed kappas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmeval import cli
from pytest_llmeval.agreement import Agreement, LabelFileError, load_labels
from tests.openai_server import OpenAIServer, Reply, Request


@pytest.mark.parametrize(
    ("counts", "rate", "kappa"),
    [
        # po = 0.7; P(human yes) = 0.5, P(judge yes) = 0.6; pe = 0.3 + 0.2 = 0.5;
        # kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
        ((4, 3, 2, 1), 0.7, 0.4),
        # n = 50, po = 0.7; P(human yes) = 0.6, P(judge yes) = 0.5; pe = 0.5; kappa = 0.4
        ((20, 15, 5, 10), 0.7, 0.4),
        # Always the opposite of a 50/50 human: po = 0, pe = 0.5, kappa = -1
        ((0, 0, 5, 5), 0.0, -1.0),
        # Perfect agreement on both classes: kappa 1
        ((6, 4, 0, 0), 1.0, 1.0),
        # po = 0.9; P(human yes) = 0.9, P(judge yes) = 1.0; pe = 0.9: agreement by chance only
        ((9, 0, 1, 0), 0.9, 0.0),
        # One class only: chance explains everything, kappa is undefined
        ((10, 0, 0, 0), 1.0, None),
    ],
)
def test_agreement_and_kappa(
    counts: tuple[int, int, int, int], rate: float, kappa: float | None
) -> None:
    found = Agreement(*counts, ungraded=0)
    assert found.rate == pytest.approx(rate)
    assert found.kappa == (None if kappa is None else pytest.approx(kappa))


# Human verdicts and what the test judge says (CORRECT when the answer says "same"):
# 4 both CORRECT, 3 both INCORRECT, 2 the judge passes wrongly, 1 it fails wrongly.
LABELS = [
    ("a1", "same thing", "CORRECT"), ("a2", "same words", "CORRECT"),
    ("a3", "same idea", "CORRECT"), ("a4", "same list", "CORRECT"),
    ("b1", "other thing", "INCORRECT"), ("b2", "other words", "INCORRECT"),
    ("b3", "other idea", "INCORRECT"),
    ("c1", "same but missing one", "INCORRECT"), ("c2", "same but invented one", "INCORRECT"),
    ("d1", "reworded entirely", "CORRECT"),
]  # fmt: skip


def write_labels(path: Path) -> Path:
    lines = ["description: test labels", "field: specific_dislikes", "labels:"]
    for label_id, answer, human in LABELS:
        lines += [
            f"  - id: {label_id}",
            "    input: a review",
            '    reference: ["the reference"]',
            f"    answer: [{json.dumps(answer)}]",
            f"    human: {human}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def said_same(request: Request) -> Reply:
    answer = request.last_user_content.split("Answer to grade:\n", 1)[1].split("\n\n")[0]
    grade = "CORRECT" if "same" in answer else "INCORRECT"
    return Reply(content=f"Reasoning about {answer}.\nGRADE: {grade}")


def test_the_command_measures_a_judge_and_replays_its_grades(
    tmp_path: Path, openai_server: OpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    openai_server.on("judge", said_same)
    config = tmp_path / "pyproject.toml"
    config.write_text(f'[tool.llmeval.models.judge]\nbase_url = "{openai_server.url}"\n')
    labels = write_labels(tmp_path / "labels.yaml")
    argv = ["agreement", str(labels), "--judge-model", "judge", "--config", str(config)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "agreement 70.0% of 10 graded; Cohen's kappa 0.400" in out
    assert "  human INCORRECT, judge CORRECT       2  (passed a wrong one)" in out
    assert '  c1: human INCORRECT, judge CORRECT: Reasoning about ["same but missing one"].' in out
    assert "  d1: human CORRECT, judge INCORRECT:" in out
    assert openai_server.calls() == 10
    # Recorded: measured again offline, the same figures, no call.
    assert cli.main([*argv, "--record", "none", "--min-kappa", "0.5"]) == 1
    assert "Cohen's kappa 0.400" in capsys.readouterr().out
    assert openai_server.calls() == 10
    assert len(list((tmp_path / "llmeval-cache" / "labels").iterdir())) == 10


def test_a_bad_labels_file_is_named_label_by_label(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.yaml"
    labels.write_text(
        "labels:\n"
        "  - {id: a, input: x, reference: y, answer: y, human: yes}\n"
        "  - {id: b, input: x, answer: y, human: CORRECT}\n"
        "  - {id: a, input: x, reference: y, answer: y, human: CORRECT, note: z}\n"
    )
    argv = [
        "agreement",
        str(labels),
        "--judge-model",
        "gpt-4o",
        "--config",
        str(tmp_path / "none.toml"),
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"llmeval: {labels}:2: label 'a': `human` must be one of CORRECT, INCORRECT, not True",
        f"{labels}:3: label 'b': missing `reference:` in a label",
        f"{labels}:4: label 'a': unknown key 'note' in a label; allowed: answer, human, id, "
        "input, reference, why",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("labels:\n  - {id: a, input: x, reference: y, answer: y, human: CORRECT}\n"
         "  - {id: a, input: x, reference: y, answer: z, human: CORRECT}\n",
         "3: label 'a': duplicate id (first at line 2)"),
        ("prompt: grade it\nlabels:\n  - {id: a, input: x, reference: y, answer: y, human: CORRECT}\n",
         "1: `prompt` must contain {reference} and {answer}"),
        ("- a list\n", "1: the labels file must be a mapping, not ['a list']"),
        ("", "1: empty file: a labels file needs `labels:`"),
        ("labels:\n  - {id: a, input: \"x\\u0000\", reference: y, answer: y, human: CORRECT}\n"
         "  - {id: b, input: x\x07, reference: y, answer: y, human: CORRECT}\n",
         "3: YAML error: the character U+0007 is not allowed in a YAML file"),
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
         + "".join(f"b{i}: &b{i} [{', '.join(['*' + ('a' if i == 0 else f'b{i - 1}')] * 10)}]\n"
                   for i in range(6))
         + "labels: []\n",
         "4: aliases repeat more than 10,000 values"),
    ],
    ids=["duplicate-id", "prompt", "not-a-mapping", "empty", "control-character", "alias-bomb"],
)  # fmt: skip
def test_a_labels_file_is_read_as_untrusted_yaml_then_by_its_schema(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "labels.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LabelFileError) as caught:
        load_labels(path)
    assert any(f"{path}:{problem}" in line for line in caught.value.lines), caught.value.lines
