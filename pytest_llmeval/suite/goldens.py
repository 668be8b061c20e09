"""Writing goldens into a suite file: given {case id: value}, only those cases' `expected`
nodes change; every other byte of the file (comments, key order, quoting, flow and block
styles, blank lines, indentation) stays as it was.

ruamel.yaml composes the file (its nodes know where each value starts and ends, as
characters) and renders the new values; the new text is spliced in where the old value
was, or added after the case's last line. Dumping the whole document back would respell
what it normalises (indentation, folded plain scalars, spacing). Before anything is
written, the new text is read back: its data must be the old data with exactly those
values changed, or the file is left alone.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError as RuamelError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from pytest_llmeval.suite.load import load_suite
from pytest_llmeval.support.files import write_atomically
from pytest_llmeval.support.problems import ConfigError, Problem

INDENT = 2  # of a block `expected:` under its key, and of its nested levels


class GoldenFileError(ConfigError):
    """A suite file that could not be rewritten: nothing in it was changed."""


@dataclass(frozen=True)
class Rewrite:
    text: str
    written: tuple[str, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)  # case id: why it was not written


def rewrite_file(path: Path, values: Mapping[str, Any], shown: str) -> Rewrite:
    """Write ``values`` into the cases of the suite file ``path`` (atomically, when any is
    written); raises GoldenFileError naming the file (and line) when it cannot."""
    # The file as it is now, read with every bound the loader applies (it may have
    # changed since the run read it): a file that no longer loads is not touched.
    try:
        load_suite(path, display=shown)
    except ConfigError as exc:
        raise GoldenFileError(*exc.problems) from None
    text = path.read_text(encoding="utf-8")
    result = rewrite_text(text, values, shown)
    if result.written:
        write_atomically(path, result.text)
    return result


def rewrite_text(text: str, values: Mapping[str, Any], shown: str) -> Rewrite:
    """The suite text with ``values`` as the `expected:` of those cases."""
    try:
        root = YAML(typ="rt").compose(text)
    except RuamelError as exc:
        raise GoldenFileError(Problem(f"cannot read it to write goldens: {exc}", shown)) from None
    cases = _value_of(root, "cases")
    if not isinstance(cases, SequenceNode):
        raise GoldenFileError(Problem("no `cases:` list to write goldens into", shown))
    edits: list[tuple[int, int, str]] = []  # (start, end, new text), spliced from the end
    written: list[str] = []
    skipped: dict[str, str] = {}
    found: set[str] = set()
    for case in cases.value:
        case_id = _scalar(_value_of(case, "id"))
        if case_id is None or case_id not in values or case_id in found:
            continue
        found.add(case_id)
        edit = _edit(text, case, values[case_id], _flow_near(cases.value, case))
        if isinstance(edit, str):
            skipped[case_id] = edit
        else:
            edits.append(edit)
            written.append(case_id)
    for case_id in values:
        if case_id not in found:
            skipped[case_id] = "no case with this id in the file any more"
    new = text
    for start, end, replacement in sorted(edits, reverse=True):
        new = new[:start] + replacement + new[end:]
    if written:
        _check(text, new, {case_id: values[case_id] for case_id in written}, shown)
    return Rewrite(new, tuple(written), skipped)


def _edit(text: str, case: Node, value: Any, flow_near: bool) -> tuple[int, int, str] | str:
    """The splice that gives ``case`` this `expected:`, or why there is none."""
    if not isinstance(case, MappingNode) or not case.value:
        return "the case is not a mapping"
    old = _entry(case, "expected")
    if old is not None:
        key, node = old
        if not _spelled_here(node, key.end_mark.index):
            return "its `expected:` is an anchor or an alias: write it by hand"
        start, end = node.start_mark.index, _end(text, node)
        column = node.start_mark.column
        if _is_block(node) and _is_block_value(value):
            if column > key.start_mark.column:
                return start, end, _block(value, column)
            # A list may sit at its key's column; anything else needs indenting.
            column = key.start_mark.column + INDENT
            return key.end_mark.index, end, ":\n" + " " * column + _block(value, column)
        if _is_block(node):  # a block becomes one line, after the key
            return key.end_mark.index, end, ": " + _flow(value)
        return start, end, _flow(value)
    if case.flow_style:  # `- {id: a, inputs: {...}}`: one more entry before the brace
        close = text.rindex("}", 0, case.end_mark.index)
        before = text[:close].rstrip()
        return len(before), close, ", expected: " + _flow(value)
    column = case.value[0][0].start_mark.column
    # After the line the case's last value ends on (its trailing comment stays there).
    newline = text.find("\n", _end(text, case))
    at = len(text) if newline < 0 else newline + 1
    lead = "" if newline >= 0 else "\n"
    if flow_near or not _is_block_value(value):
        line = f"expected: {_flow(value)}"
    else:
        line = "expected:\n" + " " * (column + INDENT) + _block(value, column + INDENT)
    return at, at, f"{lead}{' ' * column}{line}\n"


def _check(old: str, new: str, values: Mapping[str, Any], shown: str) -> None:
    """The new text's data is the old's with exactly ``values`` changed."""
    try:
        before, after = yaml.safe_load(old), yaml.safe_load(new)
    except yaml.YAMLError as exc:
        raise GoldenFileError(
            Problem(f"not rewritten: the new text would not read back ({exc})", shown)
        ) from None
    for case in before["cases"]:
        if isinstance(case, dict) and case.get("id") in values:
            case["expected"] = values[case["id"]]
    if before != after:
        raise GoldenFileError(
            Problem(
                "not rewritten: the new text would not read back as the old one with "
                "only the goldens changed; write them by hand",
                shown,
            )
        )


def _flow_near(cases: list[Node], case: Node) -> bool:
    """Whether a new `expected:` is written on one line: as the nearest golden before it
    is (or after it, for the first ones), as blocks when the file has none."""
    at = cases.index(case)
    for other in [*reversed(cases[:at]), *cases[at + 1 :]]:
        entry = _entry(other, "expected")
        if entry is not None:
            return not _is_block(entry[1])
    return False


def _entry(node: Node, key: str) -> tuple[Node, Node] | None:
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == key:
                return key_node, value_node
    return None


def _value_of(node: Node | None, key: str) -> Node | None:
    entry = None if node is None else _entry(node, key)
    return None if entry is None else entry[1]


def _scalar(node: Node | None) -> str | None:
    return node.value if isinstance(node, ScalarNode) and isinstance(node.value, str) else None


def _spelled_here(node: Node, after: int) -> bool:
    """The value is written out at its key, with no anchor or alias in it: replacing its
    text changes this value and no other."""
    seen: set[int] = set()
    todo = [node]
    last = after
    while todo:
        part = todo.pop()
        if id(part) in seen or part.anchor is not None or part.start_mark.index < last:
            return False
        seen.add(id(part))
        last = part.start_mark.index
        if isinstance(part, MappingNode):
            todo.extend(child for pair in reversed(part.value) for child in reversed(pair))
        elif isinstance(part, SequenceNode):
            todo.extend(reversed(part.value))
    return True


def _end(text: str, node: Node) -> int:
    """Where the text of ``node`` ends: a block collection's at its last leaf (its own end
    mark lies past the comments and blank lines after it), without trailing line breaks
    (a literal block scalar's end mark is on the next line)."""
    while isinstance(node, MappingNode | SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, MappingNode) else last
    end = int(node.end_mark.index)
    while end > node.start_mark.index and text[end - 1] in " \t\r\n":
        end -= 1
    return end


def _is_block(node: Node) -> bool:
    return isinstance(node, MappingNode | SequenceNode) and not node.flow_style and bool(node.value)


def _is_block_value(value: Any) -> bool:
    return isinstance(value, dict | list) and bool(value)


def _dump(value: Any, *, flow: bool) -> str:
    writer = YAML(typ="rt")
    # YAML 1.1, as the loader reads it: `yes`, `on` and `y` are quoted, floats have a dot.
    writer.version = (1, 1)
    writer.default_flow_style = flow
    writer.width = 1 << 20  # never folded across lines
    writer.indent(mapping=INDENT, sequence=INDENT + 2, offset=INDENT)
    out = io.StringIO()
    writer.dump(_escaped(value), out)
    body = out.getvalue().split("---", 1)[1].removesuffix("...\n").strip("\n")
    # A top-level block sequence comes indented by its offset.
    return textwrap.dedent(body.removeprefix(" ") if flow else body)


def _escaped(value: Any) -> Any:
    """Strings with a line break or another unprintable character double-quoted, where
    they are escapes: ruamel would write U+0085 or U+2028 raw in single quotes, which
    reads back as a space."""
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(item) for item in value]
    if isinstance(value, str) and not value.isprintable():
        return DoubleQuotedScalarString(value)
    return value


def _flow(value: Any) -> str:
    """One line, JSON's shape: ruamel's own flow style writes a one-entry mapping in a
    list without its braces (`[a: 1]`), which reads as something else. Each scalar is
    quoted as ruamel quotes it inside a flow collection."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow_key(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(item) for item in value) + "]"
    return _dump([value], flow=True).removeprefix("[").removesuffix("]")


def _flow_key(key: Any) -> str:
    return _dump({key: 0}, flow=True).removeprefix("{").removesuffix(": 0}")


def _block(value: Any, column: int) -> str:
    """A block value whose first line starts at ``column`` (the rest indented to match)."""
    return ("\n" + " " * column).join(_dump(value, flow=False).split("\n"))
