"""A suite as the plugin uses it: its cases, the chat turns sent for each, the answer's
shape and how it is scored. Plain data; `load.py` builds it from YAML."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmeval.suite.rules import Scoring

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
