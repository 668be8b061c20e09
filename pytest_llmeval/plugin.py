"""pytest hooks only: options, collection, the llmeval fixture, report status, gate wiring."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval import options
from pytest_llmeval.engine.share import RunShare
from pytest_llmeval.items import CaseItem, SuiteErrorItem, SuiteFile
from pytest_llmeval.langsmith import upload as langsmith_upload
from pytest_llmeval.langsmith.publishing import Published, Publisher
from pytest_llmeval.locations import relpath
from pytest_llmeval.python_api import LLM
from pytest_llmeval.report import html, junit, markdown
from pytest_llmeval.report.goldens import GoldenReport
from pytest_llmeval.report.progress import ProgressLine
from pytest_llmeval.report.terminal import (
    write_engine_notes,
    write_lines,
    write_plan,
    write_prices,
    write_summary,
)
from pytest_llmeval.results import baseline, goldens
from pytest_llmeval.results.records import Record
from pytest_llmeval.results.saved_run import ResultsFileError, describe_models
from pytest_llmeval.run import PROPOSAL, RECORD, RUN, SHARE_DIR, Run, run_of
from pytest_llmeval.suite.model import is_suite_file
from pytest_llmeval.suite.shard import case_key
from pytest_llmeval.suite.shard import select as shard_select
from pytest_llmeval.support.memory import collector_paused
from pytest_llmeval.support.problems import ConfigError

# Named after the plugin, not `llm`: projects often have an `llm` fixture of their own.
FIXTURE = "llmeval"


def pytest_addoption(parser: pytest.Parser) -> None:
    options.register(parser)


def pytest_configure(config: pytest.Config) -> None:
    _terminate_as_interrupt(config)
    options.check_ini_keys(config)
    settings = options.Settings.from_config(config)
    try:
        config.stash[RUN] = Run.from_config(config, settings)
    except ConfigError as exc:
        raise pytest.UsageError(f"llmeval: {exc}") from None
    if not hasattr(config, "workerinput"):
        _load_baseline(config, settings)
    _check_update_goldens(config, settings)
    reference = settings.reference_model
    if settings.swap_margin is not None and reference is None:
        raise pytest.UsageError("llmeval: --llm-swap-margin needs --llm-reference-model")
    if reference is not None and reference not in run_of(config).models:
        raise pytest.UsageError(
            f"llmeval: --llm-reference-model {reference} is not one of the models run "
            f"({', '.join(run_of(config).models) or 'none'})"
        )
    publisher = None
    # The xdist controller sees every result: it alone saves them, reports them and sends
    # them on.
    upload = langsmith_upload.wanted(settings.langsmith)
    save = bool(settings.save or settings.autosave)
    if (upload or save or settings.html) and not hasattr(config, "workerinput"):
        if upload and langsmith_upload.api_key() is None:
            raise pytest.UsageError(
                "llmeval: --llm-langsmith needs LANGSMITH_API_KEY (and LANGSMITH_ENDPOINT for "
                "a self-hosted LangSmith)"
            )
        models = run_of(config).models.values()
        try:
            publisher = Publisher(config.rootpath, config.invocation_params.dir, settings,
                                  models, upload=upload, save=save)  # fmt: skip
        except ConfigError as exc:  # LLMEVAL_RUN_ID
            raise pytest.UsageError(f"llmeval: {exc}") from None
    config.pluginmanager.register(ResultsCollector(config, publisher), "llmeval-results")


def _terminate_as_interrupt(config: pytest.Config) -> None:
    """SIGTERM (what CI runners and `timeout` send) ends the run as Ctrl-C does: pytest
    finishes the session, so what finished is saved and reported, xdist workers stop and
    the temporary share directory is removed. A handler someone else installed is kept."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"{signal.Signals(signum).name} received")

    def restore() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, interrupt)
    config.add_cleanup(restore)


def _load_baseline(config: pytest.Config, settings: options.Settings) -> None:
    """The saved run to compare with, read now: a bad one stops the run before it starts."""
    if settings.baseline is None:
        if settings.max_regression is not None:
            raise pytest.UsageError("llmeval: --llm-max-regression needs --llm-baseline")
        return
    try:
        path, saved = baseline.load(settings.baseline, config.rootpath / settings.results_dir)
    except ResultsFileError as exc:
        raise pytest.UsageError(f"llmeval: --llm-baseline: {exc}") from None
    run_of(config).baseline = (path, saved.records)


