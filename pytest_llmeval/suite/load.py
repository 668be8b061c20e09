"""Golden-case files: YAML → Suite and Case, validated with file:line errors.

Values come from ``yaml.safe_load``-equivalent construction; line numbers come
from the composed node tree walked alongside, so every message can point at
the line a person has to edit.

A suite file is untrusted input (a pull request's, a download's): whatever it holds,
loading it gives a Suite or a CaseFileError whose every problem has its line, never
another exception, so one bad file is one error item and the other suites still run.
The file is read in stages, each bounding what the next one may meet: its characters,
then its events (nesting, aliases), then its nodes (each scalar built alone, numbers
bounded and finite), then the values, then their shape (suite.schema.json, the one
description of the format, also what editors check against), then the suite's own rules
(templates, ids, `cases_from`, each `expected` against the suite's own JSON schema).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pytest_llmeval.suite.model import Case, Message, ResponseFormat, Suite, template_variables
from pytest_llmeval.suite.rules import FieldRule, JudgeConfig, Scoring
from pytest_llmeval.support.bounds import over_limit
from pytest_llmeval.support.memory import collector_paused
from pytest_llmeval.support.problems import ConfigError, Problem
from pytest_llmeval.support.schema import (
    SchemaPath,
    lazy_validator,
    load_schema,
    node_at,
    schema_problems,
    validator,
)
from pytest_llmeval.support.text import shorten
from pytest_llmeval.support.yamlfile import MARKER_TAGS, line_of, read_yaml, shown_value

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

SCHEMA = load_schema("pytest_llmeval.suite", "suite.schema.json")
SCHEMA_CHECK = lazy_validator(SCHEMA)
# What other code needs to know of the format, read from its one description.
ROLES = frozenset(SCHEMA["$defs"]["message"]["properties"]["role"]["enum"])
CASE_ID = re.compile(SCHEMA["$defs"]["case"]["properties"]["id"]["pattern"])


class CaseFileError(ConfigError):
    """One or more problems in a case file, each located at its line."""

    def __init__(self, path: Path, *problems: Problem) -> None:
        self.path = path
        super().__init__(*problems)


def load_suite(
    path: Path, display: str | None = None, *, borrowing: tuple[Path, ...] = ()
) -> Suite:
    """Parse and validate one case file; raises CaseFileError listing every problem found.
    ``borrowing``: the files whose `cases_from` led here (a loop among them is an error)."""
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise CaseFileError(path, Problem(f"cannot read: {exc}", shown, line)) from None
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL in it
        raise CaseFileError(path, Problem(f"cannot read: {exc}", shown)) from None
    with collector_paused():  # a dozen objects a value, none of them garbage
        try:
            root, values = read_yaml(text, shown)
        except ConfigError as exc:
            raise CaseFileError(path, *exc.problems) from None
        reader = _SuiteReader(path, shown, (*borrowing, path.resolve()), values)
        suite = reader.read(root)
    if reader.problems or suite is None:
        # Stable: problems on one line keep the order they were found in.
        raise CaseFileError(path, *sorted(reader.problems, key=lambda p: p.line or 0))
    return suite


def _is_json_like(value: Any) -> bool:
    if value is None or isinstance(value, str | bool | int | float):
        return True
    if isinstance(value, list):
        return all(_is_json_like(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json_like(v) for k, v in value.items())
    return False


def _dotted(path: SchemaPath) -> str:
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path)[1:]


def _case_path(path: SchemaPath) -> tuple[int | None, SchemaPath]:
    """The case a path is in (its index) and the path within it."""
    if len(path) >= 2 and path[0] == "cases" and isinstance(path[1], int):
        return path[1], path[2:]
    return None, path


def _what(path: SchemaPath) -> str:
    """The value at a path as a message names it (a case's values by their path in it)."""
    index, inner = _case_path(path)
    if index is not None and not inner:
        return "a case"
    if not inner:
        return "the suite"
    if len(inner) >= 2 and inner[-2] == "messages" and isinstance(inner[-1], int):
        return "a message"
    return f"`{_dotted(inner)}`"


class _SuiteReader:
    """The suite's rules, on a value whose shape the schema has checked: every problem
    collected (at its line, with its case) instead of stopping at the first. A part the
    schema found wrong is not read further, so each problem is said once."""

    def __init__(
        self, path: Path, shown: str, borrowing: tuple[Path, ...], values: dict[Any, Any]
    ) -> None:
        self.path = path
        self.shown = shown
        self.borrowing = borrowing
        self.values = values  # each node's value, built once for the whole document
        self.problems: list[Problem] = []
        self.wrong: list[SchemaPath] = []  # where the schema found a problem
        self.root: yaml.Node | None = None

    def line(self, path: SchemaPath, key: str | None = None) -> int:
        assert self.root is not None
        return line_of(node_at(self.root, path, key))

    def problem(self, path: SchemaPath, message: str, key: str | None = None) -> None:
        """A problem with the value at ``path``, named with its case when it is in one."""
        index, _ = _case_path(path)
        case = self.case_id(index) if index is not None else None
        where = f"case {case!r}: " if case else ""
        self.problems.append(Problem(f"{where}{message}", self.shown, self.line(path, key)))

    def case_id(self, index: int) -> str | None:
        cases = self.data.get("cases")
        case = cases[index] if isinstance(cases, list) and index < len(cases) else None
        found = case.get("id") if isinstance(case, dict) else None
        return found if isinstance(found, str) else None

    def ok(self, *path: str | int) -> bool:
        """Whether the schema found nothing wrong at or under ``path``."""
        return not any(wrong[: len(path)] == path for wrong in self.wrong)

    def read(self, root: yaml.Node | None) -> Suite | None:
        if root is None:
            self.problems.append(
                Problem("empty file: a suite needs `suite:` and `cases:`", self.shown, 1)
            )
            return None
        self.root, value = root, self.values[root]
        self.data: dict[Any, Any] = value if isinstance(value, dict) else {}
        for found in schema_problems(SCHEMA_CHECK(), value, _what):
            self.wrong.append(found.path)
            self.problem(found.path, found.text, found.key)
        self.duplicate_keys(root)
        if not isinstance(value, dict):
            return None
        name = value.get("suite") if self.ok("suite") else None
        description = value.get("description") if self.ok("description") else None
        if "cases_from" in value:
            return self.borrowed(name, description)
        template = self.suite_messages()
        response_format = self.response_format()
        scoring = self.scoring()
        threshold = value.get("threshold") if self.ok("threshold") else None
        cases = self.cases(template, response_format)
        if self.problems or not isinstance(name, str):
            return None
        return Suite(
            name=name,
            path=self.path,
            line=line_of(root),
            cases=tuple(cases),
            messages=tuple(template or ()),
            description=description,
            response_format=response_format,
            scoring=scoring,
            threshold=None if threshold is None else float(threshold),
        )

    def duplicate_keys(self, root: yaml.Node) -> None:
        """A key written twice in one mapping (YAML keeps the last, silently): walked
        without recursion, each node once however many aliases name it."""
        seen: set[int] = set()
        todo: list[tuple[yaml.Node, SchemaPath]] = [(root, ())]
        while todo:
            node, path = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, yaml.SequenceNode):
                todo.extend((item, (*path, n)) for n, item in enumerate(node.value))
            elif isinstance(node, yaml.MappingNode):
                keys: set[str] = set()
                for key_node, value_node in node.value:
                    if not isinstance(key_node, yaml.ScalarNode) or key_node.tag in MARKER_TAGS:
                        continue
                    key = str(key_node.value)
                    if key in keys:
                        message = f"duplicate key {key!r} in {_what(path)}"
                        index, _ = _case_path(path)
                        case = self.case_id(index) if index is not None else None
                        where = f"case {case!r}: " if case else ""
                        self.problems.append(
                            Problem(where + message, self.shown, line_of(key_node))
                        )
                    keys.add(key)
                    todo.append((value_node, (*path, key)))

    def borrowed(self, name: Any, description: Any) -> Suite | None:
        """`cases_from: other.llmeval.yaml`: that suite's prompt, response format and cases,
        scored and gated as this file says (the same goldens under another scoring)."""
        for own in ("prompt", "messages", "response_format", "cases"):
            if own in self.data:
                self.problem((own,), f"`{own}:` comes from `cases_from`; give it there")
        scoring = self.scoring()
        threshold = self.data.get("threshold") if self.ok("threshold") else None
        other = self.data["cases_from"]
        if not self.ok("cases_from"):
            return None
        at = ("cases_from",)
        try:
            target = (self.path.parent / other).resolve()
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
            self.problem(at, f"`cases_from: {shown_value(other)}` cannot be read: {exc}")
            return None
        if target in self.borrowing:
            self.problem(at, f"`cases_from: {other}` leads back to this file")
            return None
        try:
            base = load_suite(self.path.parent / other, display=other, borrowing=self.borrowing)
        except CaseFileError as exc:
            self.problem(at, f"`cases_from: {other}` is not a valid suite: {exc.lines[0]}")
            return None
        if self.problems or not isinstance(name, str):
            return None
        assert self.root is not None
        return replace(
            base,
            name=name,
            line=line_of(self.root),
            description=description or base.description,
            scoring=scoring,
            threshold=None if threshold is None else float(threshold),
            source=base.answers_group,
        )

    def suite_messages(self) -> list[Message] | None:
        """The suite's template; None when it cannot be known (the schema found it wrong)."""
        prompt, messages = self.data.get("prompt"), self.data.get("messages")
        if not (self.ok("prompt") and self.ok("messages")):
            return None
        if prompt is not None and messages is not None:
            self.problem(("messages",), "give either `prompt:` or `messages:`, not both")
            return None
        if messages is not None:
            return [Message(m["role"], m["content"]) for m in messages]
        if prompt is None:
            return []  # every case must then carry its own messages
        return [Message(role, prompt[role]) for role in ("system", "user") if role in prompt]

    def response_format(self) -> ResponseFormat:
        value = self.data.get("response_format", "json")
        if not self.ok("response_format") or value == "json":
            return ResponseFormat()
        if value == "text":
            return ResponseFormat(json_mode=False)
        if not _is_json_like(value):
            self.problem(("response_format",), "`response_format` must be a JSON schema")
            return ResponseFormat()
        from jsonschema import Draft202012Validator  # on first need: see support.schema
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as exc:
            where = "".join(f"[{step!r}]" for step in exc.path)
            self.problem(
                ("response_format", *exc.path),
                f"`response_format` is not a valid JSON schema{' at ' + where if where else ''}: "
                + shorten(exc.message, 160),
            )
            return ResponseFormat()
        return ResponseFormat(schema=value)

    def scoring(self) -> Scoring:
        value = self.data.get("scoring", {})
        if not self.ok("scoring"):
            return Scoring()
        method = value.get("method", "structural")
        rules = [(str(name), _field_rule(rule)) for name, rule in value.get("fields", {}).items()]
        if method == "fields" and not rules:
            self.problem(("scoring",), "`method: fields` needs `fields:`, a scorer for each field")
        elif method != "fields" and rules:
            self.problem(("scoring", "fields"), "`fields:` is for `method: fields`")
        return Scoring(
            method=method,
            ignore_order=value.get("ignore_order", False),
            ignore_string_case=value.get("ignore_string_case", False),
            numeric_tolerance=float(value.get("numeric_tolerance", 0.0)),
            exclude_paths=tuple(value.get("exclude_paths", ())),
            fields=tuple(rules),
            judge=self.judge_config(value.get("judge", {})),
        )

    def judge_config(self, value: dict[str, Any]) -> JudgeConfig:
        at = ("scoring", "judge")
        needed = ("{reference}", "{answer}")
        template = value.get("prompt")
        if template is not None and not all(part in template for part in needed):
            self.problem((*at, "prompt"), "`judge.prompt` must contain {reference} and {answer}")
        turns = [Message(m["role"], m["content"]) for m in value.get("messages", ())]
        if turns and template is not None:
            self.problem((*at, "messages"), "give either `judge.prompt` or `judge.messages`")
        elif turns and not all(part in turns[-1].content for part in needed):
            self.problem(
                (*at, "messages"), "`judge.messages`: its last turn needs {reference} and {answer}"
            )
        return JudgeConfig(
            model=value.get("model"),
            criteria=value.get("criteria", ""),
            prompt=template,
            messages=tuple((m.role, m.content) for m in turns),
            only_when_different=value.get("only_when_different", True),
            model_line=self.line((*at, "model")) if "model" in value else None,
        )

    def cases(self, template: list[Message] | None, response_format: ResponseFormat) -> list[Case]:
        if "cases" not in self.data:
            self.problem((), "missing `cases:`")
            return []
        if not isinstance(self.data["cases"], list):
            return []  # the schema said so
        variables = set().union(*(template_variables(m.content) for m in template or ()))
        expected_check = (
            validator(response_format.schema) if response_format.schema is not None else None
        )
        seen: dict[str, int] = {}
        out = []
        for index, item in enumerate(self.data["cases"]):
            if not self.ok("cases", index):
                continue
            case = self.case(index, item, template, variables, response_format, expected_check)
            if case is None:
                continue
            if case.id in seen:
                self.problem(
                    ("cases", index), f"duplicate case id (first defined at line {seen[case.id]})"
                )
                continue
            seen[case.id] = case.line
            out.append(case)
        return out

    def case(
        self,
        index: int,
        item: dict[str, Any],
        template: list[Message] | None,
        variables: set[str],
        response_format: ResponseFormat,
        expected_check: Draft202012Validator | None,
    ) -> Case | None:
        at = ("cases", index)
        before = len(self.problems)
        inputs: dict[str, Any] = item.get("inputs", {})
        if not _is_json_like(inputs):
            # They are sent as JSON and kept in the results file: a date cannot be.
            self.problem(
                (*at, "inputs"),
                "`inputs` must be JSON-like (strings, numbers, booleans, null, lists "
                "and mappings with string keys): quote a date",
            )
        messages = [Message(m["role"], m["content"]) for m in item.get("messages", ())]
        if not messages and template == []:
            self.problem(
                at, "no prompt: give the suite `prompt:`/`messages:` or the case `messages:`"
            )
        elif not messages and template:
            missing = sorted(variables - inputs.keys())
            if missing:
                self.problem(
                    (*at, "inputs") if "inputs" in item else at,
                    f"the prompt uses {', '.join('{' + m + '}' for m in missing)} "
                    "but `inputs` does not provide it",
                )
        expected: Any = item.get("expected")
        # JSON mode makes the model answer an object: no other `expected` can ever pass.
        object_only = response_format.json_mode and response_format.schema is None
        # A case with no `expected:` has no golden yet: its item is an error until
        # --llm-update-goldens writes one.
        if "expected" in item:
            if not _is_json_like(expected):
                self.problem(
                    (*at, "expected"),
                    "`expected` is not JSON-like (only mappings with string keys, lists, "
                    "strings, numbers, booleans and null)",
                )
            elif (over := over_limit(expected, "`expected`")) is not None:
                # No answer could match it: every answer past the bound is a miss.
                self.problem((*at, "expected"), f"{over}: no answer could match it")
            elif object_only and not isinstance(expected, dict):
                self.problem(
                    (*at, "expected"),
                    "`response_format: json` makes the model answer a JSON object, and "
                    "`expected` is not one: give a JSON schema or `response_format: text`",
                )
            elif expected_check is not None:
                # An answer must follow the schema: an `expected` that does not can never pass.
                def named(path: SchemaPath) -> str:
                    return f"`expected{''.join(f'[{step!r}]' for step in path)}`"

                for found in schema_problems(expected_check, expected, named):
                    self.problem(
                        (*at, "expected", *found.path),
                        f"{found.text} (by the suite's `response_format` schema)",
                        found.key,
                    )
        if len(self.problems) > before:
            return None
        return Case(
            id=item["id"],
            line=self.line(at),
            expected=expected,
            inputs=inputs,
            messages=tuple(messages),
            tags=tuple(item.get("tags", ())),
            notes=item.get("notes"),
            golden="expected" in item,
        )


def _field_rule(rule: str | dict[str, Any]) -> FieldRule:
    """`name: method` or `name: {method: ..., tolerance: ..., threshold: ...}`"""
    if isinstance(rule, str):
        return FieldRule(rule)
    numbers = {k: float(rule[k]) for k in ("tolerance", "threshold") if k in rule}
    return FieldRule(rule["method"], **numbers)
