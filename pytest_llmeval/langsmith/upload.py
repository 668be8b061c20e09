"""Sending results to LangSmith in the background, through the ``langsmith`` SDK.

Results are queued as they come and sent in batches by a daemon thread, so the test
run never waits on LangSmith and the interpreter's exit never does either. The SDK can
block for minutes on a server that does not answer (see the team's notes on it), so the
only wait is ``finish(timeout)``. The first failure stops the uploads: what is left is
in the results file, for ``llmeval upload``. The report lists the ids LangSmith took
(the results file keeps them), and what an earlier upload sent is not sent again. An id
sent without its answer arriving is sent again by the same id, which LangSmith keeps once.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pytest_llmeval.engine.client import without_credentials
from pytest_llmeval.langsmith import payloads
from pytest_llmeval.results.provenance import Provenance
from pytest_llmeval.results.records import Record
from pytest_llmeval.support.text import one_line, shorten

if TYPE_CHECKING:
    import langsmith

KEY_VARIABLES = ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY")
THREAD = "llmeval-langsmith"
BATCH = 100  # results per batch of runs
LINGER_S = 0.5  # how long a batch waits for more results before it goes


def api_key() -> str | None:
    return next((os.environ[v].strip() for v in KEY_VARIABLES if os.environ.get(v, "").strip()),
                None)  # fmt: skip


def wanted(flag: bool | None) -> bool:
    """On when asked for; otherwise when a LangSmith key is set and tracing is switched on."""
    if flag is not None:
        return flag
    tracing = os.environ.get("LANGSMITH_TRACING") or os.environ.get("LANGCHAIN_TRACING_V2")
    return api_key() is not None and (tracing or "").strip().lower() in ("true", "1")


@dataclass
class ExperimentLink:
    suite: str
    model: str
    name: str
    url: str | None = None


@dataclass
class UploadReport:
    endpoint: str
    results: int = 0  # results handed to the uploader
    runs_sent: int = 0
    runs_before: int = 0  # sent by an earlier upload of the same results
    feedback_sent: int = 0
    examples_created: int = 0
    examples_updated: int = 0
    experiments: list[ExperimentLink] = field(default_factory=list)
    failure: str | None = None  # why uploading stopped
    timed_out: float | None = None  # the wait, when it ran out before the uploads did
    # Every id LangSmith has taken, this upload's and earlier ones' (runs and feedback).
    sent: set[str] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return self.failure is None and self.timed_out is None and self.runs_done == self.results

    @property
    def runs_done(self) -> int:
        return self.runs_sent + self.runs_before

    def lines(self, saved: str | None, save_error: str | None = None) -> list[tuple[str, bool]]:
        """What reached LangSmith and where to look at it, and what to do when not all of it
        did: each line with whether it is a warning."""
        lines: list[tuple[str, bool]] = []
        done = f"{self.runs_done} of {self.results} results"
        if self.complete:
            parts = [
                f"{self.runs_sent} runs",
                f"{self.feedback_sent} feedback scores",
                f"examples {self.examples_created} created, {self.examples_updated} updated",
            ]
            if self.runs_before:
                parts.append(f"{self.runs_before} runs sent before")
            sent = f"llmeval langsmith: {done} sent to {self.endpoint}: " + ", ".join(parts)
            lines.append((sent, False))
        else:
            why = (
                f"stopped: {self.failure}"
                if self.failure is not None
                else f"not finished after {self.timed_out:g}s (--llm-langsmith-timeout)"
            )
            warning = (
                f"llmeval: WARNING: LangSmith upload {why}; {done} sent to {self.endpoint}. "
                "Test outcomes and the gate do not depend on it."
            )
            lines.append((warning, True))
            if saved is not None:
                later = (
                    f"  all results are in {saved}; send them later with: llmeval upload {saved}"
                )
                lines.append((later, True))
        for link in self.experiments:
            lines.append((f"  {link.suite} / {link.model}: {link.url or link.name}", False))
        if save_error is not None:
            lines.append((f"llmeval: WARNING: results file not written: {save_error}", True))
        elif saved is not None and self.complete:
            lines.append((f"llmeval results: {saved}", False))
        return lines


class Uploader:
    """Uploads one run's results; ``add`` never blocks, ``finish`` waits a bounded time."""

    def __init__(
        self,
        provenance: Provenance,
        models: payloads.Models,
        *,
        dataset_template: str = payloads.DEFAULT_DATASET,
        experiment_prefix: str = "",
        sent_before: Iterable[str] = (),
    ) -> None:
        self.provenance = provenance
        self.models = models
        self.dataset_template = dataset_template
        self.experiment_prefix = experiment_prefix
        self.report = UploadReport(endpoint=_endpoint(), sent=set(sent_before))
        self._queue: queue.SimpleQueue[Record | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=THREAD, daemon=True)
        self._client: langsmith.Client | None = None
        self._trace_error: Exception | None = None
        self._datasets: dict[str, str] = {}  # name → id
        self._remote_examples: dict[str, dict[str, Any]] = {}  # example id → as LangSmith has it
        self._synced: set[str] = set()  # example ids checked in this upload
        self._experiments: dict[tuple[str, str], str] = {}  # (suite, model) → experiment id
        self._lock = threading.Lock()  # the report, read by finish() while the thread writes
        self._thread.start()

    def add(self, record: Record) -> None:
        if record.inputs is None:
            return  # a Python test's score: LangSmith's own pytest plugin is the way for those
        self.report.results += 1
        self._queue.put(record)

    def finish(self, timeout: float) -> UploadReport:
        self._queue.put(None)
        self._thread.join(timeout)
        with self._lock:
            # A copy: a thread still under way must not change what was reported.
            return replace(
                self.report,
                experiments=list(self.report.experiments),
                sent=set(self.report.sent),
                timed_out=timeout if self._thread.is_alive() else None,
            )

    # The thread's side.

    def _work(self) -> None:
        done = False
        while not done:
            batch, done = self._next_batch()
            if batch and self.report.failure is None:
                try:
                    self._send(batch)
                except Exception as exc:  # whatever it is, uploading stops and says why
                    with self._lock:
                        self.report.failure = _describe(exc)

    def _next_batch(self) -> tuple[list[Record], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch, until = [first], time.monotonic() + LINGER_S
        while len(batch) < BATCH:
            try:
                record = self._queue.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                break
            if record is None:
                return batch, True
            batch.append(record)
        return batch, False

    @property
    def client(self) -> langsmith.Client:
        if self._client is None:
            import langsmith
            from urllib3.util import Retry

            _quiet_sdk_logs()
            self._client = langsmith.Client(
                # No background thread of the SDK's own: it would hold the interpreter's
                # exit while LangSmith is away. This thread is the background.
                auto_batch_tracing=False,
                timeout_ms=(5_000, 20_000),
                retry_config=Retry(
                    total=2,
                    backoff_factor=0.5,
                    status_forcelist=(502, 503, 504),
                    allowed_methods=None,
                    raise_on_status=False,
                ),
                tracing_error_callback=self._on_trace_error,
            )
        return self._client

    def _on_trace_error(self, exc: Exception) -> None:
        # The SDK reports a failed run upload here and does not raise it.
        self._trace_error = exc

    def _multipart(self, send: Callable[[], object]) -> None:
        """A multipart send that raises when it failed, as the SDK's does not."""
        self._trace_error = None
        send()
        if self._trace_error is not None:
            raise self._trace_error

    def _send(self, batch: Sequence[Record]) -> None:
        """A batch: its cases synced, its runs in one request, their scores in another."""
        by_dataset: dict[str, list[Record]] = {}
        for record in batch:
            name = payloads.dataset_name(self.dataset_template, record.suite)
            by_dataset.setdefault(name, []).append(record)
        runs, scores = [], []
        for dataset, records in by_dataset.items():
            self._sync_examples(dataset, records)
            for record in records:
                experiment = self._experiment(dataset, record.suite, record.model, record.threshold)
                run = payloads.run(self.provenance, self.models, record, experiment, dataset)
                if run["id"] not in self.report.sent:
                    runs.append(run)
                scores += [
                    {**item, "run_id": run["id"], "experiment": experiment}
                    for item in payloads.feedback(record, run["id"])
                    if item["id"] not in self.report.sent
                ]
        if runs:
            # Copies: the SDK turns the ids of what it is given into UUIDs, in place.
            self._multipart(lambda: self.client.multipart_ingest(create=copy.deepcopy(runs)))
        with self._lock:
            self.report.sent.update(run["id"] for run in runs)
            self.report.runs_sent += len(runs)
            self.report.runs_before += len(batch) - len(runs)
        if scores:
            self._send_feedback(scores)
        with self._lock:
            self.report.sent.update(item["id"] for item in scores)
            self.report.feedback_sent += len(scores)

    def _dataset_id(self, name: str) -> str:
        if name not in self._datasets:
            import langsmith.utils

            client = self.client
            try:
                dataset = client.read_dataset(dataset_name=name)
            except langsmith.utils.LangSmithNotFoundError:
                try:
                    dataset = client.create_dataset(
                        name, description="Golden cases of a pytest-llmeval suite",
                        metadata={"source": "pytest-llmeval"},
                    )  # fmt: skip
                except langsmith.utils.LangSmithConflictError:
                    # Created since it was looked for: by another shard of the run, say.
                    dataset = client.read_dataset(dataset_name=name)
                    self._read_examples(str(dataset.id))
            else:
                self._read_examples(str(dataset.id))
            self._datasets[name] = str(dataset.id)
        return self._datasets[name]

    def _read_examples(self, dataset_id: str) -> None:
        for found in self.client.list_examples(dataset_id=dataset_id):
            self._remote_examples[str(found.id)] = {
                "inputs": found.inputs, "outputs": found.outputs,
                "metadata": found.metadata or {},
            }  # fmt: skip

    def _sync_examples(self, dataset: str, records: Iterable[Record]) -> None:
        """Create the cases LangSmith lacks, update those that changed since."""
        dataset_id = self._dataset_id(dataset)
        new, changed = [], []
        for record in records:
            wanted_example = _plain(payloads.example(record, dataset))
            if wanted_example["id"] in self._synced:
                continue
            self._synced.add(wanted_example["id"])
            remote = self._remote_examples.get(wanted_example["id"])
            if remote is None:
                new.append(wanted_example)
            elif _differs(wanted_example, remote):
                changed.append(wanted_example)
        if new:
            # Created as `reference_outputs`, updated as `outputs`: the SDK's two schemas.
            created = [{**{k: v for k, v in ex.items() if k != "outputs"},
                        "reference_outputs": ex["outputs"]} for ex in new]  # fmt: skip
            self._create_examples(dataset_id, created)
        if changed:
            self.client.update_examples(dataset_id=dataset_id, updates=changed)
        with self._lock:
            self.report.examples_created += len(new)
            self.report.examples_updated += len(changed)

    def _create_examples(self, dataset_id: str, examples: list[dict[str, Any]]) -> None:
        """Create them; when one is there already (another upload of the same cases got
        there first), read the dataset again and create only those still missing."""
        import langsmith.utils

        try:
            self.client.create_examples(dataset_id=dataset_id, examples=examples)
        except langsmith.utils.LangSmithConflictError:
            self._read_examples(dataset_id)
            missing = [ex for ex in examples if ex["id"] not in self._remote_examples]
            if missing:
                self.client.create_examples(dataset_id=dataset_id, examples=missing)

    def _experiment(self, dataset: str, suite: str, model: str, threshold: float | None) -> str:
        if (suite, model) not in self._experiments:
            import langsmith.utils

            client = self.client
            dataset_id = self._dataset_id(dataset)
            wanted_experiment = payloads.experiment(
                self.provenance, self.models, suite, model, threshold, self.experiment_prefix
            )
            try:  # there when an earlier upload of these results got this far
                project = client.read_project(project_name=wanted_experiment.name)
            except langsmith.utils.LangSmithNotFoundError:
                try:
                    project = client.create_project(
                        wanted_experiment.name,
                        description=wanted_experiment.description,
                        metadata=wanted_experiment.metadata,
                        reference_dataset_id=dataset_id,
                    )
                except langsmith.utils.LangSmithConflictError:
                    # Another shard of the run created it since: one experiment, shared.
                    project = client.read_project(project_name=wanted_experiment.name)
            url = _compare_url(project, dataset_id)
            with self._lock:
                self.report.experiments.append(
                    ExperimentLink(suite, model, wanted_experiment.name, url)
                )
            self._experiments[suite, model] = str(project.id)
        return self._experiments[suite, model]

    def _send_feedback(self, scores: list[dict[str, Any]]) -> None:
        """All of a batch's scores in one request, as the SDK's own background sender does
        (``create_feedback`` is one request each: minutes for a large suite)."""
        from langsmith import schemas
        from langsmith._internal._operations import (
            SerializedFeedbackOperation,
            SerializedRunOperation,
            serialize_feedback_dict,
        )

        client = self.client
        if client._multipart_disabled:  # the server lacks /runs/multipart: one at a time
            for item in scores:
                client.create_feedback(
                    item["run_id"], item["key"], score=item["score"], value=item.get("value"),
                    comment=item.get("comment"), feedback_id=item["id"],
                    session_id=item["experiment"], stop_after_attempt=1,
                )  # fmt: skip
            return
        now = dt.datetime.now(dt.UTC)
        ops: list[SerializedRunOperation | SerializedFeedbackOperation] = [
            serialize_feedback_dict(
                schemas.FeedbackCreate(
                    id=item["id"], run_id=item["run_id"], trace_id=item["run_id"],
                    key=item["key"], score=item["score"], value=item.get("value"),
                    comment=item.get("comment"), session_id=uuid.UUID(item["experiment"]),
                    feedback_source=schemas.APIFeedbackSource(metadata={}),
                    created_at=now, modified_at=now,
                )
            )
            for item in scores
        ]  # fmt: skip
        self._multipart(lambda: client._multipart_ingest_ops(ops))


def _endpoint() -> str:
    """Where uploads go, as shown: without credentials (userinfo, query string)."""
    url = os.environ.get("LANGSMITH_ENDPOINT") or os.environ.get("LANGCHAIN_ENDPOINT")
    return without_credentials(url or "https://api.smith.langchain.com")


def _plain(value: Any) -> Any:
    """As it will read back from LangSmith's JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def _differs(wanted: dict[str, Any], remote: dict[str, Any]) -> bool:
    # LangSmith adds metadata of its own (a split, say); only ours is compared.
    mine = wanted["metadata"]
    theirs = remote.get("metadata") or {}
    return (
        wanted["inputs"] != remote.get("inputs")
        or wanted["outputs"] != remote.get("outputs")
        or any(theirs.get(k) != v for k, v in mine.items())
    )


def _compare_url(project: Any, dataset_id: str) -> str | None:
    """The experiment in LangSmith's comparison view, as the SDK's own evaluate() links it."""
    url = getattr(project, "url", None)
    if not url:
        return None
    base = url.split("?")[0].split("/projects/p/")[0]
    return f"{base}/datasets/{dataset_id}/compare?selectedSessions={project.id}"


def _describe(exc: Exception) -> str:
    text = one_line(str(exc)) or type(exc).__name__
    key = api_key()
    if key:
        text = text.replace(key, "***")
    return f"{type(exc).__name__}: {shorten(text, 300)}"


class _NotOurThreads(logging.Filter):
    """The SDK and urllib3 log each failure (with tracebacks); the uploader reports it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName or "").startswith(THREAD)


_FILTER = _NotOurThreads()


def _quiet_sdk_logs() -> None:
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "langsmith"]
    for name in ["langsmith", "langsmith.client", "urllib3.connectionpool", *names]:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
