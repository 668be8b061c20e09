"""A session's results on their way out: into a results file at the end (`--llm-save`,
`--llm-autosave`, and always when uploading), and to LangSmith as they come. The file
is written before the wait for LangSmith, so an outage loses nothing. The same snapshot
of the run is what the HTML report draws."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from pytest_llmeval.langsmith.upload import Uploader, UploadReport
from pytest_llmeval.models import ModelSpec
from pytest_llmeval.options import Settings
from pytest_llmeval.results.provenance import Provenance
from pytest_llmeval.results.records import Record
from pytest_llmeval.results.saved_run import SavedRun, describe_models


@dataclass(frozen=True)
class Published:
    upload: UploadReport | None  # None: not sent to LangSmith
    saved: Path | None  # the results file
    save_error: str | None = None

    def lines(self, saved: str | None) -> list[tuple[str, bool]]:
        """Where the results file is (``saved``: its path as shown) and what reached
        LangSmith: each line with whether it is a warning."""
        if self.upload is not None:
            return self.upload.lines(saved, self.save_error)
        if self.save_error is not None:
            return [(f"llmeval: WARNING: results file not written: {self.save_error}", True)]
        return [(f"llmeval results: {saved}", False)]


class Publisher:
    def __init__(
        self,
        root: Path,
        invoked_in: Path,
        settings: Settings,
        models: Iterable[ModelSpec],
        *,
        upload: bool,
        save: bool,
    ) -> None:
        self.upload = upload
        self.save = save or upload  # a run sent to LangSmith is always kept
        self.root = root
        self.invoked_in = invoked_in
        self.settings = settings
        self.provenance = Provenance.now(root, settings.shard)
        self.models = list(models)
        project = os.environ.get("LANGSMITH_PROJECT", "").strip()
        self.experiment_prefix = f"{project}: " if project else ""
        self._uploader: Uploader | None = None

    def _from_root(self, record: Record) -> Record:
        """Files relative to the rootdir, not to where pytest ran (as shown): so a case's
        example in LangSmith is the same whichever directory the run started from."""
        file = os.path.relpath(self.invoked_in / record.file, self.root)
        return replace(record, file=Path(file).as_posix())

    def add(self, record: Record) -> None:
        if not self.upload:
            return
        record = self._from_root(record)
        if self._uploader is None:
            if record.inputs is None:
                return  # uploads start with a suite's first result: Python tests' aren't sent
            self._uploader = Uploader(
                self.provenance,
                describe_models(self.models),
                dataset_template=self.settings.langsmith_dataset,
                experiment_prefix=self.experiment_prefix,
            )
        self._uploader.add(record)

    def snapshot(
        self, records: Iterable[Record], judges: Iterable[ModelSpec], exit_status: int
    ) -> SavedRun:
        """The run as a results file holds it."""
        return SavedRun(
            provenance=self.provenance,
            settings={
                "models": [spec.name for spec in self.models],
                "threshold": self.settings.threshold,
                "confidence": self.settings.confidence,
                "repeat": self.settings.repeat,
                "repeat_gate": self.settings.repeat_gate,
                "reference_model": self.settings.reference_model,
                "swap_margin": self.settings.swap_margin,
                "cost_at": self.settings.cost_at,
                "record": self.settings.record,
                "judge_model": self.settings.judge_model,
                "langsmith_dataset": self.settings.langsmith_dataset,
                "langsmith_experiment_prefix": self.experiment_prefix,
            },
            models=describe_models([*self.models, *judges]),
            records=tuple(self._from_root(record) for record in records),
            finished_at=time.time(),
            exit_status=exit_status,
        )

    def finish(self, saved: SavedRun) -> Published | None:
        if not self.save or not (saved.records or self.provenance.sharded):
            return None
        path = self.path()
        error = None
        try:
            saved.write(path)  # before the wait: whatever happens, nothing is lost
        except OSError as exc:
            error = f"{path}: {exc.strerror or exc}"
        if self._uploader is None:
            return Published(None, None if error else path, error)
        upload = self._uploader.finish(self.settings.langsmith_timeout)
        if error is None and upload.sent:
            # Again with what LangSmith took, so `llmeval upload` sends only the rest. If
            # this fails, the file stands as written: complete, and what LangSmith has is
            # sent again by the same ids, which it keeps once.
            with contextlib.suppress(OSError):
                replace(saved, langsmith_sent=tuple(upload.sent)).write(path)
        return Published(upload, None if error else path, error)

    def path(self) -> Path:
        """--llm-save's file (as typed, from where pytest ran), or one named by the run in
        the results directory."""
        if self.settings.save is not None:
            return self.invoked_in / self.settings.save
        run = self.provenance
        name = f"{run.stamp}-{run.short_commit}-{run.run_id[:8]}.json"
        return self.root / self.settings.results_dir / name
