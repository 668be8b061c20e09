"""A YAML file a person wrote, read as untrusted input (a pull request's, a download's):
whatever it holds, reading it gives its node tree and values, or a ConfigError whose
every problem has its line, never another exception. It is read in stages, each bounding
what the next one may meet: its characters, then its events (nesting, aliases), then its
nodes (each scalar built alone, numbers bounded and finite), then the values. Suite files
and labels files are read so; their shape and rules are their own readers'."""

from __future__ import annotations

import math
from typing import Any

import yaml

from pytest_llmeval.support.problems import ConfigError, Problem
from pytest_llmeval.support.text import shorten

# What a file may hold, at most; past each bound, a located problem.
#
# Levels of nesting, in the file and through aliases: a case's `expected` is four levels
# down and a JSON schema nests twice as deep as its data; PyYAML composes and builds
# recursively (1,000 levels: RecursionError). A JSON value (an answer, an `expected`) is
# bounded more tightly (support.bounds).
MAX_DEPTH = 64
# Characters of a number, as answers' digits: Python refuses to build an int of more
# than 4,300 digits (ValueError), and no golden value needs a hundred.
MAX_NUMBER_CHARS = 100
# Values that aliases (`*name`) may add to a file beyond those it spells out: ample to
# reuse a prompt, a message list or a schema many times over. An alias bomb (each anchor
# ten aliases of the one before) grows tenfold a line: 475 bytes took 38 s and 1.8 GB.
MAX_ALIASED_VALUES = 10_000

# libyaml's parser, where PyYAML was built with it, is some ten times faster than the pure
# Python one, which reads a 100,000-case suite in about a minute. A file it refuses is
# read again by the pure Python parser, whose words every problem is worded in.
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(text: str, shown: str) -> tuple[yaml.Node | None, dict[Any, Any]]:
    """The composed node tree of ``text`` (the file ``shown``) and the value of each node;
    raises ConfigError with every problem located.

    Whatever the YAML library raises (its own errors, and the constructors' ValueError,
    KeyError or AttributeError on `!!float x`, `!!bool maybe`, `!!timestamp x`) becomes a
    problem at the line it concerns."""
    characters = _unreadable_characters(text, shown)
    if characters:
        raise ConfigError(*characters)
    try:
        try:
            too_much, root = _composed(text, shown, _FAST_LOADER)
        except Exception:  # refused by libyaml: the pure Python parser says why, in its words
            too_much, root = _composed(text, shown, yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        reason = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(Problem(f"YAML syntax error: {reason}", shown, line)) from None
    except Exception as exc:  # the library's other errors: at their position if they have one
        line = _line_at(text, getattr(exc, "position", None))
        raise ConfigError(Problem(f"YAML error: {said(exc)}", shown, line)) from None
    if too_much is not None:
        raise ConfigError(too_much)
    if root is None:
        return None, {}
    loader = yaml.SafeLoader("")
    try:
        problems, mappings = _built_scalars(loader, root, shown)
        if problems:
            raise ConfigError(*problems)
        # Merge keys (`<<: *base`) are flattened into their mappings as they are built:
        # the reader walks the tree as written, so each mapping's entries are put back.
        failed: Problem | None = None
        try:
            loader.construct_object(root, deep=True)
        except Exception as exc:  # an unhashable key, a bad merge, a tag on a collection
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else line_of(root)
            failed = Problem(f"YAML error: {said(exc)}", shown, line)
        finally:
            for node, entries in mappings:
                node.value = entries
        if failed is not None:
            raise ConfigError(failed)
        return root, dict(loader.constructed_objects)
    finally:
        loader.dispose()


def _composed(
    text: str, shown: str, loader: type[yaml.SafeLoader]
) -> tuple[Problem | None, yaml.Node | None]:
    """The first bound the file passes, or its composed node tree (None when empty)."""
    # Events first: nesting and aliases bounded before anything recurses or expands.
    too_much = _bounded_events(text, shown, loader)
    return too_much, None if too_much is not None else yaml.compose(text, Loader=loader)


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


def _bounded_events(text: str, shown: str, loader: type[yaml.SafeLoader]) -> Problem | None:
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

    def line(event: yaml.Event) -> int:
        return int(event.start_mark.line) + 1 if event.start_mark else 1

    for event in yaml.parse(text, Loader=loader):
        # Scalars first: most events are.
        if isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                anchored[event.anchor] = (1, 0)
            add(1, 0)
        elif isinstance(event, yaml.CollectionStartEvent):
            if len(open_values) + 1 > MAX_DEPTH:
                return Problem(f"nested deeper than {MAX_DEPTH} levels", shown, line(event))
            open_values.append([1, 0, event.anchor])
        elif isinstance(event, yaml.CollectionEndEvent):
            values, below, anchor = open_values.pop()
            if anchor is not None:
                anchored[anchor] = (values, below + 1)
            add(values, below + 1)
        elif isinstance(event, yaml.AliasEvent):
            name = event.anchor
            if any(frame[2] == name for frame in open_values):
                return Problem(
                    f"the alias *{name} is inside the value it names", shown, line(event)
                )
            if name not in anchored:
                continue  # composing says: found undefined alias
            values, depth = anchored[name]
            aliased += values
            if aliased > MAX_ALIASED_VALUES:
                return Problem(
                    f"aliases repeat more than {MAX_ALIASED_VALUES:,} values (at *{name}): "
                    "refused, so that a few lines cannot expand into gigabytes",
                    shown,
                    line(event),
                )
            if len(open_values) + depth > MAX_DEPTH:
                return Problem(
                    f"nested deeper than {MAX_DEPTH} levels through the alias *{name}",
                    shown,
                    line(event),
                )
            add(values, depth)
    return None


_NUMBERS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
MARKER_TAGS = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")  # the keys `<<` and `=`


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
                problems.append(Problem(f"YAML error: {problem}", shown, line_of(node)))
    return sorted(problems, key=lambda p: p.line or 0), mappings


def _scalar_problem(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str | None:
    if node.tag in MARKER_TAGS:
        return None  # not a value: the mapping it is a key of is built with it
    if node.tag in _NUMBERS and len(node.value) > MAX_NUMBER_CHARS:
        return f"a number longer than {MAX_NUMBER_CHARS} characters"
    try:
        value = loader.construct_object(node)
    except yaml.MarkedYAMLError as exc:
        return " ".join(p for p in (exc.context, exc.problem) if p)
    except Exception:  # the constructors' own: float('x'), {...}['maybe'], None.groupdict()
        return f"{shown_value(node.value)} is not a valid {_short_tag(node.tag)}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{shown_value(node.value)} is not a finite number: NaN and infinities are refused"
    return None


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org") else tag


def shown_value(value: Any) -> str:
    return shorten(repr(value), 60)


def said(exc: BaseException) -> str:
    """A YAML library error's words, without its "in <unicode string>" position lines."""
    if isinstance(exc, yaml.MarkedYAMLError):
        said = " ".join(p for p in (exc.context, exc.problem) if p)
        if said:
            return said
    return shorten(str(exc), 200) or type(exc).__name__


def _line_at(text: str, position: int | None) -> int:
    return 1 if position is None else text.count("\n", 0, position) + 1


def line_of(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1
