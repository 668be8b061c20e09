"""A suite as the plugin uses it: its cases, the chat turns sent for each, the answer's
shape and how it is scored. Plain data; `load.py` builds it from YAML."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from pytest_llmeval.suite.rules import Scoring
from pytest_llmeval.support.memory import collector_paused

SUITE_SUFFIXES = (".llmeval.yaml", ".llmeval.yml")
# `{name}` is a variable; `{{name}}` is a literal `{name}`; any other brace (JSON in a
# few-shot turn, say) is left alone, so prompts need no escaping.
TEMPLATE_VAR = re.compile(r"\{\{([A-Za-z_]\w*)\}\}|\{([A-Za-z_]\w*)\}")


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class ResponseFormat:
    """What shape the answer must take: free text, any JSON object, or a JSON schema."""

    json_mode: bool = True
    schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class Case:
    id: str
    line: int
    expected: Any
    inputs: dict[str, Any] = field(default_factory=dict)
    messages: tuple[Message, ...] = ()
    tags: tuple[str, ...] = ()
    notes: str | None = None
    golden: bool = True  # False: no `expected:` yet (--llm-update-goldens writes one)


_CASE_FIELDS = tuple(f.name for f in fields(Case))


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    line: int
    cases: tuple[Case, ...]
    # The suite-level chat template: system/user prompt or explicit turns.
    messages: tuple[Message, ...] = ()
    description: str | None = None
    response_format: ResponseFormat = ResponseFormat()
    scoring: Scoring = field(default_factory=Scoring)
    threshold: float | None = None
    # `cases_from`: the suite whose prompt and cases these are. It asks the same questions, so
    # its answers are that suite's, recorded once under its name.
    source: str | None = None

    @property
    def answers_group(self) -> str:
        """The folder of recordings this suite's answers are in."""
        return self.source or self.name

    @cached_property
    def version(self) -> str:
        """A digest of what the suite asks and expects: its turns, answer format, scoring,
        threshold and cases (not where they are written, nor their notes). Shards of one
        run must have the same, or they ran different suites under one name."""
        # Field by field, not asdict: its deep copy of every value took a second for
        # 40,000 cases; the JSON, and so the digest, is the same.
        with collector_paused():  # a dict a case, gone once the digest is taken
            cases = [
                {name: getattr(c, name) for name in _CASE_FIELDS}
                | {"line": None, "notes": None, "messages": [asdict(m) for m in c.messages]}
                for c in self.cases
            ]
        content = {
            "name": self.name,
            "messages": [asdict(m) for m in self.messages],
            "response_format": asdict(self.response_format),
            "scoring": asdict(self.scoring),
            "threshold": self.threshold,
            "cases": cases,
        }
        text = json.dumps(content, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def render(self, case: Case) -> tuple[Message, ...]:
        """The chat messages sent for ``case``: its own, or the suite's template filled in."""
        if case.messages:
            return case.messages
        return tuple(Message(m.role, fill_template(m.content, case.inputs)) for m in self.messages)


def fill_template(template: str, inputs: dict[str, Any]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return "{" + match.group(1) + "}"
        value = inputs[match.group(2)]
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    return TEMPLATE_VAR.sub(replace, template)


def template_variables(template: str) -> set[str]:
    return {m.group(2) for m in TEMPLATE_VAR.finditer(template) if m.group(2) is not None}


def is_suite_file(path: Path) -> bool:
    return path.name.endswith(SUITE_SUFFIXES)
