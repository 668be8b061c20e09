"""Models of the matrix: ``[tool.llmeval.models.<name>]`` entries, bare OpenAI names, prices."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pytest_llmeval.support.problems import ConfigError, Problem
from pytest_llmeval.support.text import did_you_mean

SchemaStyle = Literal["json_schema", "json_object"]

MODEL_KEYS = frozenset(
    {
        "model",
        "base_url",
        "api_key_env",
        "params",
        "price",
        "schema_style",
        "timeout",
        "concurrency",
    }
)
PRICE_KEYS = frozenset({"input_per_1k", "output_per_1k"})
DEFAULT_KEY_ENV = "OPENAI_API_KEY"

# US dollars per 1K tokens (input, output). The first four are the figures of the
# gpt-3.5 fine-tuning comparison this tool grew from (OpenAI list prices, August
# 2023); the rest are later list prices. Prices change: override per model with
# `price = {input_per_1k = ..., output_per_1k = ...}`.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-3.5-turbo": (0.0015, 0.002),
    "ft:gpt-3.5-turbo": (0.012, 0.016),
    "gpt-4": (0.03, 0.06),
    "gpt-4-32k": (0.06, 0.12),
    "gpt-4-turbo": (0.01, 0.03),
    # The gpt-4 turbo previews carry gpt-4-like names but turbo prices.
    "gpt-4-1106-preview": (0.01, 0.03),
    "gpt-4-0125-preview": (0.01, 0.03),
    "gpt-4-turbo-preview": (0.01, 0.03),
    "gpt-4o": (0.0025, 0.01),
    "gpt-4o-mini": (0.00015, 0.0006),
    "ft:gpt-4o-mini": (0.0003, 0.0012),
    "ft:gpt-4o": (0.00375, 0.015),
    "gpt-4.1": (0.002, 0.008),
    "gpt-4.1-mini": (0.0004, 0.0016),
    "gpt-4.1-nano": (0.0001, 0.0004),
    "o1": (0.015, 0.06),
    "o3-mini": (0.0011, 0.0044),
    "o4-mini": (0.0011, 0.0044),
}
# Names that are OpenAI models even when the price table does not know them.
OPENAI_PREFIXES = ("gpt-", "ft:", "o1", "o3", "o4", "chatgpt-")
# A dated snapshot of a listed model ("gpt-4-0613", "gpt-4o-2024-08-06") costs the same.
SNAPSHOT_SUFFIX = re.compile(r"^-\d")


@dataclass(frozen=True)
class Price:
    input_per_1k: float
    output_per_1k: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_1k + output_tokens * self.output_per_1k) / 1000


@dataclass(frozen=True)
class ModelSpec:
    name: str
    model: str
    base_url: str | None = None
    # None: the endpoint takes no key (a local server); otherwise the variable to read.
    api_key_env: str | None = DEFAULT_KEY_ENV
    params: Mapping[str, Any] = field(default_factory=dict)
    price: Price | None = None
    schema_style: SchemaStyle = "json_schema"
    timeout: float | None = None
    # This model's cap on requests in flight (a local server may serve one at a time).
    concurrency: int | None = None

    def api_key(self) -> str | None:
        """The key from the environment, or None when the endpoint needs none or it is unset."""
        if self.api_key_env is None:
            return None
        # Keys read from secret files often end in a newline, which would break the header.
        return os.environ.get(self.api_key_env, "").strip() or None

    def missing_key(self) -> str | None:
        """The environment variable this model needs and does not have, if any."""
        if self.api_key_env is not None and self.api_key() is None:
            return self.api_key_env
        return None


def price_for(model_id: str) -> Price | None:
    key = model_id
    if model_id.startswith("ft:"):
        # ft:BASE:org:suffix:id — a fine-tune is priced by its base model.
        key = "ft:" + model_id.split(":")[1]
    if key in PRICES:
        return Price(*PRICES[key])
    listed = [p for p in PRICES if key.startswith(p) and SNAPSHOT_SUFFIX.match(key[len(p) :])]
    if listed:
        return Price(*PRICES[max(listed, key=len)])
    return None


def is_openai_name(name: str) -> bool:
    return name in PRICES or name.startswith(OPENAI_PREFIXES)


def load_model_table(pyproject: Path | None) -> dict[str, ModelSpec]:
    """Read ``[tool.llmeval.models.*]`` from a pyproject.toml (missing file: no entries);
    a ConfigError names every problem of every entry."""
    if pyproject is None or not pyproject.is_file():
        return {}
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(Problem(str(exc), str(pyproject))) from None
    entries = data.get("tool", {}).get("llmeval", {}).get("models", {})
    if not isinstance(entries, dict):
        wrong = "[tool.llmeval.models] must be a table of models"
        raise ConfigError(Problem(wrong, str(pyproject)))
    problems: list[Problem] = []
    table = {}
    for name, entry in entries.items():
        found = _entry_problems(name, entry)
        problems += [Problem(text, str(pyproject)) for text in found]
        if not found:
            table[name] = _spec_from_entry(name, entry)
    if problems:
        raise ConfigError(*problems)
    return table


def _entry_problems(name: str, entry: Any) -> list[str]:
    """What is wrong with one model's table, each problem worded for the person fixing it."""
    where = f"[tool.llmeval.models.{name}]"
    if not isinstance(entry, dict):
        return [f"{where} must be a table"]
    allowed = ", ".join(sorted(MODEL_KEYS))
    problems = [
        f"{where}: unknown key {key!r}{did_you_mean(key, MODEL_KEYS)}; allowed: {allowed}"
        for key in entry
        if key not in MODEL_KEYS
    ]
    model = entry.get("model", name)
    base_url = entry.get("base_url")
    timeout = entry.get("timeout")
    concurrency = entry.get("concurrency")
    key_env = entry.get("api_key_env", "unset")
    checks = [
        (not isinstance(model, str) or not model, "`model` must be a non-empty string"),
        (base_url is not None and not isinstance(base_url, str), "`base_url` must be a string"),
        (
            not isinstance(entry.get("params", {}), dict),
            "`params` must be a table, e.g. {temperature = 0}",
        ),
        (
            entry.get("schema_style", "json_schema") not in ("json_schema", "json_object"),
            '`schema_style` must be "json_schema" or "json_object"',
        ),
        (
            timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0),
            "`timeout` must be a positive number of seconds",
        ),
        (
            concurrency is not None
            and (
                isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
            ),
            "`concurrency` must be a whole number >= 1",
        ),
        (
            not isinstance(key_env, str) or not key_env,
            "`api_key_env` must name an environment variable",
        ),
    ]
    problems += [f"{where}: {text}" for failed, text in checks if failed]
    if "price" in entry:
        problems += [f"{where}: {text}" for text in _price_problems(entry["price"])]
    return problems


