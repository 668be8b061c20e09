"""Case files: what loads, and every validation message with its file, line and case."""

from __future__ import annotations

import fnmatch
import textwrap
from pathlib import Path

import pytest

from pytest_llmeval.suite.load import CaseFileError, load_suite
from pytest_llmeval.suite.model import Message, fill_template

VALID = """\
suite: reviews
prompt:
  system: 'Answer as JSON like {"product": "..."}'
  user: "Review: {review} ({{review}} stays literal)"
threshold: 0.8
response_format: {type: [object, array], properties: {product: {type: string}}}
cases:
  - id: chair
    inputs: {review: Nice chair.}
    expected: {product: chair}
    tags: [ordinary]
  - id: own-messages
    messages:
      - {role: user, content: "Hi {review}"}
    expected: [1, 2.5, null, true]
"""


def load(tmp_path: Path, text: str) -> list[str]:
    """Load ``text`` as a case file and return its problems (empty when valid)."""
    path = tmp_path / "s.llmeval.yaml"
    path.write_text(textwrap.dedent(text))
    try:
        load_suite(path, display="s.llmeval.yaml")
    except CaseFileError as exc:
        return exc.lines
    return []


def test_a_valid_suite_loads_with_lines_templates_and_options(tmp_path: Path) -> None:
    path = tmp_path / "s.llmeval.yaml"
    path.write_text(VALID)
    suite = load_suite(path)
    assert suite.name == "reviews"
    assert suite.threshold == 0.8
    assert suite.response_format.schema == {
        "type": ["object", "array"],
        "properties": {"product": {"type": "string"}},
    }
    chair, own = suite.cases
    assert (chair.id, chair.line, chair.tags) == ("chair", 8, ("ordinary",))
    assert suite.render(chair) == (
        Message("system", 'Answer as JSON like {"product": "..."}'),
        Message("user", "Review: Nice chair. ({review} stays literal)"),
    )
    # A case's own messages are sent as they are: no suite prompt, no templating.
    assert suite.render(own) == (Message("user", "Hi {review}"),)
    assert own.expected == [1, 2.5, None, True]


def test_template_values_that_are_not_strings_are_sent_as_json() -> None:
    assert fill_template("{a} and {b}", {"a": [1, "x"], "b": 3}) == '[1, "x"] and 3'


CASE_HEAD = """\
suite: s
prompt: {user: "{review}"}
cases:
"""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            CASE_HEAD + "  - inputs: {review: x}\n    expected: {}\n",
            "s.llmeval.yaml:4: missing `id:` in a case",
        ),
        (
            CASE_HEAD + "  - {id: a, inputs: {review: x}, expected: {n: 1}}\n"
            "  - {id: a, inputs: {review: y}, expected: {n: 2}}\n",
            "s.llmeval.yaml:5: case 'a': duplicate case id (first defined at line 4)",
        ),
        (
            CASE_HEAD + "  - id: a\n    inputs: {review: x}\n    expected: 2024-01-01\n",
            "s.llmeval.yaml:6: case 'a': `expected` is not JSON-like",
        ),
        (
            CASE_HEAD + "  - id: a\n    inputs: {review: x}\n    expected: {1: one}\n",
            "s.llmeval.yaml:6: case 'a': `expected` is not JSON-like",
        ),
        (
            CASE_HEAD + "  - id: a\n    inputs: {text: x}\n    expected: 1\n",
            "s.llmeval.yaml:5: case 'a': the prompt uses {review} but `inputs` does not provide it",
        ),
        (
            CASE_HEAD + "  - id: a\n    inputs: {review: x}\n    expcted: 1\n",
            "s.llmeval.yaml:6: case 'a': unknown key 'expcted' in a case (did you mean 'expected'?)",
        ),
        (
            CASE_HEAD + "  - id: a\n    inputs: {review: x}\n    expected: 1\n    expected: 2\n",
            "s.llmeval.yaml:7: case 'a': duplicate key 'expected' in a case",
        ),
        (
            CASE_HEAD.replace("suite: s", "suite: s\ntreshold: 0.9")
            + "  - {id: a, inputs: {review: x}, expected: 1}\n",
            "s.llmeval.yaml:2: unknown key 'treshold' in the suite (did you mean 'threshold'?)",
        ),
        (
            CASE_HEAD + "  - id: a\n    inputs: {review: x\n    expected: 1\n",
            "s.llmeval.yaml:6: YAML syntax error",
        ),
        (
            CASE_HEAD + "  - {id: 'a b', inputs: {review: x}, expected: 1}\n",
            "s.llmeval.yaml:4: case 'a b': `id` must match ^[A-Za-z0-9_.-]+$, not 'a b'",
        ),
        (
            CASE_HEAD.replace("cases:", "threshold: 1.5\ncases:")
            + "  - {id: a, inputs: {review: x}, expected: 1}\n",
            "s.llmeval.yaml:3: `threshold` must be a number from 0 to 1, not 1.5",
        ),
        (
            CASE_HEAD.replace("cases:", "scoring: {method: semantic}\ncases:")
            + "  - {id: a, inputs: {review: x}, expected: 1}\n",
            "s.llmeval.yaml:3: `scoring.method` must be one of fields, judge, structural, not 'semantic'",
        ),
        (CASE_HEAD + "  []\n", "s.llmeval.yaml:4: `cases` must be a non-empty list"),
        (
            CASE_HEAD + "  - {id: a, inputs: {review: x}, expected: [1, 2]}\n",
            "s.llmeval.yaml:4: case 'a': `response_format: json` makes the model answer a JSON object",
        ),
        (
            CASE_HEAD + "  - {id: a, inputs: {review: x}, expected: !mytag {n: 1}}\n",
            "s.llmeval.yaml:4: YAML error: could not determine a constructor for the tag '!mytag'",
        ),
        ("", "s.llmeval.yaml:1: empty file"),
        (
            "suite: s\ncases:\n  - {id: a, expected: 1}\n",
            "s.llmeval.yaml:3: case 'a': no prompt: give the suite `prompt:`/`messages:`",
        ),
        (
            CASE_HEAD + "  - id: a\n    messages: [{role: robot, content: hi}]\n    expected: 1\n",
            "s.llmeval.yaml:5: case 'a': `messages[0].role` must be one of assistant, developer, system, user, not 'robot'",
        ),
    ],
    ids=[
        "missing-id", "duplicate-id", "expected-date", "expected-int-key", "missing-variable",
        "typo-case-key", "duplicate-yaml-key", "typo-suite-key", "yaml-syntax", "bad-id",
        "threshold-range", "unknown-method", "empty-cases", "json-mode-list", "unknown-tag",
        "empty-file", "no-prompt", "bad-role",
    ],
)  # fmt: skip
def test_each_problem_names_file_line_and_case(tmp_path: Path, text: str, problem: str) -> None:
    problems = load(tmp_path, text)
    assert any(p.startswith(problem) for p in problems), problems


