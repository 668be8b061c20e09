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
from pytest_llmeval.support.schema import SchemaPath, lazy_validator, load_schema, schema_problems

SchemaStyle = Literal["json_schema", "json_object"]

# The shape of a model's table: its keys, their types and values. The rules no schema
# says (Azure's keys, prices genai-prices must know, `${NAME}` set) are in code below.
SCHEMA = load_schema("pytest_llmeval", "models.schema.json")
CHECK = lazy_validator(SCHEMA)
DEFAULT_KEY_ENV = "OPENAI_API_KEY"

Provider = Literal["openai", "azure"]
AZURE_KEY_ENV = "AZURE_OPENAI_API_KEY"

# The figures of the gpt-3.5 fine-tuning comparison this tool grew from (OpenAI list prices,
# August 2023, US dollars per 1K tokens in and out), kept only where genai-prices prices the
# name otherwise today: it has the other two, gpt-4 and gpt-4-32k, at the same figures.
# Asked for by `price_model = "2023:<name>"`, never by default: they are no longer the
# prices a run pays.
AUGUST_2023: dict[str, tuple[float, float]] = {
    "gpt-3.5-turbo": (0.0015, 0.002),
    "ft:gpt-3.5-turbo": (0.012, 0.016),
}
AUGUST_2023_PREFIX = "2023"
# Names that are OpenAI models (bare in --llm-models, with no entry in the table).
OPENAI_PREFIXES = ("gpt-", "ft:", "o1", "o3", "o4", "chatgpt-")
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

    # Tokens as floats too: a projection prices a mean number of tokens per request.
    def cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input_per_1k + output_tokens * self.output_per_1k) / 1000


PriceKind = Literal["genai-prices", "pyproject", "august-2023", "none"]


@dataclass(frozen=True)
class PriceSource:
    """Where a model's price came from: genai-prices (its version, and the provider and
    model id it priced), the model's table in pyproject.toml, the August 2023 figures, or
    nowhere (``provider`` and ``model`` set when genai-prices was asked and did not know)."""

    kind: PriceKind
    version: str = ""
    provider: str = ""
    model: str = ""


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
    provider: Provider = "openai"
    # Azure: the resource's endpoint and the API version; the deployment is `model`.
    azure_endpoint: str | None = None
    api_version: str | None = None
    # None where whoever built the spec did not say (a spec built in code).
    price_source: PriceSource | None = None
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


def decide_price(
    model: str,
    *,
    provider: Provider = "openai",
    base_url: str | None = None,
    price: Mapping[str, float] | None = None,
    price_model: str | None = None,
) -> tuple[Price | None, PriceSource]:
    """A model's price and where it came from (README, Models): the table's `price`; else
    its `price_model`; else genai-prices' price of the model at its provider, when the
    endpoint is a provider's own (Azure's, OpenAI's when there is no base_url, or one that
    genai-prices knows by its URL); else none: a model at any other endpoint is served by
    someone genai-prices cannot know, however OpenAI-like its name."""
    if price is not None:
        given = Price(float(price["input_per_1k"]), float(price["output_per_1k"]))
        return given, PriceSource("pyproject")
    if price_model is not None:
        return named_price(price_model)
    if provider == "azure":
        return library_price("azure", model)
    if base_url is None:
        return library_price("openai", model)
    known = _library_provider_at(base_url)
    if known is None:
        return None, PriceSource("none")
    return library_price(known, model)


def named_price(ref: str) -> tuple[Price | None, PriceSource]:
    """The price `price_model` names: "2023:<model>" from the August 2023 figures, else
    "<provider>:<model>" from genai-prices."""
    provider, _, model = ref.partition(":")
    if provider == AUGUST_2023_PREFIX:
        key = model
        if model.startswith("ft:"):
            # ft:BASE:org:suffix:id — a fine-tune is priced by its base model.
            key = "ft:" + model.split(":")[1]
        figures = AUGUST_2023.get(key)
        found = Price(*figures) if figures is not None else None
        return found, PriceSource("august-2023" if found else "none", model=key)
    return library_price(provider, model)


def library_price(provider: str, model: str) -> tuple[Price | None, PriceSource]:
    """genai-prices' price per 1K tokens of ``model`` at ``provider`` today (a price tiered
    by prompt length at its first tier), with the id it matched; none when it does not
    know the model there."""
    import genai_prices

    try:
        found = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=1000, output_tokens=1000), model, provider_id=provider
        )
    except LookupError:
        return None, PriceSource("none", genai_prices.__version__, provider, model)
    price = Price(float(found.input_price), float(found.output_price))
    return price, PriceSource("genai-prices", genai_prices.__version__, found.provider.id,
                              found.model.id)  # fmt: skip