def _check_update_goldens(config: pytest.Config, settings: options.Settings) -> None:
    """--llm-update-goldens writes one model's answers, asked for in this run."""
    if settings.update_goldens is None:
        return
    models = list(run_of(config).models)
    if len(models) != 1:
        raise pytest.UsageError(
            "llmeval: --llm-update-goldens writes one model's answers as the goldens: pass "
            f"--llm-models=ONE (this run has {len(models)}: {', '.join(models) or 'none'})"
        )
    if settings.record == "none":
        raise pytest.UsageError(
            "llmeval: --llm-update-goldens asks the model for the answers it writes, and "
            "--llm-record=none forbids asking: drop it (the default, new, replays what is "
            "recorded and asks the rest)"
        )
    if settings.dry_run:
        raise pytest.UsageError("llmeval: --llm-dry-run asks nothing, so writes no golden")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if is_suite_file(file_path):
        return SuiteFile.from_parent(parent, path=file_path)
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if FIXTURE in metafunc.fixturenames:
        names = list(run_of(metafunc.config).models)
        metafunc.parametrize(FIXTURE, names or [None], indirect=True, ids=names or ["no-model"])


@pytest.fixture(name=FIXTURE)
def llmeval_fixture(request: pytest.FixtureRequest) -> LLM:
    """The model of this test's place in the --llm-models matrix."""
    if request.param is None:
        pytest.fail(
            "llmeval fixture: no models; pass --llm-models or set llmeval_models", pytrace=False
        )
    return LLM(request.node, run_of(request.config).models[request.param])


@pytest.hookimpl(tryfirst=True)  # before xdist starts its workers
def pytest_sessionstart(session: pytest.Session) -> None:
    # The xdist controller never sees the selection, and a worker cannot stop the run
    # with a usage error: check every configured model here, once.
    if (
        session.config.pluginmanager.has_plugin("dsession")
        and not session.config.option.collectonly
    ):
        run = run_of(session.config)
        if run.settings.dry_run:
            raise pytest.UsageError("llmeval: --llm-dry-run runs in one process; drop -n")
        used = set(run.models)
        if run.settings.judge_model is not None:
            try:
                used.add(run.judge_model(None).name)
            except ConfigError as exc:
                raise pytest.UsageError(f"llmeval: --llm-judge-model: {exc}") from None
        run.check_prices(used)
        run.check_keys(used)


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _select_shard(config, items)
    # A run that runs nothing (listing, a dry run) would pass a broken suite file by.
    run_of(config).invalid = [item.message for item in items if isinstance(item, SuiteErrorItem)]
    if hasattr(config, "workerinput") or config.option.collectonly:
        return  # the xdist controller checked every model already; listing needs no key
    run = run_of(config)
    used: set[str] = set()
    for item in items:
        if isinstance(item, CaseItem):
            used.add(item.model.name)
            if item.judge_model is not None:
                used.add(item.judge_model.name)
        elif isinstance(item, pytest.Function) and hasattr(item, "callspec"):
            name = item.callspec.params.get(FIXTURE)
            if isinstance(name, str):
                used.add(name)
    run.check_prices(used)
    if not run.settings.dry_run:  # a dry run calls nothing, so needs no key
        run.check_keys(used)


