"""The shape of a file a person writes, checked by its JSON Schema (Draft 2020-12), each
error worded for the person fixing it: the one way suites, the model table and labels
files are checked before their own rules (ids, templates, references) are.

A problem is found at a path (the keys and indices from the document's root); a caller
that knows where each value was written (the YAML node tree) turns the path into a line.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import yaml

from pytest_llmeval.support.text import did_you_mean, shorten

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

SchemaPath = tuple[str | int, ...]

TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "null": "null",
}


@dataclass(frozen=True)
class SchemaProblem:
    path: SchemaPath  # of the value that is wrong
    text: str
    key: str | None = None  # an unknown key of the mapping at `path`: its own line


def load_schema(package: str, name: str) -> dict[str, Any]:
    """A schema shipped with the package (package data)."""
    schema: dict[str, Any] = json.loads(resources.files(package).joinpath(name).read_text("utf-8"))
    return schema


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    # Imported here: jsonschema takes a twentieth of a second to import, and the plugin is
    # imported by every pytest run, most of which load no file it checks.
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_inlined(schema))


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """The same rules with each `$ref` to the schema's own `$defs` put in its place (under
    `allOf` beside the keywords it sits with, so each error is the one the `$ref` gave):
    jsonschema resolves a `$ref` through its registry at every value it checks, a third of
    the check of a 40,000-case suite. A definition within itself keeps its `$ref`."""
    defs: dict[str, Any] = schema.get("$defs", {})

    def inline(node: Any, within: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [inline(item, within) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        name = ref.removeprefix("#/$defs/") if isinstance(ref, str) else ""
        if name not in defs or name in within:
            return {key: inline(value, within) for key, value in node.items()}
        rest = {key: inline(value, within) for key, value in node.items() if key != "$ref"}
        target = inline(defs[name], (*within, name))
        return {**rest, "allOf": [*rest.get("allOf", []), target]} if rest else target

    inlined: dict[str, Any] = inline(schema, ())
    return inlined


def lazy_validator(schema: dict[str, Any]) -> Callable[[], Draft202012Validator]:
    """The schema's validator, built when first asked for (and jsonschema imported then)."""
    return functools.cache(lambda: validator(schema))


def schema_problems(
    checker: Draft202012Validator, value: Any, what: Callable[[SchemaPath], str]
) -> list[SchemaProblem]:
    """Every way ``value`` departs from the schema, once each, in document order of paths.
    ``what(path)`` names the value at a path as the messages say it ("the suite", "`id`")."""
    found: dict[tuple[SchemaPath, str], SchemaProblem] = {}
    for error in checker.iter_errors(value):
        for problem in _worded(error, what):
            found.setdefault((problem.path, problem.text), problem)
    return list(found.values())


def _worded(error: ValidationError, what: Callable[[SchemaPath], str]) -> Iterator[SchemaProblem]:
    path: SchemaPath = tuple(error.absolute_path)
    name, rule, instance = what(path), error.validator, error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    if rule == "additionalProperties" and isinstance(instance, dict):
        allowed = sorted(schema.get("properties", {}))
        for key in instance:
            if key not in allowed:
                hint = did_you_mean(str(key), allowed)
                text = f"unknown key {key!r} in {name}{hint}; allowed: {', '.join(allowed)}"
                yield SchemaProblem(path, text, str(key))
        return
    if rule == "required" and isinstance(instance, dict):
        needed: Any = error.validator_value
        for key in needed:
            if key not in instance:
                yield SchemaProblem(path, f"missing `{key}:` in {name}")
        return
    yield SchemaProblem(path, f"{name} {_phrase(error, schema)}")


def _phrase(error: ValidationError, schema: dict[str, Any]) -> str:
    """What the value must be, as the end of a sentence whose subject names it."""
    rule, instance = error.validator, error.instance
    limit: Any = error.validator_value
    shown = shorten(repr(instance), 60)
    if rule == "anyOf":
        # A scalar that matches none of a set of names: the names, not the alternatives.
        names = [e for e in error.context or () if not e.relative_path and e.validator == "enum"]
        if names and not isinstance(instance, dict | list):
            return _phrase(names[0], {})
        return f"must be {schema.get('description', 'one of the forms the schema allows')}"
    if rule == "enum":
        hint = did_you_mean(instance, list(map(str, limit))) if isinstance(instance, str) else ""
        return f"must be one of {', '.join(sorted(map(str, limit)))}, not {shown}{hint}"
    if rule == "exclusiveMinimum":
        return f"must be a number > {limit}, not {shown}"
    if rule == "type":
        kinds = limit if isinstance(limit, list) else [limit]
        return f"must be {' or '.join(TYPE_WORDS.get(str(k), str(k)) for k in kinds)}, not {shown}"
    if rule in ("minimum", "maximum"):
        if "minimum" in schema and "maximum" in schema:
            return f"must be a number from {schema['minimum']} to {schema['maximum']}, not {shown}"
        return f"must be a number {'>=' if rule == 'minimum' else '<='} {limit}, not {shown}"
    if rule == "minItems":
        return "must be a non-empty list" if limit == 1 else f"needs at least {limit} items"
    if rule in ("minLength", "pattern") and (rule == "minLength" or limit == r"\S"):
        return "must be a non-empty string"
    if rule == "pattern":
        if "description" in schema:
            return f"must be {schema['description']}, not {shown}"
        return f"must match {limit}, not {shown}"
    if rule == "propertyNames":
        return f"has a key that is not a plain name: {shown}"
    return f"is not valid: {shorten(error.message, 200)}"


def node_at(root: yaml.Node, path: SchemaPath, key: str | None = None) -> yaml.Node:
    """The YAML node of the value at ``path`` (of its key ``key`` when given), or the
    deepest node on the way there; a merge key's (`<<: *base`) values are looked up where
    they are written."""
    node = root
    for step in path:
        found = _child(node, step, want_key=False)
        if found is None:
            return node
        node = found
    return node if key is None else _child(node, key, want_key=True) or node


def _child(node: yaml.Node, step: str | int, *, want_key: bool) -> yaml.Node | None:
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        child: yaml.Node = node.value[step]
        return child
    if not isinstance(node, yaml.MappingNode):
        return None
    merged: list[yaml.Node] = []
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            merged += (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
        elif isinstance(key_node, yaml.ScalarNode) and key_node.value == str(step):
            entry: yaml.Node = key_node if want_key else value_node
            return entry
    for base in merged:
        inherited = _child(base, step, want_key=want_key)
        if inherited is not None:
            return inherited
    return None