def _spec_from_entry(name: str, entry: dict[str, Any]) -> ModelSpec:
    """A model's table that has no problems, as a ModelSpec."""
    model = entry.get("model", name)
    base_url = entry.get("base_url")
    timeout = entry.get("timeout")
    # A custom endpoint (a local server) may take no key; OpenAI's always does.
    key_env = entry.get("api_key_env", None if base_url else DEFAULT_KEY_ENV)
    price = entry.get("price")
    return ModelSpec(
        name=name,
        model=model,
        base_url=base_url,
        api_key_env=key_env,
        params=entry.get("params", {}),
        price=price_for(model)
        if price is None
        else Price(float(price["input_per_1k"]), float(price["output_per_1k"])),
        schema_style=entry.get("schema_style", "json_schema"),
        timeout=float(timeout) if timeout is not None else None,
        concurrency=entry.get("concurrency"),
    )


def _price_problems(value: Any) -> list[str]:
    if not isinstance(value, dict) or set(value) != PRICE_KEYS:
        return ["`price` must be {input_per_1k = ..., output_per_1k = ...}"]
    numbers = [value["input_per_1k"], value["output_per_1k"]]
    if not all(isinstance(n, int | float) and not isinstance(n, bool) and n >= 0 for n in numbers):
        return ["prices must be numbers >= 0 (dollars per 1K tokens)"]
    return []


def resolve_models(names: list[str], table: Mapping[str, ModelSpec]) -> list[ModelSpec]:
    """Each name from the table, or as a bare OpenAI model; an unknown name is a ConfigError."""
    specs = []
    for name in names:
        if name in table:
            specs.append(table[name])
        elif is_openai_name(name):
            specs.append(ModelSpec(name=name, model=name, price=price_for(name)))
        else:
            configured = ", ".join(sorted(table)) or "none"
            raise ConfigError(
                f"unknown model {name!r}: it is not in [tool.llmeval.models] "
                f"(configured: {configured}) and is not an OpenAI model name"
            )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"model listed twice in --llm-models: {', '.join(duplicates)}")
    return specs
