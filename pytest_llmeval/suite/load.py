"""Golden-case files: YAML → Suite and Case, validated with file:line errors.

Values come from ``yaml.safe_load``-equivalent construction; line numbers come
from the composed node tree walked alongside, so every message can point at
the line a person has to edit.

A suite file is untrusted input (a pull request's, a download's): whatever it holds,
loading it gives a Suite or a CaseFileError whose every problem has its line, never
another exception, so one bad file is one error item and the other suites still run.
The file is read in stages, each bounding what the next one may meet: its characters,
then its events (nesting, aliases), then its nodes (each scalar built alone, numbers
bounded and finite), then the values, then the suite's own rules.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from pytest_llmeval.suite.model import (
    Case,
    Message,
    ResponseFormat,
    Suite,
    is_suite_file,
    template_variables,
)
from pytest_llmeval.suite.rules import FIELD_METHODS, FieldRule, JudgeConfig, Scoring
from pytest_llmeval.support.problems import ConfigError, Problem
from pytest_llmeval.support.text import did_you_mean, shorten

SUITE_KEYS = frozenset(
    {
        "suite",
        "description",
        "prompt",
        "messages",
        "response_format",
        "scoring",
        "threshold",
        "cases",
        "cases_from",
    }
)
CASE_KEYS = frozenset({"id", "inputs", "messages", "expected", "tags", "notes"})
PROMPT_KEYS = frozenset({"system", "user"})
MESSAGE_KEYS = frozenset({"role", "content"})
ROLES = frozenset({"system", "user", "assistant", "developer"})
SCORING_KEYS = frozenset(
    {
        "method",
        "ignore_order",
        "ignore_string_case",
        "numeric_tolerance",
        "exclude_paths",
        "fields",
        "judge",
    }
)
SCORING_METHODS = frozenset({"structural", "judge", "fields"})
FIELD_RULE_KEYS = frozenset({"method", "tolerance", "threshold"})
JUDGE_KEYS = frozenset({"model", "criteria", "prompt", "messages", "only_when_different"})

CASE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")

# What a suite file may hold, at most; past each bound, a located problem.
#
# Levels of nesting, in the file and through aliases: a case's `expected` is four levels
# down and a JSON schema nests twice as deep as its data; PyYAML composes and builds
# recursively (1,000 levels: RecursionError). Answers are bounded more tightly
# (scoring.structural): an `expected` nested deeper than they may be says so at scoring.
MAX_DEPTH = 64
# Characters of a number, as answers' digits: Python refuses to build an int of more
# than 4,300 digits (ValueError), and no golden value needs a hundred.
MAX_NUMBER_CHARS = 100
# Values that aliases (`*name`) may add to a file beyond those it spells out: ample to
# reuse a prompt, a message list or a schema many times over. An alias bomb (each anchor
# ten aliases of the one before) grows tenfold a line: 475 bytes took 38 s and 1.8 GB.
MAX_ALIASED_VALUES = 10_000


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
    root, values = _read_yaml(path, text, shown)
    reader = _SuiteReader(path, shown, (*borrowing, path.resolve()), values)
    try:
        suite = reader.read(root)
    except yaml.YAMLError as exc:  # a value the document's construction did not reach
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise CaseFileError(path, Problem(f"YAML error: {_said(exc)}", shown, line)) from None
    if reader.problems or suite is None:
        # Stable: problems on one line keep the order they were found in.
        raise CaseFileError(path, *sorted(reader.problems, key=lambda p: p.line or 0))
    return suite


def _read_yaml(path: Path, text: str, shown: str) -> tuple[yaml.Node | None, dict[Any, Any]]:
    """The composed node tree and the value of each node; raises CaseFileError.

    Whatever the YAML library raises (its own errors, and the constructors' ValueError,
    KeyError or AttributeError on `!!float x`, `!!bool maybe`, `!!timestamp x`) becomes a
    problem at the line it concerns."""
    characters = _unreadable_characters(text, shown)
    if characters:
        raise CaseFileError(path, *characters)
    try:
        # Events first: nesting and aliases bounded before anything recurses or expands.
        too_much = _bounded_events(text, shown)
        root = None if too_much is not None else yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        reason = " ".join(p for p in (exc.context, exc.problem) if p)
        raise CaseFileError(path, Problem(f"YAML syntax error: {reason}", shown, line)) from None
    except Exception as exc:  # the library's other errors: at their position if they have one
        line = _line_at(text, getattr(exc, "position", None))
        raise CaseFileError(path, Problem(f"YAML error: {_said(exc)}", shown, line)) from None
    if too_much is not None:
        raise CaseFileError(path, too_much)
    if root is None:
        return None, {}
    loader = yaml.SafeLoader("")
    try:
        problems, mappings = _built_scalars(loader, root, shown)
        if problems:
            raise CaseFileError(path, *problems)
        # Merge keys (`<<: *base`) are flattened into their mappings as they are built:
        # the reader walks the tree as written, so each mapping's entries are put back.
        failed: Problem | None = None
        try:
            loader.construct_object(root, deep=True)
        except Exception as exc:  # an unhashable key, a bad merge, a tag on a collection
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else _line(root)
            failed = Problem(f"YAML error: {_said(exc)}", shown, line)
        finally:
            for node, entries in mappings:
                node.value = entries
        if failed is not None:
            raise CaseFileError(path, failed)
        return root, dict(loader.constructed_objects)
    finally:
        loader.dispose()


def _unreadable_characters(text: str, shown: str) -> list[Problem]:
    """Characters YAML does not allow in a file (control characters, U+FFFE), each line's
    first; in a double-quoted string they are written as escapes."""
    problems: list[Problem] = []
    lines: set[int] = set()
    for found in yaml.reader.Reader.NON_PRINTABLE.finditer(text):
        line = _line_at(text, found.start())
        if line in lines:
            continue
        lines.add(line)
        code = ord(found.group())
        escape = f"\\x{code:02X}" if code < 0x100 else f"\\u{code:04X}"
        problems.append(
            Problem(
                f"YAML error: the character U+{code:04X} is not allowed in a YAML file; "
                f'in a double-quoted string write it as "{escape}"',
                shown,
                line,
            )
        )
        if len(problems) == 10:
            break
    return problems


def _bounded_events(text: str, shown: str) -> Problem | None:
    """The first bound the file's events pass, as a problem: nesting deeper than
    MAX_DEPTH (in the file, or through an alias), aliases adding more than
    MAX_ALIASED_VALUES values, or an alias inside the value it names (a cycle).

    Sizes and depths are counted from the event stream (each anchor's value's size and
    depth once, when it closes), so an alias bomb costs its length to refuse."""
    open_values: list[list[Any]] = []  # [values, deepest child, anchor] of each open collection
    anchored: dict[str, tuple[int, int]] = {}  # anchor: (values, depth) of its value
    aliased = 0

    def add(values: int, depth: int) -> None:
        if open_values:
            open_values[-1][0] += values
            open_values[-1][1] = max(open_values[-1][1], depth)

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = int(event.start_mark.line) + 1 if event.start_mark else 1
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_values) + 1 > MAX_DEPTH:
                return Problem(f"nested deeper than {MAX_DEPTH} levels", shown, line)
            open_values.append([1, 0, event.anchor])
        elif isinstance(event, yaml.CollectionEndEvent):
            values, below, anchor = open_values.pop()
            if anchor is not None:
                anchored[anchor] = (values, below + 1)
            add(values, below + 1)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                anchored[event.anchor] = (1, 0)
            add(1, 0)
        elif isinstance(event, yaml.AliasEvent):
            name = event.anchor
            if any(frame[2] == name for frame in open_values):
                return Problem(f"the alias *{name} is inside the value it names", shown, line)
            if name not in anchored:
                continue  # composing says: found undefined alias
            values, depth = anchored[name]
            aliased += values
            if aliased > MAX_ALIASED_VALUES:
                return Problem(
                    f"aliases repeat more than {MAX_ALIASED_VALUES:,} values (at *{name}): "
                    "refused, so that a few lines cannot expand into gigabytes",
                    shown,
                    line,
                )
            if len(open_values) + depth > MAX_DEPTH:
                return Problem(
                    f"nested deeper than {MAX_DEPTH} levels through the alias *{name}",
                    shown,
                    line,
                )
            add(values, depth)
    return None


_NUMBERS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_MARKERS = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")  # the keys `<<` and `=`


def _built_scalars(
    loader: yaml.SafeLoader, root: yaml.Node, shown: str
) -> tuple[list[Problem], list[tuple[yaml.MappingNode, list[Any]]]]:
    """Every scalar built alone (each bad one a problem at its line: `!!float x`,
    `!!bool maybe`, a long or a non-finite number), and every mapping with its entries as
    written. Walked without recursion, each node once however many aliases name it."""
    problems: list[Problem] = []
    mappings: list[tuple[yaml.MappingNode, list[Any]]] = []
    seen: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            mappings.append((node, list(node.value)))
            todo.extend(part for pair in reversed(node.value) for part in reversed(pair))
        elif isinstance(node, yaml.SequenceNode):
            todo.extend(reversed(node.value))
        elif isinstance(node, yaml.ScalarNode):
            problem = _scalar_problem(loader, node)
            if problem is not None:
                problems.append(Problem(f"YAML error: {problem}", shown, _line(node)))
    return sorted(problems, key=lambda p: p.line or 0), mappings


def _scalar_problem(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str | None:
    if node.tag in _MARKERS:
        return None  # not a value: the mapping it is a key of is built with it
    tag = _short_tag(node.tag)
    if node.tag in _NUMBERS and len(node.value) > MAX_NUMBER_CHARS:
        return f"a number longer than {MAX_NUMBER_CHARS} characters"
    try:
        value = loader.construct_object(node)
    except yaml.MarkedYAMLError as exc:
        return " ".join(p for p in (exc.context, exc.problem) if p)
    except Exception:  # the constructors' own: float('x'), {...}['maybe'], None.groupdict()
        return f"{_shown(node.value)} is not a valid {tag}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{_shown(node.value)} is not a finite number: NaN and infinities are refused"
    return None


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org") else tag


def _shown(value: Any) -> str:
    return shorten(repr(value), 60)


def _said(exc: BaseException) -> str:
    """A YAML library error's words, without its "in <unicode string>" position lines."""
    if isinstance(exc, yaml.MarkedYAMLError):
        said = " ".join(p for p in (exc.context, exc.problem) if p)
        if said:
            return said
    return shorten(str(exc), 200) or type(exc).__name__


