"""A run's complete results as one versioned JSON file: what ``llmeval upload`` sends.

Format ``pytest-llmeval/results``, version 1::

    {"format": "pytest-llmeval/results", "version": 1,
     "run": {"run_id", "started_at", "finished_at", "plugin_version", "commit", "branch",
             "ci": {"provider", "run_id"}, "exit_status"},
     "settings": {"models", "threshold", "confidence", "repeat", "repeat_gate",
                  "reference_model", "record", "judge_model", "langsmith_dataset",
                  "langsmith_experiment_prefix"},
     "models": {name: {"model", "endpoint", "provider", "api_version", "params", "price",
                       "price_source": {"kind", "version", "provider", "model"}}},
     "records": [one per case and model: see results.Record],
     "langsmith": {"sent": [ids of the runs and feedback LangSmith has taken]}}

Times are epoch seconds. No API key is in it: endpoints lose userinfo and query, and
parameters whose names look secret are left out. docs/results-format.md describes every
field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from pytest_llmeval.engine.client import endpoint_url
from pytest_llmeval.models import ModelSpec, Price
from pytest_llmeval.results.provenance import Provenance
from pytest_llmeval.results.records import Record
from pytest_llmeval.support.files import write_atomically

FORMAT = "pytest-llmeval/results"
VERSION = 1
SECRET_NAME = re.compile(r"key|token|secret|password|authorization", re.IGNORECASE)


class ResultsFileError(Exception):
    """A results file that cannot be read, worded with its path."""


@dataclass(frozen=True)
class SavedRun:
    provenance: Provenance
    settings: dict[str, Any]
    models: dict[str, dict[str, Any]]
    records: tuple[Record, ...]
    finished_at: float | None = None
    exit_status: int | None = None
    langsmith_sent: tuple[str, ...] = ()

    def to_json(self) -> str:
        data = {
            "format": FORMAT,
            "version": VERSION,
            "run": {
                **asdict(self.provenance),
                "finished_at": self.finished_at,
                "exit_status": self.exit_status,
            },
            "settings": self.settings,
            "models": self.models,
            "records": [record.to_dict() for record in self.records],
            "langsmith": {"sent": sorted(self.langsmith_sent)},
        }
        return json.dumps(data, indent=1, ensure_ascii=False) + "\n"

    def write(self, path: Path) -> None:
        write_atomically(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> SavedRun:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ResultsFileError(f"{path}: cannot read it: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ResultsFileError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ResultsFileError(f"{path}: not a pytest-llmeval results file")
        if data.get("version") != VERSION:
            raise ResultsFileError(
                f"{path}: results format version {data.get('version')!r}; this "
                f"pytest-llmeval reads version {VERSION}"
            )
        try:
            run = dict(data["run"])
            finished_at, exit_status = run.pop("finished_at"), run.pop("exit_status")
            known = {f.name for f in fields(Provenance)}
            return cls(
                provenance=Provenance(**{k: v for k, v in run.items() if k in known}),
                settings=dict(data["settings"]),
                models=dict(data["models"]),
                records=tuple(Record.from_dict(r) for r in data["records"]),
                finished_at=finished_at,
                exit_status=exit_status,
                langsmith_sent=tuple(data.get("langsmith", {}).get("sent", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultsFileError(
                f"{path}: malformed results file ({type(exc).__name__}: {exc})"
            ) from None


def describe_models(specs: Iterable[ModelSpec]) -> dict[str, dict[str, Any]]:
    """What a results file says about each model: enough to know what ran, and no key."""
    return {
        spec.name: {
            "model": spec.model,
            "endpoint": endpoint_url(spec),
            # As written: a value read from the environment stays `${NAME}` here.
            "params": _without_secrets(spec.identity_params),
            "price": asdict(spec.price) if spec.price is not None else None,
            **_provider_and_price_source(spec),
        }
        for spec in specs
    }


def price_of(described: Mapping[str, Any]) -> Price | None:
    """The price a results file gives a model (``describe_models``), or None when it gives
    none, or none in the shape written (a file may be old or edited)."""
    price = described.get("price")
    if not isinstance(price, Mapping):
        return None
    given = price.get("input_per_1k"), price.get("output_per_1k")
    # bool is an int: `true` in an edited file is no price.
    figures = [float(v) for v in given if isinstance(v, int | float) and not isinstance(v, bool)]
    return Price(*figures) if len(figures) == 2 else None


def _provider_and_price_source(spec: ModelSpec) -> dict[str, Any]:
    """Who serves the model (with Azure's API version) and where its price came from."""
    described: dict[str, Any] = {"provider": spec.provider}
    if spec.provider == "azure":
        described["api_version"] = spec.api_version
    source = spec.price_source
    described["price_source"] = asdict(source) if source is not None else None
    return described


def _without_secrets(params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: _without_secrets(value) if isinstance(value, Mapping) else value
        for name, value in params.items()
        if not SECRET_NAME.search(name)
    }