def _select_shard(config: pytest.Config, items: list[pytest.Item]) -> None:
    """--llm-shard=K/N: the other parts' cases are deselected, as -k does (so pytest counts
    them as such). A Python test of the llmeval fixture is one case, all its models
    together; any other item (a broken suite file's error, a plain test) is in every part,
    so no part hides it."""
    shard = run_of(config).settings.shard
    if shard is None:
        return

    def key(item: pytest.Item) -> str | None:
        if isinstance(item, CaseItem):
            return case_key(item.suite.name, item.case.id)
        if isinstance(item, pytest.Function) and FIXTURE in item.fixturenames:
            return case_key(item.nodeid.split("::")[0], item.originalname)
        return None

    kept, dropped = shard_select(items, key, *shard)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """Start every selected case's request before the first item runs (or, for a dry run,
    count them and run nothing)."""
    config = session.config
    if config.option.collectonly:
        return None
    if session.testsfailed and not config.option.continue_on_collection_errors:
        return None  # pytest stops the run for the collection errors: send nothing
    run = run_of(config)
    cases = [item for item in session.items if isinstance(item, CaseItem)]
    if run.settings.dry_run:
        run.plan = run.engine.plan(item.request for item in cases)
        run.plan_judged = any(item.suite.scoring.uses_judge for item in cases)
        return True
    with collector_paused():
        for item in cases:
            item.start()
    run.progress = ProgressLine(config, run.engine.status)
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: every worker gets the directory where they share requests."""
    node.workerinput["llmeval_share"] = str(_share_dir(node.config))


def _share_dir(config: pytest.Config) -> Path:
    if SHARE_DIR not in config.stash:
        config.stash[SHARE_DIR] = Path(tempfile.mkdtemp(prefix="llmeval-run-"))
    return config.stash[SHARE_DIR]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    record = item.stash.get(RECORD, None)
    # The record rides on the report of the phase that decided it: setup when the
    # model gave no answer, call otherwise. Reports cross to the xdist controller.
    if record is not None and (call.when == "call" or (call.when == "setup" and report.failed)):
        del item.stash[RECORD]  # the report carries it on; the item stays to the run's end
        report.llmeval = record.to_report()  # type: ignore[attr-defined]
        proposal = item.stash.get(PROPOSAL, None)
        if proposal is not None:
            report.llmeval_golden = proposal.to_dict()  # type: ignore[attr-defined]
        # On the item, so the teardown report, whose properties --junitxml writes, has them;
        # only then: every report keeps a copy, some twenty a record, until the run ends.
        if getattr(item.config.option, "xmlpath", None):
            item.user_properties.extend(junit.properties(record))
    return report


def pytest_report_teststatus(
    report: pytest.TestReport, config: pytest.Config
) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
    data = getattr(report, "llmeval", None)
    if not data or report.when != "call" or not report.passed:
        return None
    replayed = " (replayed)" if data.get("cached") else ""
    if data["outcome"] == "miss":
        return "missed", "m", (f"MISS{replayed}", {"yellow": True})
    return ("passed", ".", (f"PASSED{replayed}", {"green": True})) if replayed else None


@pytest.hookimpl(trylast=True)  # after the cache plugin has saved what pytest saw fail
def pytest_sessionfinish(session: pytest.Session) -> None:
    """A miss is a passed test to pytest; when its suite and model fail the gate, it is
    one of the run's failures, so ``--lf`` reruns it (and ``--ff`` runs it first)."""
    config = session.config
    decision = run_of(config).decision
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    if decision is None or not run_of(config).gate_failed or cache is None:
        return
    nodeids = run_of(config).nodeids
    failed: dict[str, bool] = cache.get("cache/lastfailed", {})
    for summary in decision.summaries:
        if decision.failed(summary):
            for r in summary.records:
                nodeid = nodeids.get((r.suite, r.case, r.model, r.repeat))
                if r.outcome != "pass" and nodeid is not None:
                    failed[nodeid] = True
    cache.set("cache/lastfailed", failed)