def _line_at(text: str, position: int | None) -> int:
    return 1 if position is None else text.count("\n", 0, position) + 1


def _construct(node: yaml.Node) -> Any:
    """A node the document's construction did not reach (the value of a merge key the
    reader met as written): built alone; any failure a YAMLError at its line."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError:
        raise
    except Exception as exc:  # the constructors' own errors, as in _read_yaml
        raise yaml.constructor.ConstructorError(
            None, None, f"cannot build this value ({exc})", node.start_mark
        ) from None
    finally:
        loader.dispose()


def _is_json_like(value: Any) -> bool:
    if value is None or isinstance(value, str | bool | int | float):
        return True
    if isinstance(value, list):
        return all(_is_json_like(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json_like(v) for k, v in value.items())
    return False


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _SuiteReader:
    """Walks the composed YAML tree, collecting every problem instead of stopping at the first."""

    def __init__(
        self, path: Path, shown: str, borrowing: tuple[Path, ...], values: dict[Any, Any]
    ) -> None:
        self.path = path
        self.shown = shown
        self.borrowing = borrowing
        self.values = values  # each node's value, built once for the whole document
        self.problems: list[Problem] = []

    def value(self, node: yaml.Node) -> Any:
        return self.values[node] if node in self.values else _construct(node)

    def problem(self, node: yaml.Node | int, message: str, case: str | None = None) -> None:
        line = node if isinstance(node, int) else _line(node)
        where = f"case {case!r}: " if case else ""
        self.problems.append(Problem(f"{where}{message}", self.shown, line))

    def mapping(
        self, node: yaml.Node, allowed: frozenset[str], what: str, case: str | None = None
    ) -> dict[str, yaml.Node] | None:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, f"{what} must be a mapping", case)
            return None
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.problem(key_node, f"{what} has a key that is not a plain name", case)
                continue
            if key in out:
                self.problem(key_node, f"duplicate key {key!r} in {what}", case)
                continue
            if key not in allowed:
                self.problem(key_node, _unknown_key(key, allowed, what), case)
                continue
            out[key] = value_node
        return out

    def read(self, root: yaml.Node | None) -> Suite | None:
        if root is None:
            self.problem(1, "empty file: a suite needs `suite:` and `cases:`")
            return None
        keys = self.mapping(root, SUITE_KEYS, "the suite")
        if keys is None:
            return None
        name = self.string(keys, "suite", root, required=True)
        description = self.string(keys, "description", root)
        if "cases_from" in keys:
            return self.borrowed(keys, name, description, root)
        template = self.suite_messages(keys, root)
        response_format = self.response_format(keys.get("response_format"))
        scoring = self.scoring(keys.get("scoring"))
        threshold = self.threshold(keys.get("threshold"))
        variables = set().union(*(template_variables(m.content) for m in template))
        # JSON mode makes the model answer an object: no other `expected` can ever pass.
        object_only = response_format.json_mode and response_format.schema is None
        cases = self.cases(
            keys.get("cases"),
            root,
            variables,
            has_template=bool(template),
            object_only=object_only,
        )
        if self.problems or name is None:
            return None
        return Suite(
            name=name,
            path=self.path,
            line=_line(root),
            cases=tuple(cases),
            messages=tuple(template),
            description=description,
            response_format=response_format,
            scoring=scoring,
            threshold=threshold,
        )

    def borrowed(
        self, keys: dict[str, yaml.Node], name: str | None, description: str | None, root: yaml.Node
    ) -> Suite | None:
        """`cases_from: other.llmeval.yaml`: that suite's prompt, response format and cases,
        scored and gated as this file says (the same goldens under another scoring)."""
        node = keys["cases_from"]
        for own in ("prompt", "messages", "response_format", "cases"):
            if own in keys:
                self.problem(keys[own], f"`{own}:` comes from `cases_from`; give it there")
        other = self.value(node)
        if not isinstance(other, str) or not is_suite_file(Path(other)):
            self.problem(node, "`cases_from` must name a *.llmeval.yaml file")
            return None
        scoring = self.scoring(keys.get("scoring"))
        threshold = self.threshold(keys.get("threshold"))
        try:
            target = (self.path.parent / other).resolve()
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
            self.problem(node, f"`cases_from: {_shown(other)}` cannot be read: {exc}")
            return None
        if target in self.borrowing:
            self.problem(node, f"`cases_from: {other}` leads back to this file")
            return None
        try:
            base = load_suite(self.path.parent / other, display=other, borrowing=self.borrowing)
        except CaseFileError as exc:
            self.problem(node, f"`cases_from: {other}` is not a valid suite: {exc.lines[0]}")
            return None
        if self.problems or name is None:
            return None
        return replace(
            base,
            name=name,
            line=_line(root),
            description=description or base.description,
            scoring=scoring,
            threshold=threshold,
        )

    def string(
        self, keys: dict[str, yaml.Node], key: str, parent: yaml.Node, *, required: bool = False
    ) -> str | None:
        node = keys.get(key)
        if node is None:
            if required:
                self.problem(parent, f"missing `{key}:`")
            return None
        value = self.value(node)
        if not isinstance(value, str) or not value.strip():
            self.problem(node, f"`{key}` must be a non-empty string")
            return None
        return value

    def suite_messages(self, keys: dict[str, yaml.Node], root: yaml.Node) -> list[Message]:
        prompt, messages = keys.get("prompt"), keys.get("messages")
        if prompt is not None and messages is not None:
            self.problem(messages, "give either `prompt:` or `messages:`, not both")
            return []
        if messages is not None:
            return self.message_list(messages, "`messages`")
        if prompt is None:
            return []  # every case must then carry its own messages
        fields = self.mapping(prompt, PROMPT_KEYS, "`prompt`")
        if fields is None:
            return []
        out = []
        for role in ("system", "user"):
            node = fields.get(role)
            if node is None:
                continue
            value = self.value(node)
            if not isinstance(value, str):
                self.problem(node, f"`prompt.{role}` must be a string")
                continue
            out.append(Message(role, value))
        if not any(m.role == "user" for m in out):
            self.problem(prompt, "`prompt` needs a `user:` template")
        return out

    def message_list(self, node: yaml.Node, what: str, case: str | None = None) -> list[Message]:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.problem(node, f"{what} must be a non-empty list of {{role, content}}", case)
            return []
        out = []
        for item in node.value:
            fields = self.mapping(item, MESSAGE_KEYS, "a message", case)
            if fields is None:
                continue
            role = self.value(fields["role"]) if "role" in fields else None
            content = self.value(fields["content"]) if "content" in fields else None
            if not isinstance(role, str) or role not in ROLES:
                self.problem(
                    item, f"message role must be one of {sorted(ROLES)}, not {_shown(role)}", case
                )
            elif not isinstance(content, str):
                self.problem(item, "message `content` must be a string", case)
            else:
                out.append(Message(role, content))
        return out

    def response_format(self, node: yaml.Node | None) -> ResponseFormat:
        value = "json" if node is None else self.value(node)
        if value == "json":
            return ResponseFormat()
        if value == "text":
            return ResponseFormat(json_mode=False)
        if isinstance(value, dict) and _is_json_like(value) and "type" in value:
            return ResponseFormat(schema=value)
        assert node is not None
        self.problem(node, "`response_format` must be `json`, `text` or a JSON schema mapping")
        return ResponseFormat()

    def scoring(self, node: yaml.Node | None) -> Scoring:
        if node is None:
            return Scoring()
        fields = self.mapping(node, SCORING_KEYS, "`scoring`")
        if fields is None:
            return Scoring()
        values = {k: self.value(v) for k, v in fields.items()}
        method = values.get("method", "structural")
        if not isinstance(method, str) or method not in SCORING_METHODS:
            self.problem(
                fields["method"],
                f"unknown scoring method {_shown(method)}; "
                f"available: {', '.join(sorted(SCORING_METHODS))}",
            )
        for flag in ("ignore_order", "ignore_string_case"):
            if flag in values and not isinstance(values[flag], bool):
                self.problem(fields[flag], f"`scoring.{flag}` must be true or false")
        tolerance = values.get("numeric_tolerance", 0.0)
        if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or tolerance < 0:
            self.problem(fields["numeric_tolerance"], "`numeric_tolerance` must be a number >= 0")
            tolerance = 0.0
        paths = values.get("exclude_paths", [])
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            self.problem(fields["exclude_paths"], "`exclude_paths` must be a list of strings")
            paths = []
        rules = self.field_rules(fields.get("fields"))
        if method == "fields" and not rules:
            self.problem(node, "`method: fields` needs `fields:`, a scorer for each field")
        elif method != "fields" and rules:
            self.problem(fields["fields"], "`fields:` is for `method: fields`")
        return Scoring(
            method=str(method),
            ignore_order=values.get("ignore_order") is True,
            ignore_string_case=values.get("ignore_string_case") is True,
            numeric_tolerance=float(tolerance),
            exclude_paths=tuple(paths),
            fields=tuple(rules),
            judge=self.judge_config(fields.get("judge")),
        )

    def field_rules(self, node: yaml.Node | None) -> list[tuple[str, FieldRule]]:
        """`fields: {name: method, name: {method: ..., tolerance: ..., threshold: ...}}`"""
        if node is None:
            return []
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, "`scoring.fields` must map field names to scorers")
            return []
        rules = []
        for key_node, value_node in node.value:
            name = self.value(key_node)
            if isinstance(value_node, yaml.ScalarNode):
                values: dict[str, Any] = {"method": self.value(value_node)}
            else:
                keys = self.mapping(value_node, FIELD_RULE_KEYS, f"the scorer of field {name!r}")
                if keys is None:
                    continue
                values = {k: self.value(v) for k, v in keys.items()}
            method = values.get("method")
            if not isinstance(method, str) or method not in FIELD_METHODS:
                self.problem(
                    value_node,
                    f"field {_shown(name)}: unknown scorer {_shown(method)}; available: "
                    + ", ".join(FIELD_METHODS),
                )
                continue
            number = {k: values[k] for k in ("tolerance", "threshold") if k in values}
            if any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0
                   for v in number.values()):  # fmt: skip
                self.problem(
                    value_node, f"field {name!r}: tolerance and threshold are numbers >= 0"
                )
                continue
            rules.append(
                (str(name), FieldRule(str(method), **{k: float(v) for k, v in number.items()}))
            )
        return rules

    def judge_config(self, node: yaml.Node | None) -> JudgeConfig:
        if node is None:
            return JudgeConfig()
        keys = self.mapping(node, JUDGE_KEYS, "`scoring.judge`")
        if keys is None:
            return JudgeConfig()
        values = {k: self.value(v) for k, v in keys.items() if k != "messages"}
        for key in ("model", "criteria", "prompt"):
            if key in values and not (isinstance(values[key], str) and values[key].strip()):
                self.problem(keys[key], f"`judge.{key}` must be a non-empty string")
                return JudgeConfig()
        needed = ("{reference}", "{answer}")
        template = values.get("prompt")
        if template is not None and not all(part in template for part in needed):
            self.problem(keys["prompt"], "`judge.prompt` must contain {reference} and {answer}")
        turns: list[Message] = []
        if "messages" in keys:
            turns = self.message_list(keys["messages"], "`judge.messages`")
            if template is not None:
                self.problem(keys["messages"], "give either `judge.prompt` or `judge.messages`")
            elif turns and not all(part in turns[-1].content for part in needed):
                self.problem(
                    keys["messages"],
                    "`judge.messages`: its last turn needs {reference} and {answer}",
                )
        only = values.get("only_when_different", True)
        if not isinstance(only, bool):
            self.problem(keys["only_when_different"], "`only_when_different` must be true or false")
            only = True
        return JudgeConfig(
            model=values.get("model"),
            criteria=values.get("criteria", ""),
            prompt=template,
            messages=tuple((m.role, m.content) for m in turns),
            only_when_different=only,
        )

    def threshold(self, node: yaml.Node | None) -> float | None:
        if node is None:
            return None
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            self.problem(node, f"`threshold` must be a number from 0 to 1, not {_shown(value)}")
            return None
        return float(value)

    def cases(
        self,
        node: yaml.Node | None,
        root: yaml.Node,
        variables: set[str],
        *,
        has_template: bool,
        object_only: bool,
    ) -> list[Case]:
        if node is None:
            self.problem(root, "missing `cases:`")
            return []
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.problem(node, "`cases` must be a non-empty list")
            return []
        seen: dict[str, int] = {}
        out = []
        for item in node.value:
            case = self.case(item, variables, has_template, object_only)
            if case is None:
                continue
            if case.id in seen:
                self.problem(
                    item, f"duplicate case id (first defined at line {seen[case.id]})", case.id
                )
                continue
            seen[case.id] = case.line
            out.append(case)
        return out

    def case(
        self, item: yaml.Node, variables: set[str], has_template: bool, object_only: bool
    ) -> Case | None:
        id_node = _id_node(item)
        raw_id = self.value(id_node) if id_node is not None else None
        label = raw_id if isinstance(raw_id, str) else None
        fields = self.mapping(item, CASE_KEYS, "a case", label)
        if fields is None:
            return None
        before = len(self.problems)
        if id_node is None:
            self.problem(item, "case has no `id:`")
        elif not isinstance(raw_id, str) or not CASE_ID.match(raw_id):
            self.problem(id_node, f"case id must match {CASE_ID.pattern}, not {_shown(raw_id)}")
        inputs: dict[str, Any] = {}
        if "inputs" in fields:
            value = self.value(fields["inputs"])
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                self.problem(fields["inputs"], "`inputs` must be a mapping of names", label)
            elif not _is_json_like(value):
                # They are sent as JSON and kept in the results file: a date cannot be.
                self.problem(
                    fields["inputs"],
                    "`inputs` must be JSON-like (strings, numbers, booleans, null, lists "
                    "and mappings with string keys): quote a date",
                    label,
                )
            else:
                inputs = value
        messages: list[Message] = []
        if "messages" in fields:
            messages = self.message_list(fields["messages"], "`messages`", label)
        elif not has_template:
            self.problem(
                item,
                "no prompt: give the suite `prompt:`/`messages:` or the case `messages:`",
                label,
            )
        else:
            missing = sorted(variables - inputs.keys())
            if missing:
                where = fields.get("inputs", item)
                self.problem(
                    where,
                    f"the prompt uses {', '.join('{' + m + '}' for m in missing)} "
                    "but `inputs` does not provide it",
                    label,
                )
        expected: Any = None
        # A case with no `expected:` is one with no golden yet: its item is an error
        # until --llm-update-goldens writes one.
        if "expected" in fields:
            expected = self.value(fields["expected"])
            if not _is_json_like(expected):
                self.problem(
                    fields["expected"],
                    "`expected` is not JSON-like (only mappings with string keys, lists, "
                    "strings, numbers, booleans and null)",
                    label,
                )
            elif object_only and not isinstance(expected, dict):
                self.problem(
                    fields["expected"],
                    "`response_format: json` makes the model answer a JSON object, and "
                    "`expected` is not one: give a JSON schema or `response_format: text`",
                    label,
                )
        tags: list[str] = []
        if "tags" in fields:
            value = self.value(fields["tags"])
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                self.problem(fields["tags"], "`tags` must be a list of strings", label)
            else:
                tags = value
        notes = self.value(fields["notes"]) if "notes" in fields else None
        if len(self.problems) > before or label is None:
            return None
        return Case(
            id=label,
            line=_line(item),
            expected=expected,
            inputs=inputs,
            messages=tuple(messages),
            tags=tuple(tags),
            notes=notes if isinstance(notes, str) else None,
            golden="expected" in fields,
        )


def _id_node(item: yaml.Node) -> yaml.Node | None:
    if isinstance(item, yaml.MappingNode):
        for key_node, value_node in item.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == "id":
                return value_node  # type: ignore[no-any-return]
    return None


def _unknown_key(key: str, allowed: frozenset[str], what: str) -> str:
    hint = did_you_mean(key, allowed)
    return f"unknown key {key!r} in {what}{hint}; allowed: {', '.join(sorted(allowed))}"
