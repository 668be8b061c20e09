"""JSONL in and out, so one golden set can train a fine-tune and gate it.

In: OpenAI chat fine-tuning lines (``{"messages": [..., assistant]}``) and OpenAI Evals
samples (``{"input": [...] | "...", "ideal": "..." | [...]}``) become a suite file. The
turns before the answer are what is sent, the answer is `expected`; a system message
turns most lines share before their last user turn (a system message, few-shot examples)
become the suite's prompt. Every line is untrusted: one
that a suite cannot hold is a located skip with its reason, never a traceback.

Out: a suite's cases as chat fine-tuning lines (the rendered turns and the expected
answer as the assistant's), optionally split into train and evaluation parts by a hash
of the seed and each case id (adding a case moves no other), the evaluation part also
written as a suite.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

from pytest_llmeval.suite.load import CASE_ID, MAX_DEPTH, MAX_NUMBER_CHARS, ROLES
from pytest_llmeval.suite.model import TEMPLATE_VAR, Case, Message, Suite
from pytest_llmeval.support.problems import ConfigError, Problem

ResponseChoice = Literal["auto", "json", "text"]
# The one variable of an imported suite's prompt: each case's user turn.
INPUT = "input"
# A chat line's keys that a suite cannot send (it sends no tools).
TOOL_KEYS = ("tools", "functions", "parallel_tool_calls", "tool_choice")
# `expected` sits four levels down in a suite file (suite, cases, case, expected).
MAX_EXPECTED_DEPTH = MAX_DEPTH - 3
# Characters YAML 1.1 reads as line breaks, besides \n and \r, and the byte-order mark.
LINE_BREAKS = ("\x85", "\u2028", "\u2029", "\ufeff")


class _Unfit(Exception):
    """Why one line cannot become a case."""


@dataclass(frozen=True)
class _Sample:
    line: int
    id: str
    turns: tuple[Message, ...]
    answer: str
    alternatives: tuple[str, ...]  # an Evals `ideal` list's other acceptable answers
    notes: tuple[str, ...]  # what was dropped on the way


@dataclass(frozen=True)
class Imported:
    """A suite file's text from a JSONL file, and what did not make it in."""

    text: str
    cases: int
    json_answers: bool
    skipped: tuple[Problem, ...]  # lines left out, each with its reason
    notes: tuple[Problem, ...]  # lines imported with something lost, said


def import_jsonl(
    path: Path,
    shown: str,
    *,
    name: str,
    id_field: str | None = None,
    response_format: ResponseChoice = "auto",
) -> Imported:
    """The suite a chat fine-tuning or Evals samples file holds. Raises ConfigError when
    the file cannot be read, is not JSONL at all, or holds no line a suite can use."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(Problem("not UTF-8 text: not a JSONL file", shown, line)) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(Problem(f"cannot read: {exc}", shown)) from None
    return import_text(text, shown, name=name, id_field=id_field, response_format=response_format)


def import_text(
    text: str,
    shown: str,
    *,
    name: str,
    id_field: str | None = None,
    response_format: ResponseChoice = "auto",
) -> Imported:
    """As ``import_jsonl``, from the file's text."""
    samples: list[_Sample] = []
    skipped: list[Problem] = []
    objects = lines = 0
    for number, raw in enumerate(text.split("\n"), start=1):  # JSONL's one line break
        if not raw.strip():
            continue  # a blank line holds no case
        lines += 1
        try:
            value = _strict_json(raw)
        except _Unfit as exc:
            skipped.append(Problem(f"skipped: not JSON: {exc}", shown, number))
            continue
        if isinstance(value, dict):
            objects += 1
        try:
            samples.append(_sample(value, number, id_field))
        except _Unfit as exc:
            skipped.append(Problem(f"skipped: {exc}", shown, number))
    if objects == 0:
        first = (
            f" ({skipped[0].text.removeprefix('skipped: ')} at line {skipped[0].line})"
            if skipped
            else ""
        )
        raise ConfigError(
            Problem(
                f"not a JSONL file: none of its {lines} lines is a JSON object" + first,
                shown,
            )
        )
    json_answers = _json_answers(samples, response_format)
    cases: list[tuple[_Sample, Any]] = []
    notes: list[Problem] = []
    seen: dict[str, int] = {}
    for sample in samples:
        expected: Any = sample.answer
        if json_answers:
            expected = _json_object(sample.answer)
            if expected is None:
                reason = (
                    "the answer is not a JSON object, and this suite's answers are JSON"
                    + (" (most lines' are" if response_format == "auto" else " (")
                    + "; --response-format text keeps every answer as text)"
                )
                skipped.append(Problem(f"skipped: {reason}", shown, sample.line))
                continue
        if sample.id in seen:
            skipped.append(
                Problem(
                    f"skipped: duplicate case id {sample.id!r} (first at line {seen[sample.id]})",
                    shown,
                    sample.line,
                )
            )
            continue
        seen[sample.id] = sample.line
        cases.append((sample, expected))
        notes += [Problem(note, shown, sample.line) for note in sample.notes]
    skipped.sort(key=lambda p: p.line or 0)
    if not cases:
        raise ConfigError(
            Problem("no line can be a case: nothing written", shown),
            *skipped,
        )
    document = _suite_document(name, shown, cases, json_answers)
    return Imported(
        text=_dump(document),
        cases=len(cases),
        json_answers=json_answers,
        skipped=tuple(skipped),
        notes=tuple(notes),
    )


