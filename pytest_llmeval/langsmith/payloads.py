"""What a run looks like in LangSmith: a dataset per suite, an example per case, an
experiment per suite and model, a run per result with its feedback.

Ids (examples, runs, feedback) and experiment names are derived from the case, the
run's id and the key, never drawn at random, so sending the same results twice
addresses the same objects: nothing is created twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pytest_llmeval.results.provenance import Provenance
from pytest_llmeval.results.records import Record

Models = dict[str, dict[str, Any]]  # as a results file describes them
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://pypi.org/project/pytest-llmeval/")
DEFAULT_DATASET = "{suite}"


def stable_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(parts)))


def dataset_name(template: str, suite: str) -> str:
    return template.replace("{suite}", suite)


def example_id(dataset: str, case: str) -> str:
    return stable_id("example", dataset, case)


def example(record: Record, dataset: str) -> dict[str, Any]:
    """A case as written: its inputs, its expected answer, where it is and its tags."""
    expected = record.expected
    return {
        "id": example_id(dataset, record.case),
        "inputs": record.inputs or {},
        # LangSmith wants an object; an expected string or list is wrapped.
        "outputs": expected if isinstance(expected, dict) else {"expected": expected},
        "metadata": {
            "suite": record.suite,
            "case": record.case,
            "file": record.file,
            "line": record.line,
            "tags": list(record.tags),
        },
    }


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    metadata: dict[str, Any]


def experiment(
    provenance: Provenance,
    models: Models,
    suite: str,
    model: str,
    threshold: float | None,
    prefix: str = "",
) -> Experiment:
    spec = models.get(model, {})
    metadata = {
        "suite": suite,
        "model": model,
        "model_id": spec.get("model"),
        "params": spec.get("params", {}),
        "endpoint_host": urlsplit(spec.get("endpoint") or "").netloc or None,
        "threshold": threshold,
        "plugin": "pytest-llmeval",
        "plugin_version": provenance.plugin_version,
        "git_commit": provenance.commit,
        "git_branch": provenance.branch,
        "ci_provider": provenance.ci.get("provider"),
        "ci_run_id": provenance.ci.get("run_id"),
        "llmeval_run_id": provenance.run_id,
        "llmeval_shards": (provenance.shard or {}).get("total"),
    }
    if provenance.sharded:
        # Every shard must name it alike, whenever it started: by the whole run's id, not
        # by a time.
        name = f"{prefix}{suite} | {model} | {provenance.short_commit} | run {provenance.run_id}"
    else:
        # Suite first, then time: one suite's runs sort together, oldest first, with the
        # models of one run side by side. The run id tells apart runs of one second.
        name = (
            f"{prefix}{suite} | {provenance.stamp} | {model} | {provenance.short_commit} | "
            f"{provenance.run_id[:8]}"
        )
    return Experiment(
        name=name,
        description=f"pytest-llmeval: suite {suite} on {model}",
        metadata={k: v for k, v in metadata.items() if v is not None},
    )


def run_id(provenance: Provenance, record: Record) -> str:
    return stable_id("run", provenance.run_id, record.nodeid)


def run(
    provenance: Provenance, models: Models, record: Record, experiment_id: str, dataset: str
) -> dict[str, Any]:
    """The result as a LangSmith run: the answer, its time, tokens and cost, or its error."""
    identity = run_id(provenance, record)
    start = record.started_at or provenance.started_at
    end = record.finished_at or start
    started = dt.datetime.fromtimestamp(start, dt.UTC)
    outputs = None
    if record.answer is not None:
        usage = {
            "input_tokens": record.input_tokens,
            "output_tokens": record.output_tokens,
            "total_tokens": (record.input_tokens or 0) + (record.output_tokens or 0),
            "total_cost": record.cost,
        }
        outputs = {
            "answer": record.answer,
            "parsed": record.parsed,
            "usage_metadata": {k: v for k, v in usage.items() if v is not None},
        }
    spec = models.get(record.model, {})
    metadata = {
        "model": record.model,
        "ls_model_name": spec.get("model"),
        "ls_provider": "openai",  # the API spoken; LangSmith shows the model by these two
        "case": record.case,
        "location": record.location,
        "outcome": record.outcome,
        "cached": record.cached,
        "attempts": record.attempts,
        "cost_usd": record.cost,
        "judge_cost_usd": record.judge_cost,
    }
    return {
        "id": identity,
        "trace_id": identity,
        "dotted_order": f"{started:%Y%m%dT%H%M%S%fZ}{identity}",
        "name": record.case,
        "run_type": "llm",
        "session_id": experiment_id,
        "reference_example_id": example_id(dataset, record.case),
        "inputs": record.inputs or {},
        "outputs": outputs,
        "error": record.reason if record.outcome == "error" else None,
        "start_time": started,
        "end_time": dt.datetime.fromtimestamp(end, dt.UTC),
        "extra": {
            "metadata": {k: v for k, v in metadata.items() if v is not None},
            "invocation_params": spec.get("params", {}),
        },
    }


def feedback(record: Record, run: str) -> list[dict[str, Any]]:
    """Scores on the run: correctness, field accuracy, each field, each judge's grade."""
    if record.outcome == "error":
        return []  # no verdict to give; the run carries the error
    items: list[dict[str, Any]] = [{"key": "correctness", "score": int(record.outcome == "pass")}]
    if record.score is not None:
        items.append({"key": "field_accuracy", "score": record.score})
    for name, ok in record.fields.items():
        items.append({"key": f"field.{name}", "score": int(ok)})
    for grade in record.judge_grades:
        key = "judge" if grade["field"] is None else f"judge.{grade['field']}"
        items.append({
            "key": key,
            "score": int(grade["grade"] == "CORRECT"),
            "value": grade["grade"],
            "comment": grade["reasoning"],
        })  # fmt: skip
    return [{**item, "id": stable_id("feedback", run, item["key"])} for item in items]
