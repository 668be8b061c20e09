"""`llmeval import` and `llmeval export`: JSONL in and out, every skipped line located,
and the round trips between a suite and chat fine-tuning JSONL."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_llmeval.suite.interchange import (
    MAX_EXPECTED_DEPTH,
    escape_template,
    import_text,
    in_evaluation,
)
from pytest_llmeval.suite.load import load_suite
from pytest_llmeval.suite.model import Suite, fill_template
from pytest_llmeval.support.problems import ConfigError, Problem
from tests.conftest import REVIEWS, REVIEWS_SUITE, ROOT, LLMProject, llmeval, oracle

SYSTEM = "Extract product, star_rating, specific_likes, specific_dislikes as JSON."


def chat(*turns: tuple[str, str], **extra: Any) -> str:
    return json.dumps({**extra, "messages": [{"role": r, "content": c} for r, c in turns]})


def review_lines() -> list[str]:
    """REVIEWS as chat fine-tuning lines, each with its id."""
    return [
        chat(("system", SYSTEM), ("user", review), ("assistant", json.dumps(expected)), id=key)
        for key, (review, expected) in REVIEWS.items()
    ]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def cases_of(suite: Suite) -> list[tuple[str, Any, Any]]:
    """What a suite asks and expects, case by case: id, the rendered turns, expected."""
    return [(c.id, [(m.role, m.content) for m in suite.render(c)], c.expected) for c in suite.cases]


def parsed_lines(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- import -----------------------------------------------------------------------------


def test_chat_lines_become_a_suite_with_the_shared_system_message_as_prompt(
    tmp_path: Path,
) -> None:
    lines = [
        *review_lines(),
        # Few-shot turns of its own: the case keeps them as its messages.
        chat(("user", "Two stars, loud fan."), ("assistant", '{"star_rating": 2}'),
             ("user", "A quiet fan, 4 stars."), ("assistant", '{"star_rating": 4}'),
             id="few-shot"),
    ]  # fmt: skip
    source = write(tmp_path / "train.jsonl", lines)
    out = tmp_path / "reviews.llmeval.yaml"
    result = llmeval("import", str(source), "-o", str(out), "--id-field", "id", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"llmeval import: wrote {out}: suite 'reviews', 4 cases, JSON answers, from {source}\n"
    )
    assert result.stderr == ""
    suite = load_suite(out)
    assert [(m.role, m.content) for m in suite.messages] == [
        ("system", SYSTEM),
        ("user", "{input}"),
    ]
    assert suite.response_format.json_mode
    kettle = next(c for c in suite.cases if c.id == "kettle")
    assert kettle.inputs == {"input": REVIEWS["kettle"][0]}
    assert kettle.messages == ()
    assert cases_of(suite) == [
        *((key, [("system", SYSTEM), ("user", review)], expected)
          for key, (review, expected) in REVIEWS.items()),
        ("few-shot", [("user", "Two stars, loud fan."), ("assistant", '{"star_rating": 2}'),
                      ("user", "A quiet fan, 4 stars.")], {"star_rating": 4}),
    ]  # fmt: skip
    text = out.read_text()
    # Readable: `expected` a mapping, short lists on one line.
    assert "    expected:\n      product: kettle\n" in text
    assert "      specific_likes: [boils fast, quiet]\n" in text


def test_an_imported_suite_runs(pytester: pytest.Pytester, llm_project: LLMProject) -> None:
    llm_project({"m1": oracle}, suite=None)
    source = write(pytester.path / "train.jsonl", review_lines())
    result = llmeval("import", str(source), "-o", "reviews.llmeval.yaml", "--id-field", "id",
                     cwd=pytester.path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    run = pytester.runpytest("-v")
    run.assert_outcomes(passed=3)
    run.stdout.fnmatch_lines(["*reviews.llmeval.yaml::kettle[[]m1[]] PASSED*"])


def test_evals_samples_become_a_free_text_suite_and_an_ideal_list_is_said_to_lose_its_others(
    tmp_path: Path,
) -> None:
    """OpenAI Evals' registry samples: `input` chat messages (or a string), `ideal` one
    answer or a list of acceptable ones. A case expects one answer: the first of a list,
    the rest in its notes, and the import says so."""
    system = {"role": "system", "content": "Answer with the capital city only."}
    samples = [
        {"input": [system, {"role": "user", "content": "France?"}], "ideal": "Paris"},
        {"input": [system, {"role": "user", "content": "Bolivia?"}], "ideal": ["Sucre", "La Paz"]},
        {"input": "What is 2 + 2? Answer with a number.", "ideal": "4"},
    ]
    source = write(tmp_path / "samples.jsonl", [json.dumps(s) for s in samples])
    out = tmp_path / "capitals.llmeval.yaml"
    result = llmeval("import", str(source), "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"llmeval import: wrote {out}: suite 'capitals', 3 cases, free-text answers, from {source}",
        f"{source}:2: `ideal` gives 2 acceptable answers; a case expects one: the first is "
        "`expected`, the others are kept in the case's notes",
    ]
    suite = load_suite(out)
    assert not suite.response_format.json_mode
    assert [(m.role, m.content) for m in suite.messages] == [
        ("system", system["content"]), ("user", "{input}")
    ]  # fmt: skip
    assert [(turns, expected) for _, turns, expected in cases_of(suite)] == [
        ([("system", system["content"]), ("user", "France?")], "Paris"),
        ([("system", system["content"]), ("user", "Bolivia?")], "Sucre"),
        ([("user", "What is 2 + 2? Answer with a number.")], "4"),
    ]
    assert suite.cases[1].notes == 'Other acceptable answers (the Evals `ideal` list):\n- "La Paz"'
    # Ids without --id-field: a short hash of each line's content, the same every time.
    again = tmp_path / "again.llmeval.yaml"
    assert llmeval("import", str(source), "-o", str(again), cwd=tmp_path).returncode == 0
    assert [c.id for c in load_suite(again).cases] == [c.id for c in suite.cases]
    assert all(c.id.startswith("case-") and len(c.id) == 15 for c in suite.cases)


def test_every_line_that_does_not_fit_is_skipped_and_said_at_its_line(tmp_path: Path) -> None:
    """JSON mode (most answers are objects): a non-JSON answer there is skipped, not a
    reason to score the whole suite as text, where a structural golden set would pass
    answers it should not."""
    good = review_lines()
    lines = [
        good[0],
        '{"messages": [{"role": "user", "content": "cut off"',  # malformed JSON
        chat(("system", SYSTEM), ("user", "no answer here"), id="no-answer"),
        chat(
            ("system", SYSTEM), ("user", "Mug, 3 stars."), ("assistant", "three stars"), id="prose"
        ),
        good[1],
        good[1].replace("Five stars", "5 stars"),  # the same id again
        json.dumps({"prompt": "a legacy completion line", "completion": "x"}),
        "[1, 2]",
        chat(("tool", "{}"), ("assistant", "{}"), id="tool"),
        chat(("user", "hi"), ("assistant", "{}"), id="bad id!"),
        "",
        good[2],
    ]
    source = write(tmp_path / "mixed.jsonl", lines)
    out = tmp_path / "mixed.llmeval.yaml"
    result = llmeval("import", str(source), "-o", str(out), "--id-field", "id", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == (
        f"llmeval import: wrote {out}: suite 'mixed', 3 cases, JSON answers, from {source}\n"
    )
    assert result.stderr.splitlines() == [
        f"{source}:2: skipped: not JSON: Expecting ',' delimiter (column 52)",
        f"{source}:3: skipped: the last message is a 'user' turn, not the assistant's answer: "
        "nothing to expect",
        f"{source}:4: skipped: the answer is not a JSON object, and this suite's answers are "
        "JSON (most lines' are; --response-format text keeps every answer as text)",
        f"{source}:6: skipped: duplicate case id 'kettle' (first at line 5)",
        f"{source}:7: skipped: neither `messages` (chat fine-tuning) nor `input` and `ideal` "
        "(Evals samples)",
        f"{source}:8: skipped: a JSON array, not an object",
        f"{source}:9: skipped: `messages` message 1: the role 'tool' is not one of assistant, "
        "developer, system, user",
        f'{source}:10: skipped: the id "bad id!" (`id`) must match ^[A-Za-z0-9_.-]+$',
        "llmeval import: 8 lines skipped",
    ]
    assert [c.id for c in load_suite(out).cases] == list(REVIEWS)


def test_free_text_keeps_answers_that_are_not_json(tmp_path: Path) -> None:
    lines = [chat(("user", "Mug, 3 stars."), ("assistant", "three stars"), id="prose"),
             chat(("user", "Pan?"), ("assistant", '{"a": 1}'), id="json")]  # fmt: skip
    source = write(tmp_path / "t.jsonl", lines)
    out = tmp_path / "t.llmeval.yaml"
    result = llmeval("import", str(source), "-o", str(out), "--id-field", "id",
                     "--response-format", "text", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [c.expected for c in load_suite(out).cases] == ["three stars", '{"a": 1}']
    forced = tmp_path / "f.llmeval.yaml"
    result = llmeval("import", str(source), "-o", str(forced), "--id-field", "id",
                     "--response-format", "json", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    assert f"{source}:1: skipped: the answer is not a JSON object, and this suite's answers " \
        "are JSON (; --response-format text" in result.stderr  # fmt: skip
    assert [c.id for c in load_suite(forced).cases] == ["json"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"suite: reviews\ncases: []\n", "none of its 2 lines is a JSON object (not JSON: "
         "Expecting value (column 1) at line 1)"),
        (b'[\n  {\n    "messages": []\n  }\n]\n', "none of its 5 lines is a JSON object (not JSON: "
         "Expecting value (column 2) at line 1)"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe", "not UTF-8 text: not a JSONL file"),
        (b"", "none of its 0 lines is a JSON object"),
    ],
    ids=["yaml", "pretty-json", "binary", "empty"],
)  # fmt: skip
def test_a_file_that_is_not_jsonl_writes_nothing(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    source = tmp_path / "data.jsonl"
    source.write_bytes(content)
    out = tmp_path / "x.llmeval.yaml"
    result = llmeval("import", str(source), "-o", str(out), cwd=tmp_path)
    assert result.returncode == 2
    assert reason in result.stderr
    assert result.stderr.startswith(f"llmeval: import: {source}")
    assert not out.exists()


def test_no_usable_line_writes_nothing_and_lists_each(tmp_path: Path) -> None:
    source = write(tmp_path / "d.jsonl", [chat(("user", "hi"))])
    out = tmp_path / "x.llmeval.yaml"
    result = llmeval("import", str(source), "-o", str(out), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"llmeval: import: {source}: no line can be a case: nothing written",
        f"{source}:1: skipped: the last message is a 'user' turn, not the assistant's answer: "
        "nothing to expect",
    ]
    assert not out.exists()


def test_import_does_not_overwrite_without_force(tmp_path: Path) -> None:
    source = write(tmp_path / "d.jsonl", review_lines())
    out = tmp_path / "x.llmeval.yaml"
    out.write_text("keep me")
    result = llmeval("import", str(source), "-o", str(out), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        2, f"llmeval: import: {out} exists (--force overwrites it)\n"
    )  # fmt: skip
    assert out.read_text() == "keep me"
    assert llmeval("import", str(source), "-o", str(out), "--force", cwd=tmp_path).returncode == 0
    assert len(load_suite(out).cases) == 3
    wrong = llmeval("import", str(source), "-o", str(tmp_path / "x.yaml"), cwd=tmp_path)
    assert wrong.returncode == 2
    assert "must end in .llmeval.yaml" in wrong.stderr


def test_a_training_weight_is_dropped_and_said(tmp_path: Path) -> None:
    line = json.dumps({"messages": [{"role": "user", "content": "x"},
                                    {"role": "assistant", "content": "{}", "weight": 0}]})  # fmt: skip
    source = write(tmp_path / "w.jsonl", [line])
    out = tmp_path / "w.llmeval.yaml"
    result = llmeval("import", str(source), "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"llmeval import: wrote {out}: suite 'w', 1 case, JSON answers, from {source}",
        f"{source}:1: `messages` message 2: `weight` is for training only; not kept",
    ]
    assert [c.expected for c in load_suite(out).cases] == [{}]


def test_templates_in_imported_text_are_kept_as_text(tmp_path: Path) -> None:
    """A system message with `{product}` in it is sent as written, not taken for a
    variable of the suite's prompt."""
    system = 'Reply as {"product": ...}; {product} and {{product}} are literal.'
    lines = [chat(("system", system), ("user", f"u{i}"), ("assistant", "{}"), id=f"c{i}")
             for i in range(2)]  # fmt: skip
    out = tmp_path / "t.llmeval.yaml"
    result = llmeval("import", str(write(tmp_path / "t.jsonl", lines)), "-o", str(out),
                     "--id-field", "id", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    suite = load_suite(out)
    assert [turns for _, turns, _ in cases_of(suite)] == [
        [("system", system), ("user", "u0")], [("system", system), ("user", "u1")]
    ]  # fmt: skip


# --- export -----------------------------------------------------------------------------


def test_export_writes_chat_fine_tuning_lines(tmp_path: Path) -> None:
    suite_file = tmp_path / "reviews.llmeval.yaml"
    suite_file.write_text(REVIEWS_SUITE)
    out = tmp_path / "train.jsonl"
    result = llmeval("export", str(suite_file), "-o", str(out), cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"llmeval export: wrote {out}: 3 cases\n")
    system = "Extract product, star_rating, specific_likes, specific_dislikes as JSON."
    assert parsed_lines(out) == [
        {"messages": [{"role": "system", "content": system},
                      {"role": "user", "content": review},
                      {"role": "assistant", "content": json.dumps(expected)}]}
        for review, expected in REVIEWS.values()
    ]  # fmt: skip
    again = llmeval("export", str(suite_file), "-o", str(out), cwd=tmp_path)
    assert (again.returncode, again.stderr) == (
        2, f"llmeval: export: {out} exists (--force overwrites)\n"
    )  # fmt: skip


def test_export_of_a_bad_suite_says_where(tmp_path: Path) -> None:
    suite_file = tmp_path / "bad.llmeval.yaml"
    suite_file.write_text(REVIEWS_SUITE.replace("expected:", "expcted:", 1))
    result = llmeval("export", str(suite_file), "-o", str(tmp_path / "o.jsonl"), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{suite_file}:9: case 'desk-chair': unknown key 'expcted'" in result.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_import_of_export_is_the_suite(tmp_path: Path) -> None:
    """The example suite (few-shot turns in its template) and a suite whose cases carry
    their own messages: exported and imported back, the same cases are asked and
    expected."""
    mixed = tmp_path / "mixed.llmeval.yaml"
    mixed.write_text(
        "suite: mixed\nprompt: {user: 'Rate: {review}'}\ncases:\n"
        "  - {id: a, inputs: {review: good}, expected: {stars: 5}}\n"
        "  - id: b\n    messages: [{role: developer, content: 'Be terse.\n\n  Really.'},\n"
        "                {role: user, content: 'Rate: bad'}]\n"
        '    expected: {stars: 1, why: ["yes", 1.5, null, true]}\n'
    )
    for original in (ROOT / "example_suite" / "product_reviews.llmeval.yaml", mixed):
        out = tmp_path / f"{original.stem}.jsonl"
        back = tmp_path / f"back-{original.name}"
        exported = llmeval("export", str(original), "-o", str(out), "--id-field", "id")
        assert exported.returncode == 0, exported.stderr
        imported = llmeval("import", str(out), "-o", str(back), "--id-field", "id")
        assert imported.returncode == 0, imported.stderr
        assert cases_of(load_suite(back)) == cases_of(load_suite(original))


def test_export_of_import_is_the_jsonl(tmp_path: Path) -> None:
    lines = [
        *review_lines(),
        chat(("user", "Two stars, loud fan."), ("assistant", '{"star_rating": 2}'),
             ("user", "Fan, 4 stars.\nMultiple lines,\n  indented."),
             ("assistant", '{"star_rating": 4, "note": "line\\nbreak"}'), id="few-shot"),
        chat(("developer", "No system."), ("user", "x"), ("assistant", '{"a": []}'), id="dev"),
    ]  # fmt: skip
    source = write(tmp_path / "in.jsonl", lines)
    suite_file = tmp_path / "s.llmeval.yaml"
    assert llmeval("import", str(source), "-o", str(suite_file), "--id-field", "id").returncode == 0
    out = tmp_path / "out.jsonl"
    result = llmeval("export", str(suite_file), "-o", str(out), "--id-field", "id")
    assert result.returncode == 0, result.stderr
    assert parsed_lines(out) == parsed_lines(source)


def test_split_is_deterministic_and_adding_a_case_moves_no_other(tmp_path: Path) -> None:
    suite_file = ROOT / "example_suite" / "product_reviews.llmeval.yaml"
    out = tmp_path / "reviews.jsonl"
    result = llmeval("export", str(suite_file), "-o", str(out), "--split", "0.2", "--seed", "7",
                     "--id-field", "id")  # fmt: skip
    assert result.returncode == 0, result.stderr
    train, evaluation = tmp_path / "reviews.train.jsonl", tmp_path / "reviews.eval.jsonl"
    eval_suite = tmp_path / "reviews.eval.llmeval.yaml"
    train_ids = [line["id"] for line in parsed_lines(train)]
    eval_ids = [line["id"] for line in parsed_lines(evaluation)]
    assert result.stdout.splitlines() == [
        f"llmeval export: wrote {train}: {len(train_ids)} train cases",
        f"llmeval export: wrote {evaluation}: {len(eval_ids)} evaluation cases",
        f"llmeval export: wrote {eval_suite}: suite 'product-reviews-eval', the "
        f"{len(eval_ids)} evaluation cases",
    ]
    original = load_suite(suite_file)
    assert sorted(train_ids + eval_ids) == sorted(c.id for c in original.cases)
    assert eval_ids == [c.id for c in original.cases if in_evaluation(c.id, 0.2, 7)]
    # The evaluation part as a suite: the same prompt and scoring, only its cases.
    gate = load_suite(eval_suite)
    assert gate.name == "product-reviews-eval"
    assert (gate.messages, gate.scoring, gate.threshold) == (
        original.messages, original.scoring, original.threshold
    )  # fmt: skip
    assert cases_of(gate) == [c for c in cases_of(original) if c[0] in eval_ids]
    assert eval_suite.read_text().startswith("# Product-review extraction")  # comments kept
    # Another seed, another split; the same seed, the same split; a new case, no move.
    assert [c.id for c in original.cases if in_evaluation(c.id, 0.2, 8)] != eval_ids
    ids = [f"case-{i}" for i in range(20_000)]
    before = {i for i in ids if in_evaluation(i, 0.2, 7)}
    after = {i for i in [*ids, "a-new-case"] if in_evaluation(i, 0.2, 7)}
    assert after - {"a-new-case"} == before
    assert 0.19 < len(before) / len(ids) < 0.21  # 0.2047 at this seed


def test_split_of_a_borrowing_suite_keeps_its_scoring(tmp_path: Path) -> None:
    judged = ROOT / "example_suite" / "product_reviews_judged.llmeval.yaml"
    out = tmp_path / "judged.jsonl"
    result = llmeval("export", str(judged), "-o", str(out), "--split", "0.3")
    assert result.returncode == 0, result.stderr
    gate, original = load_suite(tmp_path / "judged.eval.llmeval.yaml"), load_suite(judged)
    assert (gate.name, gate.scoring, gate.threshold, gate.description) == (
        "product-reviews-judged-eval", original.scoring, original.threshold,
        original.description,
    )  # fmt: skip
    ids = {line["messages"][-2]["content"] for line in parsed_lines(tmp_path / "judged.eval.jsonl")}
    assert {turns[-1][1] for _, turns, _ in cases_of(gate)} == ids


@pytest.mark.parametrize("fraction", ["0", "1", "1.5"])
def test_split_must_be_a_fraction(tmp_path: Path, fraction: str) -> None:
    suite_file = tmp_path / "reviews.llmeval.yaml"
    suite_file.write_text(REVIEWS_SUITE)
    result = llmeval("export", str(suite_file), "-o", str(tmp_path / "o.jsonl"),
                     "--split", fraction)  # fmt: skip
    assert result.returncode == 2
    assert f"--split must be between 0 and 1, not {float(fraction)}" in result.stderr


def test_a_split_leaving_a_part_empty_writes_nothing(tmp_path: Path) -> None:
    suite_file = tmp_path / "reviews.llmeval.yaml"
    suite_file.write_text(REVIEWS_SUITE)
    seed = next(s for s in range(100)
                if not any(in_evaluation(key, 0.05, s) for key in REVIEWS))  # fmt: skip
    result = llmeval("export", str(suite_file), "-o", str(tmp_path / "o.jsonl"),
                     "--split", "0.05", "--seed", str(seed))  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        f"llmeval: export: --split 0.05 --seed {seed} leaves 3 train and 0 evaluation cases "
        "of 3: give another fraction or seed\n"
    )
    assert list(tmp_path.iterdir()) == [suite_file]


# --- properties -------------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)  # fmt: skip
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool", 3]), "content": TEXT | JSON}
)
LINE = st.one_of(
    st.text(max_size=60).filter(lambda t: "\n" not in t and "\r" not in t),
    JSON.map(json.dumps),
    st.fixed_dictionaries({"messages": st.lists(MESSAGE, max_size=4)}).map(json.dumps),
    st.fixed_dictionaries(
        {"input": TEXT | st.lists(MESSAGE, max_size=3), "ideal": TEXT | st.lists(TEXT, max_size=3)}
    ).map(json.dumps),
    st.just('{"a": ' * (MAX_EXPECTED_DEPTH + 1) + "1" + "}" * (MAX_EXPECTED_DEPTH + 1)),
)