def _strict_json(text: str) -> Any:
    """JSON as a suite file can hold it: no repeated key (JSON keeps the last silently),
    no NaN or infinity, no number longer than the suite loader takes, no deep nesting."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise _Unfit(f"the key {key!r} is given twice")
            out[key] = value
        return out

    def number(kind: type[int] | type[float]) -> Any:
        def parse(digits: str) -> int | float:
            if len(digits) > MAX_NUMBER_CHARS:
                raise _Unfit(f"a number longer than {MAX_NUMBER_CHARS} characters")
            value = kind(digits)
            if isinstance(value, float) and not math.isfinite(value):
                raise _Unfit(f"the number {digits} is out of range")
            return value

        return parse

    def constant(word: str) -> Any:
        raise _Unfit(f"{word} is not a JSON number")

    try:
        value = json.loads(
            text,
            object_pairs_hook=pairs,
            parse_int=number(int),
            parse_float=number(float),
            parse_constant=constant,
        )
    except json.JSONDecodeError as exc:
        raise _Unfit(f"{exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise _Unfit("nested too deeply") from None
    if _depth(value) > MAX_EXPECTED_DEPTH:
        raise _Unfit(f"nested deeper than {MAX_EXPECTED_DEPTH} levels")
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Unfit(
            f"a string holds an unpaired surrogate (U+{ord(exc.object[exc.start]):04X})"
        ) from None
    return value


def _depth(value: Any) -> int:
    """Levels of lists and objects, counted without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            todo += [(v, level + 1) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


def _sample(value: Any, line: int, id_field: str | None) -> _Sample:
    if not isinstance(value, dict):
        raise _Unfit(f"a JSON {_kind(value)}, not an object")
    notes: list[str] = []
    alternatives: tuple[str, ...] = ()
    if "messages" in value:
        for key in TOOL_KEYS:
            if key in value:
                raise _Unfit(f"`{key}`: a suite sends no tools")
        messages = _messages(value["messages"], "`messages`", notes)
        if messages[-1].role != "assistant":
            raise _Unfit(
                f"the last message is a {messages[-1].role!r} turn, not the assistant's "
                "answer: nothing to expect"
            )
        if len(messages) == 1:
            raise _Unfit("no turn before the assistant's answer: nothing to send")
        turns, answer = tuple(messages[:-1]), messages[-1].content
    elif "input" in value:
        given = value["input"]
        if isinstance(given, str):
            turns = (Message("user", given),)
        else:
            turns = tuple(_messages(given, "`input`", notes))
        if "ideal" not in value:
            raise _Unfit("an Evals sample without `ideal`: nothing to expect")
        ideal = value["ideal"]
        if isinstance(ideal, str):
            answer = ideal
        elif isinstance(ideal, list) and ideal and all(isinstance(i, str) for i in ideal):
            answer, alternatives = ideal[0], tuple(ideal[1:])
        else:
            raise _Unfit("`ideal` must be a string or a non-empty list of strings")
        if alternatives:
            notes.append(
                f"`ideal` gives {len(ideal)} acceptable answers; a case expects one: the "
                "first is `expected`, the others are kept in the case's notes"
            )
    else:
        raise _Unfit(
            "neither `messages` (chat fine-tuning) nor `input` and `ideal` (Evals samples)"
        )
    return _Sample(line, _case_id(value, id_field), turns, answer, alternatives, tuple(notes))


def _messages(value: Any, what: str, notes: list[str]) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise _Unfit(f"{what} must be a non-empty list of messages")
    out = []
    for number, message in enumerate(value, start=1):
        where = f"{what} message {number}"
        if not isinstance(message, dict):
            raise _Unfit(f"{where} is a JSON {_kind(message)}, not an object")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or role not in ROLES:
            raise _Unfit(f"{where}: the role {role!r} is not one of {', '.join(sorted(ROLES))}")
        if not isinstance(content, str):
            raise _Unfit(f"{where}: `content` must be a string, not a JSON {_kind(content)}")
        other = sorted(set(message) - {"role", "content", "weight"})
        if other:
            raise _Unfit(f"{where} has {', '.join(f'`{k}`' for k in other)}, which a suite "
                         "cannot send")  # fmt: skip
        if "weight" in message:
            notes.append(f"{where}: `weight` is for training only; not kept")
        out.append(Message(role, content))
    return out


def _case_id(value: dict[str, Any], id_field: str | None) -> str:
    """The id from the chosen field, else a short hash of the line's content (as JSON with
    sorted keys, so spacing and key order do not change it)."""
    if id_field is None:
        canonical = json.dumps(value, sort_keys=True, ensure_ascii=False)
        return "case-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:10]
    if id_field not in value:
        raise _Unfit(f"no `{id_field}` field for the case id (--id-field {id_field})")
    given = value[id_field]
    if isinstance(given, int) and not isinstance(given, bool):
        given = str(given)
    if not isinstance(given, str) or not CASE_ID.match(given):
        raise _Unfit(
            f"the id {json.dumps(given, ensure_ascii=False)[:60]} (`{id_field}`) must match "
            f"{CASE_ID.pattern}"
        )
    return given


def _kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _json_object(answer: str) -> dict[str, Any] | None:
    try:
        value = _strict_json(answer)
    except _Unfit:
        return None
    return value if isinstance(value, dict) else None


def _json_answers(samples: list[_Sample], choice: ResponseChoice) -> bool:
    """Whether the suite's answers are JSON objects. By default, when most are: one
    malformed golden then is a reported skip, not a reason to score every case as text
    (a structural suite turned free-text would pass answers it should not)."""
    if choice != "auto":
        return choice == "json"
    objects = sum(_json_object(s.answer) is not None for s in samples)
    return objects * 2 > len(samples)


def _shared_head(samples: Iterable[_Sample]) -> tuple[Message, ...] | None:
    """The turns before the last user turn that most samples share (a system message, few
    shot examples, or none); None when no sample ends in a user turn. Ties go to the turns
    seen first."""
    counts = Counter(split[0] for s in samples if (split := _head(s.turns)) is not None)
    if not counts:
        return None
    return counts.most_common(1)[0][0]


def _head(turns: tuple[Message, ...]) -> tuple[tuple[Message, ...], str] | None:
    """(the turns before the last, the last's content) when the last is a user turn."""
    if turns[-1].role != "user":
        return None
    return turns[:-1], turns[-1].content


def escape_template(text: str) -> str:
    """Text that the suite's templates render as itself: each `{name}` and `{{name}}`
    wrapped in one more pair of braces."""
    return TEMPLATE_VAR.sub(lambda m: "{" + m.group(0) + "}", text)


def _suite_document(
    name: str, shown: str, cases: list[tuple[_Sample, Any]], json_answers: bool
) -> dict[str, Any]:
    """The suite: the turns most cases share as its template, their last user turn each
    case's input; a case with other turns carries them as its own messages."""
    head = _shared_head(sample for sample, _ in cases)
    document: dict[str, Any] = {
        "suite": name,
        "description": f"Imported from {Path(shown).name}.",
    }
    user = "{" + INPUT + "}"
    if head is not None and [m.role for m in head] in ([], ["system"]):
        system = {"system": _text(escape_template(head[0].content))} if head else {}
        document["prompt"] = {**system, "user": user}
    elif head is not None:
        document["messages"] = [
            *({"role": m.role, "content": _text(escape_template(m.content))} for m in head),
            {"role": "user", "content": user},
        ]
    document["response_format"] = "json" if json_answers else "text"
    out = []
    for sample, expected in cases:
        case: dict[str, Any] = {"id": sample.id}
        split = _head(sample.turns)
        if split is not None and split[0] == head:
            case["inputs"] = {INPUT: _text(split[1])}
        else:
            case["messages"] = [{"role": m.role, "content": _text(m.content)} for m in sample.turns]
        case["expected"] = _readable(expected)
        if sample.alternatives:
            case["notes"] = _text(
                "Other acceptable answers (the Evals `ideal` list):\n"
                + "\n".join(f"- {json.dumps(a, ensure_ascii=False)}" for a in sample.alternatives)
            )
        out.append(case)
    document["cases"] = out
    return document


def _text(value: str) -> str:
    """A block scalar where the text has lines and YAML keeps it exactly so: printable
    characters (no tab, no other line break), no spaces at the ends of lines."""
    if any(c in value for c in LINE_BREAKS):
        # Only a double-quoted scalar escapes these; elsewhere YAML reads them as breaks.
        quoted: str = DoubleQuotedScalarString(value)
        return quoted
    if "\n" not in value.rstrip("\n"):
        return value
    keepable = all(c == "\n" or (c.isprintable() and c != "\ufeff") for c in value)
    if keepable and all(line == line.rstrip(" ") for line in value.split("\n")):
        literal: str = LiteralScalarString(value)
        return literal
    return value


def _readable(value: Any) -> Any:
    """`expected` as YAML a person reads: short lists of plain values on one line, text
    with lines as block scalars."""
    if isinstance(value, dict):
        return {_text(key): _readable(item) for key, item in value.items()}
    if isinstance(value, list):
        items = CommentedSeq(_readable(item) for item in value)
        if all(not isinstance(item, dict | list) for item in value):
            items.fa.set_flow_style()
        return items
    if isinstance(value, str):
        return _text(value)
    return value


def _yaml() -> YAML:
    yaml = YAML()
    # The suite loader reads YAML 1.1 (`yes` is true, `1:20` is a number): written as
    # 1.1, such strings come out quoted.
    yaml.version = (1, 1)
    yaml.width = 4096  # no folded lines, whose breaks leave trailing spaces
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.allow_unicode = True
    yaml.representer.add_representer(float, _float)
    yaml.representer.add_representer(type(None), _null)
    return yaml


def _float(representer: Any, value: float) -> Any:
    # YAML 1.1 reads `1e+300` as a string: a float needs its point.
    text = repr(value)
    if "." not in text and "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def _null(representer: Any, value: None) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def _dump(document: Any) -> str:
    stream = io.StringIO()
    _yaml().dump(document, stream)
    return stream.getvalue()


# --- export -----------------------------------------------------------------------------


def chat_line(suite: Suite, case: Case, id_field: str | None = None) -> dict[str, Any]:
    """One case as a chat fine-tuning example: the turns sent, then the expected answer
    as the assistant's (JSON, or the text itself in a free-text suite)."""
    expected = case.expected
    if isinstance(expected, str) and not suite.response_format.json_mode:
        answer = expected
    else:
        answer = json.dumps(expected, ensure_ascii=False)
    messages = [{"role": m.role, "content": m.content} for m in suite.render(case)]
    line: dict[str, Any] = {"messages": [*messages, {"role": "assistant", "content": answer}]}
    if id_field is not None:
        line = {id_field: case.id, **line}
    return line


def jsonl(suite: Suite, cases: Iterable[Case], id_field: str | None = None) -> str:
    return "".join(
        json.dumps(chat_line(suite, case, id_field), ensure_ascii=False) + "\n" for case in cases
    )


def in_evaluation(case_id: str, fraction: float, seed: int) -> bool:
    """Whether a case falls in the evaluation part: a hash of the seed and its id alone,
    so adding or removing a case moves no other."""
    digest = hashlib.sha256(f"{seed}\0{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split(
    cases: Iterable[Case], fraction: float, seed: int
) -> tuple[tuple[Case, ...], tuple[Case, ...]]:
    """(train, evaluation), each in the suite's order."""
    train: list[Case] = []
    evaluation: list[Case] = []
    for case in cases:
        (evaluation if in_evaluation(case.id, fraction, seed) else train).append(case)
    return tuple(train), tuple(evaluation)


def evaluation_suite(path: Path, shown: str, name: str, ids: set[str]) -> str:
    """The suite file at ``path`` with only the cases ``ids`` names, called ``name``, as
    written (comments, prompt, scoring) but for them. A `cases_from` file is followed to
    the file holding the cases; the scoring and threshold stay the first file's, as
    loading it has them. Raises ConfigError for a file the round-trip reader refuses."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # lines kept as they were written
    yaml.indent(mapping=2, sequence=4, offset=2)
    documents: list[Any] = []
    current, chain = path, []
    try:
        while True:
            chain.append(current.resolve())
            document = yaml.load(current.read_text(encoding="utf-8"))
            documents.append(document)
            if "cases_from" not in document:
                break
            current = current.parent / str(document["cases_from"])
            if current.resolve() in chain:  # the loader refuses this before we get here
                raise ConfigError(Problem("`cases_from` leads back to this file", shown))
    except (YAMLError, OSError, TypeError) as exc:
        raise ConfigError(Problem(f"cannot rewrite the suite: {exc}", shown)) from None
    base, top = documents[-1], documents[0]
    if len(documents) > 1:
        for key in ("scoring", "threshold"):
            if key in top:
                base[key] = top[key]
            elif key in base:
                del base[key]
        description = next((d["description"] for d in documents if "description" in d), None)
        if description is not None:
            base["description"] = description
    base["suite"] = name
    kept = [case for case in base["cases"] if str(case["id"]) in ids]
    base["cases"].clear()
    base["cases"].extend(kept)
    stream = io.StringIO()
    yaml.dump(base, stream)
    return stream.getvalue()
