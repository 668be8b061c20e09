"""Per-process state of one run: its settings and models, the engine, the records seen,
what was decided; kept in ``config.stash`` under ``RUN``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

from pytest_llmeval.engine.budget import Budget
from pytest_llmeval.engine.cache import CacheWarning, ResponseCache
from pytest_llmeval.engine.client import Completion, sync_client
from pytest_llmeval.engine.engine import Engine, Pending, PlanRow
from pytest_llmeval.engine.limits import AdaptiveLimit
from pytest_llmeval.engine.share import RunShare
from pytest_llmeval.locations import relpath
from pytest_llmeval.models import ModelSpec, load_model_table, resolve_models
from pytest_llmeval.options import Settings
from pytest_llmeval.report.progress import ProgressLine
from pytest_llmeval.results.gate import Decision, decide
from pytest_llmeval.results.goldens import Proposal
from pytest_llmeval.results.records import Record
from pytest_llmeval.support.problems import ConfigError

if TYPE_CHECKING:
    import openai

T = TypeVar("T")
Tick = Callable[[], None]


def run_of(config: pytest.Config) -> Run:
    return config.stash[RUN]


class Run:
    def __init__(
        self,
        settings: Settings,
        models: dict[str, ModelSpec],
        cache: ResponseCache,
        *,
        table: dict[str, ModelSpec] | None = None,
        share: RunShare | None = None,
        workers: int = 1,
    ) -> None:
        self.settings = settings
        self.models = models
        self.cache = cache
        self.share = share  # on an xdist worker: the run's requests shared with the others
        self.workers = workers
        self.records: list[Record] = []
        self.suite_files: dict[str, str] = {}  # suite name → the file that defined it first
        self.decision: Decision | None = None  # at the session's end, on the controller
        self.baseline: tuple[Path, tuple[Record, ...]] | None = None  # its file, its records
        self.plan: list[PlanRow] | None = None  # what a dry run found
        self.plan_judged = False  # and whether a suite in it is judged
        self.invalid: list[str] = []  # what is wrong with the suite files collected
        # Each record's pytest node id (the record keeps the id as shown, for people).
        self.nodeids: dict[tuple[str, str, str, int], str] = {}
        self.table = table  # [tool.llmeval.models.*], for judge models too
        self.judges: dict[str, ModelSpec] = {}
        self.progress: ProgressLine | None = None  # while items wait, on a terminal
        self._engine: Engine | None = None
        self._sync_clients: dict[str, openai.OpenAI] = {}

    @classmethod
    def from_config(cls, config: pytest.Config, settings: Settings) -> Run:
        root = config.rootpath / settings.cache_dir
        cache = ResponseCache(root, relpath(config, root))
        workerinput = getattr(config, "workerinput", {})
        share = (
            RunShare(Path(workerinput["llmeval_share"])) if "llmeval_share" in workerinput else None
        )
        workers = int(workerinput.get("workercount", 1))
        table = load_model_table(config_file(config))
        models = {spec.name: spec for spec in resolve_models(list(settings.models), table)}
        return cls(settings, models, cache, table=table, share=share, workers=workers)

    def judge_model(self, name: str | None) -> ModelSpec:
        """A suite's judge (its own, or --llm-judge-model); ConfigError when there is none."""
        name = name or self.settings.judge_model
        if name is None:
            raise ConfigError(
                "no judge model: pass --llm-judge-model=NAME (ini llmeval_judge_model) "
                "or set scoring.judge.model"
            )
        if name not in self.judges:
            self.judges[name] = resolve_models([name], self.table or {})[0]
            if self._engine is not None:
                self._engine.know(self.judges[name])
        return self.judges[name]

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            settings = self.settings
            # Run-wide allowances are split among xdist workers, which share the requests.
            budget = None
            if settings.max_cost is not None:
                label = f"--llm-max-cost=${settings.max_cost:g}"
                if self.workers > 1:
                    each = settings.max_cost / self.workers
                    label += f" (${each:g} for each of {self.workers} xdist workers)"
                budget = Budget(settings.max_cost / self.workers, label)
            self._engine = Engine(
                cache=self.cache,
                mode=settings.record,
                concurrency=max(1, math.ceil(settings.concurrency / self.workers)),
                timeout=settings.timeout,
                max_retries=settings.max_retries,
                rate_limit_retries=settings.rate_limit_retries,
                budget=budget,
                share=self.share,
                workers=self.workers,
            )
            # Every configured key, so that a judge's is out of answers that come before
            # the judge is first asked.
            self._engine.know(
                *self.models.values(), *self.judges.values(), *(self.table or {}).values()
            )
        return self._engine

    def answer(self, pending: Pending) -> Completion:
        """An item's answer; meanwhile the progress line (if any) shows the engine's state.
        What went wrong with its recording is a warning on the item."""
        where = pending.request.where
        if pending.notice:
            warnings.warn(CacheWarning(f"{where}: {pending.notice}"), stacklevel=1)
        done = self._with_progress(lambda tick: self.engine.answer(pending, tick))
        problem = self.engine.unrecorded.get(pending.request.key)
        if problem:
            warnings.warn(CacheWarning(f"{where}: {problem}"), stacklevel=1)
        return done

    def result(self, future: Future[T]) -> T:
        """A job's result (the judge's verdict), with the progress line meanwhile."""
        return self._with_progress(lambda tick: self.engine.result(future, tick))

    def _with_progress(self, waiting: Callable[[Tick | None], T]) -> T:
        """Run a wait that redraws the progress line (when there is one), erased after; on
        an xdist worker, a wait the controller's interrupt ends."""
        share, progress = self.share, self.progress
        if share is None and progress is None:
            return waiting(None)

        def tick() -> None:
            if share is not None and share.stopped():
                raise KeyboardInterrupt("the run was interrupted")
            if progress is not None:
                progress.tick()

        try:
            return waiting(tick)
        finally:
            if progress is not None:
                progress.clear()

    def rate_limits(self) -> dict[str, AdaptiveLimit]:
        """This process's per-model limits (none on the xdist controller, which calls nothing)."""
        return self._engine.limits if self._engine is not None else {}

    def close(self, *, interrupted: bool = False) -> None:
        if self._engine is not None:
            self._engine.close(interrupted=interrupted)
        for sdk in self._sync_clients.values():
            sdk.close()

    def sync_client(self, model: ModelSpec) -> openai.OpenAI:
        if model.name not in self._sync_clients:
            self._sync_clients[model.name] = sync_client(
                model, timeout=self.settings.timeout, max_retries=self.settings.max_retries
            )
        return self._sync_clients[model.name]

    def _spec(self, name: str) -> ModelSpec:
        """A model of the matrix, or a judge already resolved."""
        return self.models[name] if name in self.models else self.judges[name]

    def check_keys(self, used: Iterable[str]) -> None:
        """One clear error, before anything runs, for every model whose key is not set."""
        missing = {
            name: env for name in used if (env := self._spec(name).missing_key()) is not None
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

    def check_prices(self, used: Iterable[str]) -> None:
        """--llm-max-cost needs a price for every model it limits."""
        if self.settings.max_cost is None:
            return
        unpriced = sorted(name for name in used if self._spec(name).price is None)
        if unpriced:
            raise pytest.UsageError(
                f"llmeval: --llm-max-cost needs a price for {', '.join(unpriced)}: set "
                "price = {input_per_1k = ..., output_per_1k = ...} in [tool.llmeval.models.NAME]"
            )

    def decide(self) -> Decision:
        settings = self.settings
        self.decision = decide(
            self.records,
            settings.models,
            confidence=settings.confidence,
            repeat_gate=settings.repeat_gate,
            baseline=None if self.baseline is None else self.baseline[1],
            max_regression=settings.max_regression,
            reference=settings.reference_model,
            swap_margin=settings.swap_margin,
        )
        return self.decision

    @property
    def gate_failed(self) -> bool:
        """Whether the gate fails this process's run: never for a shard, whose figures are
        a part of the run's (the merged run's `llmeval gate` decides)."""
        return bool(self.decision and self.decision.failures) and self.settings.shard is None


def config_file(config: pytest.Config) -> Path:
    """The pyproject.toml holding [tool.llmeval]: the ini file if it is one, else the rootdir's."""
    if config.inipath is not None and config.inipath.name == "pyproject.toml":
        return config.inipath
    return config.rootpath / "pyproject.toml"


RUN = pytest.StashKey[Run]()
# The result of one item, put there by the item (or the llmeval fixture) and moved onto
# its test report, which is how it reaches the xdist controller.
RECORD = pytest.StashKey[Record]()
PROPOSAL = pytest.StashKey[Proposal]()  # the answer as a golden, with --llm-update-goldens
# On the xdist controller: the directory where workers share the run's requests.
SHARE_DIR = pytest.StashKey[Path]()