def test_every_problem_in_a_file_is_reported_in_line_order(tmp_path: Path) -> None:
    problems = load(
        tmp_path,
        CASE_HEAD + "  - {id: a, inputs: {review: x}, expcted: 1}\n"
        "  - {id: b, inputs: {text: x}, expected: 1}\n",
    )
    lines = [int(p.split(":")[1]) for p in problems]
    assert lines == sorted(lines)
    assert {"a", "b"} <= {p.split("'")[1] for p in problems if "case '" in p}


def test_cases_from_borrows_another_suites_prompt_and_cases(tmp_path: Path) -> None:
    (tmp_path / "base.llmeval.yaml").write_text(VALID)
    path = tmp_path / "judged.llmeval.yaml"
    path.write_text(
        "suite: reviews-judged\ncases_from: base.llmeval.yaml\nthreshold: 0.5\n"
        "scoring: {method: fields, fields: {product: normalized}}\n"
    )
    suite = load_suite(path)
    assert suite.name == "reviews-judged"
    assert suite.threshold == 0.5
    assert suite.scoring.method == "fields"
    # Cases (and their lines) are the base file's: errors point there.
    assert suite.path == tmp_path / "base.llmeval.yaml"
    assert [(c.id, c.line) for c in suite.cases] == [("chair", 8), ("own-messages", 12)]
    assert suite.messages[1] == Message("user", "Review: {review} ({{review}} stays literal)")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("suite: j\ncases_from: base.llmeval.yaml\ncases: [{id: a, expected: 1}]\n",
         "s.llmeval.yaml:3: `cases:` comes from `cases_from`; give it there"),
        ("suite: j\ncases_from: nowhere.llmeval.yaml\n",
         "s.llmeval.yaml:2: `cases_from: nowhere.llmeval.yaml` is not a valid suite: "
         "nowhere.llmeval.yaml: cannot read: *"),
        ("suite: j\ncases_from: base.txt\n",
         "s.llmeval.yaml:2: `cases_from` must be the [*].llmeval.yaml file whose prompt, response format and cases this suite scores, not 'base.txt'"),
        ("suite: j\ncases_from: s.llmeval.yaml\n",
         "s.llmeval.yaml:2: `cases_from: s.llmeval.yaml` leads back to this file"),
        ("suite: j\ncases_from: loop.llmeval.yaml\n",
         "s.llmeval.yaml:2: `cases_from: loop.llmeval.yaml` is not a valid suite: "
         "loop.llmeval.yaml:2: `cases_from: s.llmeval.yaml` leads back to this file"),
    ],
)  # fmt: skip
def test_cases_from_problems_are_located(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "base.llmeval.yaml").write_text(VALID)
    (tmp_path / "loop.llmeval.yaml").write_text("suite: loop\ncases_from: s.llmeval.yaml\n")
    problems = load(tmp_path, text)
    assert len(problems) == 1
    assert fnmatch.fnmatchcase(problems[0], problem), problems
