"""Models of the matrix: ``[tool.llmeval.models.<name>]`` entries, bare OpenAI names, prices."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

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
# `${NAME}` and `${NAME:-default}` in base_url and string params, as in a compose file;
# `$${` is a literal `${`. A bare `$NAME` is left alone, so a `$` in a prompt-like param
# needs no escape. A `${` that is neither is a problem (the group `name` is then None).
ENV_REFERENCE = re.compile(
    r"\$\$\{|\$\{(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\})?"
)
# The params key the SDK sends as HTTP headers rather than in the request body.
HEADERS_PARAM = "extra_headers"


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
    # Neither this nor params in its repr: a value read from the environment (a password
    # in the URL, a token in a header) may be in them.
    base_url: str | None = field(default=None, repr=False)
    # None: the endpoint takes no key (a local server); otherwise the variable to read.
    api_key_env: str | None = DEFAULT_KEY_ENV
    params: Mapping[str, Any] = field(default_factory=dict, repr=False)
    price: Price | None = None
    schema_style: SchemaStyle = "json_schema"
    timeout: float | None = None
    # This model's cap on requests in flight (a local server may serve one at a time).
    concurrency: int | None = None
    # The params as written, `${NAME}` unexpanded: what a recording's key and the results
    # file hold, so a token read from the environment is in neither and may change.
    written_params: Mapping[str, Any] | None = None
    # What `${NAME}` references read from the environment: taken out of all output, as keys.
    from_env: tuple[str, ...] = field(default=(), repr=False)

    @property
    def identity_params(self) -> Mapping[str, Any]:
        return self.params if self.written_params is None else self.written_params

    def headers(self) -> dict[str, str]:
        """``params.extra_headers``: sent as HTTP headers, as the SDK's own argument is."""
        return dict(self.params.get(HEADERS_PARAM, {}))

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
    params = entry.get("params", {})
    headers = params.get(HEADERS_PARAM, {}) if isinstance(params, dict) else {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        problems.append(f'{where}: `params.{HEADERS_PARAM}` must be a table of strings, e.g. '
                        '{Authorization = "Bearer ${TOKEN}"}')  # fmt: skip
    problems += [f"{where} {text}" for text in _expand_entry(entry, os.environ).problems]
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
    expanded = _expand_entry(entry, os.environ)
    return ModelSpec(
        name=name,
        model=model,
        base_url=expanded.base_url,
        api_key_env=key_env,
        params=expanded.params,
        written_params=entry.get("params", {}),
        from_env=tuple(sorted(expanded.secrets)),
        price=price_for(model)
        if price is None
        else Price(float(price["input_per_1k"]), float(price["output_per_1k"])),
        schema_style=entry.get("schema_style", "json_schema"),
        timeout=float(timeout) if timeout is not None else None,
        concurrency=entry.get("concurrency"),
    )


@dataclass
class _Expansion:
    """An entry's base_url and params with every `${NAME}` replaced from the environment."""

    base_url: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # Each variable's value as read: redacted wherever the run shows or stores text.
    secrets: set[str] = field(default_factory=set)


def _expand_entry(entry: dict[str, Any], environ: Mapping[str, str]) -> _Expansion:
    """``base_url`` and the string values in ``params`` (at any depth), expanded; only those:
    `api_key_env` names a variable itself, and the other keys are numbers and names."""
    done = _Expansion()

    def expand(value: Any, where: str) -> Any:
        if isinstance(value, str):
            return _expand(value, where, environ, done)
        if isinstance(value, dict):
            return {k: expand(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    base_url = entry.get("base_url")
    if isinstance(base_url, str):
        # The endpoint is shown (without credentials) in errors and stored with each
        # recording, so what is secret in a URL from the environment is only the parts
        # never shown: user, password and query string.
        shown = _Expansion()
        done.base_url = _expand(base_url, "base_url", environ, shown)
        done.problems += shown.problems
        if shown.secrets:
            try:
                url = urlsplit(done.base_url)
                parts = {url.username, url.password, url.query}
            except ValueError:  # no URL the SDK could use either: hide the whole of it
                parts = {done.base_url}
            done.secrets |= {part for part in parts if part}
    params = entry.get("params", {})
    done.params = expand(params, "params") if isinstance(params, dict) else {}
    return done


def _expand(text: str, where: str, environ: Mapping[str, str], done: _Expansion) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group("name"), match.group("default")
        if name is None:
            done.problems.append(
                f"{where}: `${{` must start a reference like ${{NAME}} or ${{NAME:-default}} "
                "(write $${ for a literal ${)"
            )
            return match.group(0)
        value = environ.get(name, "")
        if value:
            done.secrets.add(value)
            return value
        if default is not None:
            return default
        state = "is empty" if name in environ else "is not set"
        done.problems.append(f"{where}: ${{{name}}} {state}")
        return match.group(0)

    return ENV_REFERENCE.sub(replace, text)


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