class ResultsCollector:
    """Gathers records from reports, decides the gate, writes the summary (not on xdist workers)."""

    def __init__(self, config: pytest.Config, publisher: Publisher | None) -> None:
        self.config = config
        self.is_worker = hasattr(config, "workerinput")
        self.publisher = publisher
        self.published: Published | None = None
        self.markdown_problems: list[str] = []
        self.html_problem: str | None = None
        self.proposals: list[goldens.Proposal] = []
        self.goldens: goldens.Plan | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        proposal = getattr(report, "llmeval_golden", None)
        if proposal is not None:
            self.proposals.append(goldens.Proposal.from_dict(proposal))
        data = getattr(report, "llmeval", None)
        if data is not None:
            record = Record.from_dict(data)
            run = run_of(self.config)
            run.records.append(record)
            run.nodeids[record.suite, record.case, record.model, record.repeat] = report.nodeid
            if self.publisher is not None:
                self.publisher.add(record)

    def pytest_keyboard_interrupt(self) -> None:
        """Ctrl-C or SIGTERM on the xdist controller: the workers stop waiting for answers
        now, not when execnet gives up on them."""
        if SHARE_DIR in self.config.stash:
            RunShare(self.config.stash[SHARE_DIR]).stop()

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        run = run_of(self.config)
        run.close(interrupted=session.exitstatus == pytest.ExitCode.INTERRUPTED)
        if SHARE_DIR in self.config.stash:
            shutil.rmtree(self.config.stash[SHARE_DIR], ignore_errors=True)
        if self.is_worker:
            return
        decision = run.decide()
        ran_nothing = self.config.option.collectonly or run.settings.dry_run
        failed = run.gate_failed or (ran_nothing and run.invalid)
        mode = run.settings.update_goldens
        if mode is not None and not self.config.option.collectonly:
            if session.exitstatus == pytest.ExitCode.INTERRUPTED:
                self.goldens = goldens.Plan(withheld="the run was interrupted")
            else:
                self.goldens = goldens.write(goldens.choose(self.proposals, mode))
        # Written goldens were checked by no one yet: the run says so by failing.
        wrote = self.goldens is not None and self.goldens.written > 0
        if (failed or wrote) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        # A part with no case of its own (more parts than cases) did its part: its file,
        # with no records, tells the merge that it ran.
        empty_part = (run.settings.shard is not None and not run.invalid
                      and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED)  # fmt: skip
        if empty_part:
            session.exitstatus = pytest.ExitCode.OK
        if self.publisher is not None and (run.records or empty_part):
            saved = self.publisher.snapshot(
                run.records, run.judges.values(), int(session.exitstatus)
            )
            if run.settings.html and run.records:
                page = html.render(saved, decision, run.settings.cost_at)
                where = self.config.invocation_params.dir / run.settings.html
                self.html_problem = html.write(where, page)
            self.published = self.publisher.finish(saved)
        if run.records and (run.settings.markdown or os.environ.get("GITHUB_STEP_SUMMARY")):
            text = markdown.render(
                decision, describe_models(run.models.values()), run.settings.cost_at
            )
            target = run.settings.markdown
            path = None if target is None else self.config.invocation_params.dir / target
            self.markdown_problems = markdown.publish(text, path)

    def pytest_unconfigure(self) -> None:
        # --junitxml's file is written at the session's end; the gate is decided then too.
        xmlpath = getattr(self.config.option, "xmlpath", None)
        run = run_of(self.config)
        if run.decision is not None and run.gate_failed and xmlpath and Path(xmlpath).is_file():
            junit.mark_gated_misses(Path(xmlpath), run.decision)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        run = run_of(self.config)
        if self.is_worker:
            return
        if run.invalid and (self.config.option.collectonly or run.settings.dry_run):
            for message in run.invalid:
                terminalreporter.write_line(f"llmeval: {message}", red=True, bold=True)
        if run.plan is not None:
            write_plan(terminalreporter, run.plan, run.settings.max_cost, run.settings.record)
            if run.plan_judged:
                terminalreporter.write_line(
                    "judged suites: the judge's calls are not in the estimate (up to two per "
                    "answer that needs judging, known only once the answers are in)"
                )
        if run.records and run.decision is not None:
            shown = None if self.config.get_verbosity() > 0 else run.settings.misses_shown
            against = None if run.baseline is None else relpath(self.config, run.baseline[0])
            described = describe_models(run.models.values())
            write_summary(terminalreporter, run.decision, misses_shown=shown, baseline=against,
                          verbosity=self.config.get_verbosity(),
                          width=self.config.get_terminal_writer().fullwidth,
                          models=described, cost_at=run.settings.cost_at)  # fmt: skip
            write_engine_notes(terminalreporter, run.records, run.rate_limits(), run.cache.label)
            write_prices(terminalreporter, described, list(run.models))
            if run.settings.shard is not None:
                index, total = run.settings.shard
                terminalreporter.write_line(
                    f"llmeval: shard {index}/{total}: the gate above is this part's alone and "
                    "does not set the exit status; merge the parts (llmeval merge) and gate "
                    "the whole (llmeval gate)"
                )
        if self.html_problem is not None:
            terminalreporter.write_line(f"llmeval: WARNING: HTML report not written: "
                                        f"{self.html_problem}", yellow=True, bold=True)  # fmt: skip
        elif run.settings.html and run.records:
            terminalreporter.write_line(f"llmeval report: {run.settings.html}")
        for problem in self.markdown_problems:
            warning = f"llmeval: WARNING: Markdown summary not written: {problem}"
            terminalreporter.write_line(warning, yellow=True, bold=True)
        if self.goldens is not None and run.settings.update_goldens is not None:
            write_lines(
                terminalreporter, GoldenReport(self.goldens, run.settings.update_goldens).lines()
            )
        if self.published is not None:
            saved = self.published.saved
            where = None if saved is None else relpath(self.config, saved)
            write_lines(terminalreporter, self.published.lines(where))