def load_text(tmp_path: Path, text: str) -> Suite:
    path = tmp_path / "p.llmeval.yaml"
    path.write_text(text, encoding="utf-8")
    return load_suite(path)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(LINE, max_size=6), choice=st.sampled_from(["auto", "json", "text"]))
def test_any_lines_give_reported_skips_or_cases_that_load(
    tmp_path: Path, lines: list[str], choice: Any
) -> None:
    text = "\n".join(lines)
    counted = sum(1 for line in text.split("\n") if line.strip())
    refused: tuple[Problem, ...] = ()
    try:
        imported = import_text(text, "p.jsonl", name="p", response_format=choice)
    except ConfigError as exc:  # nothing to write: said, each problem in the file
        refused = exc.problems
    if refused:
        assert all(p.file == "p.jsonl" for p in refused)
        return
    assert all(p.file == "p.jsonl" and p.line for p in imported.skipped)
    assert imported.cases + len(imported.skipped) == counted
    assert len(load_text(tmp_path, imported.text).cases) == imported.cases


OBJECT = st.dictionaries(TEXT, JSON, max_size=4)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    turns=st.lists(
        st.tuples(st.sampled_from(["system", "user", "assistant", "developer"]), TEXT),
        min_size=1, max_size=4,
    ),
    answers=st.lists(OBJECT, min_size=1, max_size=4),
)  # fmt: skip
def test_chat_lines_survive_the_suite_file_exactly(
    tmp_path: Path, turns: list[tuple[str, str]], answers: list[dict[str, Any]]
) -> None:
    """Whatever the text (templates, YAML words, line breaks, odd characters): the suite
    written sends the same turns and expects the same answers."""
    lines = [
        chat(*turns, ("user", f"q{i}"), ("assistant", json.dumps(answer)), id=f"c{i}")
        for i, answer in enumerate(answers)
    ]
    imported = import_text("\n".join(lines), "p.jsonl", name="p", id_field="id")
    assert imported.skipped == ()
    suite = load_text(tmp_path, imported.text)
    assert cases_of(suite) == [
        (f"c{i}", [*turns, ("user", f"q{i}")], answer) for i, answer in enumerate(answers)
    ]


@given(st.text(string.printable + "{}"))
def test_an_escaped_template_renders_as_the_text(text: str) -> None:
    assert fill_template(escape_template(text), {}) == text
