"""Per-process state of an evaluation run: models, the caller, the records seen, the gate."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from pytest_llmeval.client import Caller
from pytest_llmeval.gate import GateFailure, evaluate
from pytest_llmeval.models import ModelSpec, load_model_table, resolve_models
from pytest_llmeval.options import Settings
from pytest_llmeval.results import Record, Summary, summarize


class Evaluation:
    def __init__(self, settings: Settings, models: dict[str, ModelSpec]) -> None:
        self.settings = settings
        self.models = models
        self.records: list[Record] = []
        self.suite_files: dict[str, str] = {}  # suite name → the file that defined it first
        self.failures: list[GateFailure] = []
        self._caller: Caller | None = None

    @classmethod
    def from_config(cls, config: pytest.Config, settings: Settings) -> Evaluation:
        if not settings.models:
            return cls(settings, {})
        table = load_model_table(config_file(config))
        specs = resolve_models(list(settings.models), table)
        return cls(settings, {spec.name: spec for spec in specs})

    @property
    def caller(self) -> Caller:
        if self._caller is None:
            self._caller = Caller(
                timeout=self.settings.timeout, max_retries=self.settings.max_retries
            )
        return self._caller

    def check_keys(self, used: Iterable[str]) -> None:
        """One clear error, before anything runs, for every model whose key is not set."""
        missing = {
            name: env for name in used if (env := self.models[name].missing_key()) is not None
        }
        if missing:
            lines = [
                f"  {name}: set the environment variable {env}" for name, env in missing.items()
            ]
            raise pytest.UsageError(
                "llmeval: no API key for "
                + ", ".join(sorted(missing))
                + "\n"
                + "\n".join(sorted(lines))
                + "\n(a local endpoint that needs no key: give the model a base_url "
                "and no api_key_env in [tool.llmeval.models])"
            )

    def summaries(self) -> list[Summary]:
        return summarize(self.records, self.settings.models)

    def decide(self) -> list[GateFailure]:
        self.failures = evaluate(self.summaries())
        return self.failures


def config_file(config: pytest.Config) -> Path:
    """The pyproject.toml holding [tool.llmeval]: the ini file if it is one, else the rootdir's."""
    if config.inipath is not None and config.inipath.name == "pyproject.toml":
        return config.inipath
    return config.rootpath / "pyproject.toml"
