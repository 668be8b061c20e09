"""`llmeval validate` and `llmeval schema`: every suite checked without a model, each
problem at its file and line; the schema that is the format's one description."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from pytest_llmeval.suite.rules import FIELD_METHODS
from tests.conftest import ROOT, llmeval
from tests.test_cases import VALID as CASES_VALID
from tests.test_untrusted import BROKEN, GOOD, RICH
from tests.test_untrusted import VALID as UNTRUSTED_VALID

EXAMPLE = ROOT / "example_suite"
BASE = """\
suite: base
prompt: {user: "Review: {review}"}
response_format:
  type: object
  properties: {product: {type: string}, stars: {type: integer, maximum: 5}}
  required: [product]
cases:
  - id: chair
    inputs: {review: Nice chair.}
    expected: {product: chair, stars: 4}
  - id: lamp
    inputs: {review: A dim lamp.}
    expected: {product: lamp}
"""


def project(tmp_path: Path, files: dict[str, str], models: str = "") -> Path:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\ntestpaths = ["suites"]\n' + textwrap.dedent(models)
    )
    for name, text in files.items():
        path = tmp_path / "suites" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return tmp_path


def test_the_example_suite_has_no_problems() -> None:
    # Its model table (the judge's model) is in the pyproject.toml beside it, as pytest finds.
    result = llmeval("validate", "example_suite", cwd=ROOT)
    # The study's three suites over 142 cases, and its 20 training cases.
    assert (result.returncode, result.stdout) == (0, "4 suites, 446 cases: no problems\n")
    # Read from elsewhere, the judge is unknown.
    other = llmeval("validate", "example_suite", "--config", "pyproject.toml", cwd=ROOT)
    assert other.returncode == 1
    assert "`scoring.judge.model: qwen-judge` is not in [tool.llmeval.models]" in other.stdout


def test_every_broken_file_is_each_problem_at_its_line(tmp_path: Path) -> None:
    files = {f"broken{n}.llmeval.yaml": text for n, (text, _) in enumerate(BROKEN.values())}
    result = llmeval("validate", cwd=project(tmp_path, {**files, "good.llmeval.yaml": GOOD}))
    assert result.returncode == 1, result.stderr
    out = result.stdout.splitlines()
    for n, (_, problem) in enumerate(BROKEN.values()):
        assert any(line.startswith(f"suites/broken{n}.llmeval.yaml:{problem}") for line in out), (
            problem
        )
    assert "Traceback" not in result.stderr
    assert out[-1] == f"1 suite, 3 cases: {len(out) - 1} problems"


def test_a_case_problem_names_its_file_line_and_case(tmp_path: Path) -> None:
    broken = BASE.replace("expected: {product: lamp}", "expcted: {product: lamp}")
    result = llmeval("validate", cwd=project(tmp_path, {"s.llmeval.yaml": broken}))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "suites/s.llmeval.yaml:13: case 'lamp': unknown key 'expcted' in a case "
        "(did you mean 'expected'?); allowed: expected, id, inputs, messages, notes, tags",
        "0 suites, 0 cases: 1 problem",
    ]


def test_the_same_case_id_in_two_files(tmp_path: Path) -> None:
    other = BASE.replace("suite: base", "suite: other").replace("id: chair", "id: stool")
    root = project(tmp_path, {"a.llmeval.yaml": BASE, "b/b.llmeval.yaml": other})
    result = llmeval("validate", cwd=root)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "suites/b/b.llmeval.yaml:11: case 'lamp': the same id as a case of another file "
        "(suites/a.llmeval.yaml:11)",
        "2 suites, 4 cases: 1 problem",
    ]


def test_a_suite_borrowing_cases_is_not_a_duplicate_but_a_bad_borrow_is_a_problem(
    tmp_path: Path,
) -> None:
    borrow = "suite: again\ncases_from: base.llmeval.yaml\nthreshold: 0.5\n"
    bad = "suite: bad\ncases_from: missing.llmeval.yaml\n"
    root = project(tmp_path, {"base.llmeval.yaml": BASE, "again.llmeval.yaml": borrow,
                              "bad.llmeval.yaml": bad})  # fmt: skip
    result = llmeval("validate", cwd=root)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "suites/bad.llmeval.yaml:2: `cases_from: missing.llmeval.yaml` is not a valid suite: "
        f"missing.llmeval.yaml: cannot read: [Errno 2] No such file or directory: "
        f"'{root / 'suites' / 'missing.llmeval.yaml'}'",
        "2 suites, 4 cases: 1 problem",
    ]


def test_an_expected_value_against_the_suites_schema(tmp_path: Path) -> None:
    broken = BASE.replace("{product: chair, stars: 4}", "{product: 7, stars: 6}").replace(
        "{product: lamp}", "{name: lamp}"
    )
    result = llmeval("validate", cwd=project(tmp_path, {"s.llmeval.yaml": broken}))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "suites/s.llmeval.yaml:10: case 'chair': `expected['product']` must be a string, not 7 "
        "(by the suite's `response_format` schema)",
        "suites/s.llmeval.yaml:10: case 'chair': `expected['stars']` must be a number <= 5, "
        "not 6 (by the suite's `response_format` schema)",
        "suites/s.llmeval.yaml:13: case 'lamp': missing `product:` in `expected` "
        "(by the suite's `response_format` schema)",
        "0 suites, 0 cases: 3 problems",
    ]


def test_an_invalid_response_format_schema_is_located(tmp_path: Path) -> None:
    broken = BASE.replace("type: object", "type: thing")
    result = llmeval("validate", cwd=project(tmp_path, {"s.llmeval.yaml": broken}))
    assert result.returncode == 1
    assert result.stdout.startswith(
        "suites/s.llmeval.yaml:4: `response_format` is not a valid JSON schema at ['type']: "
    ), result.stdout


def test_a_judge_model_the_model_table_does_not_name(tmp_path: Path) -> None:
    judged = "suite: j\ncases_from: base.llmeval.yaml\nscoring:\n  method: judge\n  judge:\n    model: {}\n"
    root = project(
        tmp_path,
        {"base.llmeval.yaml": BASE, "a.llmeval.yaml": judged.format("local-judge"),
         "b.llmeval.yaml": judged.format("gpt-4o-mini"), "c.llmeval.yaml": judged.format("gemma")},
        models='[tool.llmeval.models.local-judge]\nbase_url = "http://127.0.0.1:1/v1"\n',
    )  # fmt: skip
    result = llmeval("validate", cwd=root)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "suites/c.llmeval.yaml:6: `scoring.judge.model: gemma` is not in [tool.llmeval.models] "
        "and is not an OpenAI model name",
        "4 suites, 8 cases: 1 problem",
    ]


def test_paths_named_are_validated_rather_than_the_testpaths(tmp_path: Path) -> None:
    root = project(tmp_path, {"s.llmeval.yaml": "suite: s\n"})
    (tmp_path / "good.llmeval.yaml").write_text(BASE)
    assert llmeval("validate", cwd=root).returncode == 1
    result = llmeval("validate", "good.llmeval.yaml", cwd=root)
    assert (result.returncode, result.stdout) == (0, "1 suite, 2 cases: no problems\n")


def test_the_schema_is_valid_and_every_suite_written_follows_it(tmp_path: Path) -> None:
    result = llmeval("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    # The scorers the schema allows are those scoring/fields.py has.
    assert tuple(schema["$defs"]["field_method"]["enum"]) == FIELD_METHODS
    checker = Draft202012Validator(schema)
    suites = [path.read_text(encoding="utf-8") for path in EXAMPLE.glob("*.llmeval.yaml")]
    suites += [CASES_VALID, BASE, GOOD, RICH, UNTRUSTED_VALID]
    assert len(suites) == 9  # the example's four, and five written here
    for text in suites:
        assert list(checker.iter_errors(yaml.safe_load(text))) == []
    # And it refuses what the loader refuses.
    assert not checker.is_valid(yaml.safe_load(GOOD + "treshold: 0.5\n"))


def test_the_hook_as_pre_commit_runs_it(tmp_path: Path) -> None:
    """pre-commit installs this repository into an environment of its own and runs the
    hook there, on a project's suites."""
    pre_commit = shutil.which("pre-commit", path=str(Path(sys.executable).parent))
    if pre_commit is None:
        pytest.skip("pre-commit is not installed (the test extra has it)")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    project(tmp_path, {"a.llmeval.yaml": BASE})
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "suites"], cwd=tmp_path, check=True)
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path.parent / "pre-commit-home")}

    def hook() -> subprocess.CompletedProcess[str]:
        return subprocess.run([pre_commit, "try-repo", str(ROOT), "llmeval-validate",
                               "--all-files"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=900, check=False)  # fmt: skip

    passed = hook()
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "llmeval validate" in passed.stdout
    (tmp_path / "suites" / "a.llmeval.yaml").write_text(BASE.replace("id: lamp", "id: lamp lit"))
    failed = hook()
    assert failed.returncode == 1
    assert (
        "suites/a.llmeval.yaml:11: case 'lamp lit': `id` must match ^[A-Za-z0-9_.-]+$, "
        "not 'lamp lit'" in failed.stdout
    )


def test_the_readmes_first_suite_has_no_problems(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("# yaml-language-server: $schema=")
    (tmp_path / "first.llmeval.yaml").write_text(readme[start : readme.index("```", start)])
    result = llmeval("validate", "first.llmeval.yaml", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "1 suite, 1 case: no problems\n")


def test_the_schema_piped_into_a_reader_that_stopped_is_no_traceback() -> None:
    """`llmeval schema | head`: the reader has closed the pipe before the schema is written."""
    read, write = os.pipe()
    os.close(read)
    try:
        shown = subprocess.run([sys.executable, "-m", "pytest_llmeval.cli", "schema"],
                               stdout=write, stderr=subprocess.PIPE, text=True, check=False)  # fmt: skip
    finally:
        os.close(write)
    assert "Traceback" not in shown.stderr, shown.stderr
    assert shown.returncode == 1