def _library_provider_at(base_url: str) -> str | None:
    """The genai-prices provider whose API is at ``base_url`` (api.openai.com, api.groq.com,
    ...), if any."""
    from genai_prices.data_snapshot import get_snapshot

    try:
        return get_snapshot().find_provider(None, None, base_url.strip()).id
    except LookupError:
        return None


def is_openai_name(name: str) -> bool:
    return name.startswith(OPENAI_PREFIXES)


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
    """What is wrong with one model's table, each problem worded for the person fixing it:
    its shape by `models.schema.json`, then the rules no schema says."""
    where = f"[tool.llmeval.models.{name}]"
    if not isinstance(entry, dict):
        return [f"{where} must be a table"]
    shape = [f"{where}: {found.text}" for found in schema_problems(CHECK(), entry, _what)]
    # Every variable a table reads is named at once, whatever else is wrong with it.
    problems = shape + [f"{where} {text}" for text in _expand_entry(entry, os.environ).problems]
    if shape:  # the rules below read values of the shape the schema gives
        return problems
    return problems + [f"{where}: {text}" for text in _provider_problems(entry)]


def _what(path: SchemaPath) -> str:
    return "the table" if not path else "`" + ".".join(map(str, path)) + "`"


def _provider_problems(entry: dict[str, Any]) -> list[str]:
    """What is wrong with the keys that say who serves the model and who prices it."""
    provider = entry.get("provider", "openai")
    problems = []
    if provider == "azure":
        if "azure_endpoint" not in entry:
            problems.append('provider "azure" needs `azure_endpoint`, the resource\'s URL, '
                            'e.g. "https://NAME.openai.azure.com"')  # fmt: skip
        if "api_version" not in entry:
            problems.append('provider "azure" needs `api_version`, e.g. "2024-10-21"')
        if "base_url" in entry:
            problems.append('provider "azure" takes `azure_endpoint`, not `base_url`')
    else:
        problems += [f'`{key}` is for provider = "azure"'
                     for key in ("azure_endpoint", "api_version") if key in entry]  # fmt: skip
    if "price_model" in entry:
        problems += _price_model_problems(entry["price_model"], given="price" in entry)
    return problems


def _price_model_problems(ref: str, *, given: bool) -> list[str]:
    if given:
        return ["give `price` or `price_model`, not both"]
    price, source = named_price(ref)
    if price is not None:
        return []
    if source.provider:
        return [f"`price_model`: genai-prices {source.version} has no price for {ref!r}"]
    known = ", ".join(sorted(AUGUST_2023))
    return [f"`price_model`: the August 2023 figures are kept for {known} only (genai-prices "
            'has gpt-4 and gpt-4-32k at theirs: "openai:gpt-4")']  # fmt: skip


def _spec_from_entry(name: str, entry: dict[str, Any]) -> ModelSpec:
    """A model's table that has no problems, as a ModelSpec."""
    model = entry.get("model", name)
    base_url = entry.get("base_url")
    timeout = entry.get("timeout")
    provider = entry.get("provider", "openai")
    expanded = _expand_entry(entry, os.environ)
    # A custom endpoint (a local server) may take no key; OpenAI's and Azure's always do.
    key_env = entry.get("api_key_env", _default_key_env(provider, base_url))
    price, price_source = decide_price(model, provider=provider, base_url=expanded.base_url,
                                       price=entry.get("price"),
                                       price_model=entry.get("price_model"))  # fmt: skip
    return ModelSpec(
        name=name,
        model=model,
        base_url=expanded.base_url,
        api_key_env=key_env,
        params=expanded.params,
        written_params=entry.get("params", {}),
        from_env=tuple(sorted(expanded.secrets)),
        price=price,
        price_source=price_source,
        provider=provider,
        azure_endpoint=entry.get("azure_endpoint"),
        api_version=entry.get("api_version"),
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


def _default_key_env(provider: Provider, base_url: str | None) -> str | None:
    if provider == "azure":
        return AZURE_KEY_ENV
    return None if base_url else DEFAULT_KEY_ENV


def resolve_models(names: list[str], table: Mapping[str, ModelSpec]) -> list[ModelSpec]:
    """Each name from the table, or as a bare OpenAI model; an unknown name is a ConfigError."""
    specs = []
    for name in names:
        if name in table:
            specs.append(table[name])
        elif is_openai_name(name):
            price, source = decide_price(name)
            specs.append(ModelSpec(name=name, model=name, price=price, price_source=source))
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
