"""The ``--llm-*`` options, their ini twins, and the settings read from them."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from pytest_llmeval.support.text import did_you_mean

Kind = Literal["csv", "float", "int", "bool", "str"]


@dataclass(frozen=True)
class Option:
    name: str  # the flag is --llm-<name with dashes>, the ini key llmeval_<name>
    kind: Kind
    help: str
    default: Any = None
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--llm-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "llmeval_" + self.name


OPTIONS = (
    Option("models", "csv", "comma-separated models to run every case on (names from "
           "[tool.llmeval.models] or OpenAI model ids)", ()),
    Option("threshold", "float", "minimum accuracy (0..1) per suite and model; a suite's own "
           "`threshold:` takes precedence"),
    Option("strict", "bool", "every miss fails its test (not only the gate)", False),
    Option("confidence", "str", "what the threshold gate holds against the threshold: point = "
           "the accuracy; lenient = the upper bound of its 95% interval (fail only when the data "
           "shows it short); strict = the lower bound (pass only when the data shows it there)",
           "point", ("point", "lenient", "strict")),
    Option("timeout", "float", "seconds before a model request times out", 60.0),
    Option("max_retries", "int", "retries of a failed request (5xx, timeouts, lost "
           "connections); 429s have their own allowance", 2),
    Option("rate_limit_retries", "int", "retries of a request answered 429 (rate limited), "
           "each after the wait its Retry-After asks for, or a backoff", 10),
    Option("misses_shown", "int", "misses whose diff the summary prints (-v prints all)", 10),
    Option("concurrency", "int", "requests in flight at once, over all models (a model's "
           "`concurrency` caps its own share)", 16),
    Option("record", "str", "response cache: none = replay only (a request not recorded is an "
           "error), new = replay what is recorded and record the rest, all = call and re-record "
           "everything", "new", ("none", "new", "all")),
    Option("cache_dir", "str", "directory of recorded answers, relative to the rootdir",
           "llmeval-cache"),
    Option("max_cost", "float", "dollars this run may spend; requests that would pass it are "
           "not sent (their items are errors)"),
    Option("cost_at", "int", "project each model's cost to this many requests, from its mean "
           "tokens per answered request in this run and its price: a table beside each "
           "suite's"),
    Option("judge_model", "str", "the model that grades answers of suites scored by a judge "
           "(a suite's `scoring.judge.model` wins)"),
    Option("dry_run", "bool", "count requests and estimate tokens and cost per model; call "
           "nothing", False),
    Option("repeat", "int", "ask every case this many times (each answer recorded apart): "
           "accuracy over all answers, pass^N over cases, flaky cases listed", 1),
    Option("repeat_gate", "str", "with --llm-repeat: the gate holds `mean` (accuracy over all "
           "answers) or `all` (pass^N: the share of cases right every time) against the "
           "threshold", "mean", ("mean", "all")),
    Option("reference_model", "str", "compare every other model with this one on the same "
           "cases: paired table, the difference with its 95% interval and p-value; a model "
           "shown WORSE fails the run"),
    Option("swap_margin", "float", "with --llm-reference-model: a model passes only when it "
           "is shown at most this many points worse than the reference (one-sided 95% bound, "
           "Holm-adjusted over its suites)"),
    Option("baseline", "str", "compare with a saved run (a results file, or `latest` in "
           "--llm-results-dir): accuracy then and now, newly failing and passing cases"),
    Option("max_regression", "float", "fail when a suite and model's accuracy is more than "
           "this many points below the baseline's and McNemar's exact test on the cases that "
           "changed side says the drop is real (p < 0.05)"),
    Option("markdown", "str", "write the summary as Markdown to this file (also appended to "
           "$GITHUB_STEP_SUMMARY when that is set)"),
    Option("html", "str", "write a self-contained HTML report to this file: tables, charts, "
           "every miss with its diff, filterable; opens from disk"),
    Option("langsmith", "bool", "send results to LangSmith, one experiment per suite and model "
           "(default: on when LANGSMITH_API_KEY is set and LANGSMITH_TRACING=true)"),
    Option("langsmith_dataset", "str", "LangSmith dataset name of each suite; {suite} is the "
           "suite's name", "{suite}"),
    Option("langsmith_timeout", "float", "seconds the session's end waits for LangSmith uploads "
           "still under way", 30.0),
    Option("save", "str", "write the run's complete results (every case x model, the "
           "settings) to this JSON file"),
    Option("autosave", "bool", "save every run in --llm-results-dir, named by time and git "
           "commit", False),
    Option("update_goldens", "str", "write the model's parsed answer as the `expected:` of "
           "cases that have none (missing), or of those and every missed case (all); needs "
           "exactly one model", None, ("missing", "all")),
    Option("results_dir", "str", "where runs are saved (autosave, and every run sent to "
           "LangSmith), relative to the rootdir", "llmeval-results"),
    Option("shard", "str", "run only part K of N of the cases (1-based), every model and "
           "repeat of a case in one part; `llmeval merge` joins the parts' results files "
           "(default: GitLab's CI_NODE_INDEX/CI_NODE_TOTAL, CircleCI's and Buildkite's "
           "parallelism variables)"),
)  # fmt: skip


OPTION = {option.name: option for option in OPTIONS}


# The ini types take both a TOML string ("0.9") and a TOML number (0.9); "args" takes a
# TOML array as well as a string.
INI_TYPES: dict[Kind, Literal["args", "float", "int", "bool", "string"]] = {
    "csv": "args",
    "float": "float",
    "int": "int",
    "bool": "bool",
    "str": "string",
}


def register(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmeval", "LLM regression testing (pytest-llmeval)")
    for option in OPTIONS:
        if option.kind == "bool":
            group.addoption(option.flag, action="store_true", default=None, help=option.help)
        else:
            group.addoption(
                option.flag,
                default=None,
                choices=option.choices or None,
                # argparse formats help with %: "95%" must be written "95%%".
                help=f"{option.help} (ini: {option.ini})".replace("%", "%%"),
            )
        parser.addini(option.ini, option.help, type=INI_TYPES[option.kind], default=None)


_SAME = object()
_TYPES: dict[Kind, type] = {"float": float, "int": int, "str": str}


def add_argument(
    parser: argparse.ArgumentParser, name: str, *, default: Any = _SAME, help: str = ""
) -> None:
    """The ``llmeval`` command's twin of option ``name``: ``--name``, with its type, choices
    and help (``help`` is added to it), and its default unless told otherwise."""
    option = OPTION[name]
    parser.add_argument(
        "--" + name.replace("_", "-"),
        type=_TYPES[option.kind],
        choices=option.choices or None,
        default=option.default if default is _SAME else default,
        help=f"{option.help}{help}".replace("%", "%%"),
    )


@dataclass(frozen=True)
class Settings:
    models: tuple[str, ...]
    threshold: float | None
    strict: bool
    confidence: str
    timeout: float
    max_retries: int
    rate_limit_retries: int
    misses_shown: int
    concurrency: int
    record: str
    cache_dir: str
    max_cost: float | None
    cost_at: int | None
    judge_model: str | None
    dry_run: bool
    repeat: int
    repeat_gate: str
    reference_model: str | None
    swap_margin: float | None
    baseline: str | None
    max_regression: float | None
    markdown: str | None
    html: str | None
    langsmith: bool | None
    langsmith_dataset: str
    langsmith_timeout: float
    save: str | None
    autosave: bool
    results_dir: str
    update_goldens: str | None
    shard: tuple[int, int] | None  # (K, N): part K of N, from 1

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        values = {option.name: _read(config, option) for option in OPTIONS}
        threshold = values["threshold"]
        if threshold is not None and not 0 <= threshold <= 1:
            raise pytest.UsageError(f"--llm-threshold must be between 0 and 1, not {threshold}")
        if "{suite}" not in values["langsmith_dataset"]:
            raise pytest.UsageError(
                "--llm-langsmith-dataset / llmeval_langsmith_dataset must contain {suite}: "
                "each suite is its own dataset"
            )
        values["shard"] = read_shard(values["shard"], os.environ)
        return cls(**values)


SHARD = re.compile(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*", re.ASCII)
NUMBER = re.compile(r"\s*\d{1,6}\s*", re.ASCII)
# (index variable, total variable, whether the index counts from 0), as each CI sets them
# for a job split in parallel.
CI_SHARD_VARIABLES = (
    ("CI_NODE_INDEX", "CI_NODE_TOTAL", False),  # GitLab CI, `parallel: N`
    ("CIRCLE_NODE_INDEX", "CIRCLE_NODE_TOTAL", True),  # CircleCI, `parallelism: N`
    ("BUILDKITE_PARALLEL_JOB", "BUILDKITE_PARALLEL_JOB_COUNT", True),  # Buildkite
)


def read_shard(given: str | None, environ: Mapping[str, str]) -> tuple[int, int] | None:
    """The part of the cases to run: --llm-shard (or its ini twin) wins over the CI's own
    variables, so a job can override what its CI sets; a CI job not split (N = 1) is no
    shard."""
    if given is not None:
        found = SHARD.fullmatch(given)
        index, total = (int(found[1]), int(found[2])) if found else (0, 0)
        if not 1 <= index <= total:
            raise pytest.UsageError(
                f"--llm-shard / llmeval_shard must be K/N with 1 <= K <= N, not {given!r}"
            )
        return index, total
    for index_name, total_name, from_zero in CI_SHARD_VARIABLES:
        if index_name in environ and total_name in environ:
            raw = (environ[index_name], environ[total_name])
            index, total = (int(v) if NUMBER.fullmatch(v) else -1 for v in raw)
            index += from_zero
            if not 1 <= index <= total:
                raise pytest.UsageError(
                    f"llmeval: {index_name}={raw[0]!r} and {total_name}={raw[1]!r} are not a "
                    f"part of a parallel job; pass --llm-shard=K/N to say which part to run"
                )
            return (index, total) if total > 1 else None
    return None


def check_ini_keys(config: pytest.Config) -> None:
    """A misspelt ``llmeval_*`` key would leave its setting (a threshold, say) silently
    off: it stops the run, with the key it was probably meant to be."""
    known = {option.ini for option in OPTIONS}
    # pytest has no public list of the ini keys it does not know (it only warns of them);
    # config.inicfg, the public way to the raw keys, is deprecated.
    keys: list[str] = getattr(config, "_get_unknown_ini_keys", list)()
    unknown = sorted(key for key in keys if key.startswith("llmeval_"))
    if unknown:
        where = config.inipath or "the ini file"
        raise pytest.UsageError("\n".join(
            f"llmeval: {where}: unknown option {key!r}{did_you_mean(key, known)}"
            for key in unknown
        ))  # fmt: skip


def _read(config: pytest.Config, option: Option) -> Any:
    """The command line wins over the ini file, which wins over the default."""
    raw = config.getoption(option.flag)
    if raw is None:
        try:
            raw = config.getini(option.ini)
        # pytest converts a float or int ini value itself: before 9.2 a ValueError escapes,
        # from 9.2 a UsageError without the key's name.
        except (ValueError, pytest.UsageError) as exc:
            raise pytest.UsageError(f"{option.ini}: {exc}") from None
    if raw is None or raw == "" or raw == []:
        return option.default
    if option.kind == "bool":
        return bool(raw)
    if option.kind == "str":
        value = str(raw).strip()
        if option.choices and value not in option.choices:
            raise pytest.UsageError(
                f"{option.flag} / {option.ini} must be one of {', '.join(option.choices)}, "
                f"not {value!r}"
            )
        return value
    if option.kind == "csv":
        # "a,b", "a, b", ["a", "b"]: the command line gives a string, the ini a list.
        parts = raw if isinstance(raw, list) else [raw]
        names = (name.strip() for part in parts for name in str(part).split(","))
        return tuple(name for name in names if name)
    try:
        number = float(raw) if option.kind == "float" else int(raw)
    except ValueError:
        number = -1
    positive = option.name in ("timeout", "concurrency", "repeat", "cost_at")
    if number < 0 or (positive and number == 0):
        sign = "positive" if positive else "non-negative"
        noun = "whole number" if option.kind == "int" else "number"
        raise pytest.UsageError(
            f"{option.flag} / {option.ini} must be a {sign} {noun}, not {raw!r}"
        )
    return number
