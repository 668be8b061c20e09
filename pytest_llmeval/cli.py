"""The ``llmeval`` command.

``llmeval agreement LABELS --judge-model NAME``: how far a judge agrees with human
verdicts (agreement rate, Cohen's kappa, where they differ).
``llmeval upload RESULTS``: send a saved run to LangSmith (again: nothing twice).
``llmeval gate RESULTS --threshold X [--baseline OTHER]``: the gate again, on saved
results, calling no model.
``llmeval report RESULTS --html PATH [--markdown PATH]``: the reports of a saved run.
``llmeval validate [PATHS]``: every suite checked, calling no model.
``llmeval schema``: the JSON Schema of a suite file, for editors.

``llmeval import FILE.jsonl -o SUITE.llmeval.yaml``: a suite from chat fine-tuning JSONL
or OpenAI Evals samples. ``llmeval export SUITE -o FILE.jsonl [--split F --seed N]``:
the suite's cases as chat fine-tuning JSONL, optionally split into train and evaluation.

``llmeval merge SHARD... -o RUN``: the results files of a run's shards as one."""

from __future__ import annotations

import argparse
import configparser
import json
import os
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from pytest_llmeval.agreement import agreement, grade_all, load_labels
from pytest_llmeval.engine.cache import ResponseCache
from pytest_llmeval.engine.engine import Engine
from pytest_llmeval.langsmith.payloads import DEFAULT_DATASET
from pytest_llmeval.langsmith.upload import Uploader, api_key
from pytest_llmeval.models import is_openai_name, load_model_table, resolve_models
from pytest_llmeval.options import add_argument
from pytest_llmeval.report import html, markdown
from pytest_llmeval.report.view import change_lines, gate_lines, pct
from pytest_llmeval.results.gate import Decision, decide
from pytest_llmeval.results.merge import MergeError, merge
from pytest_llmeval.results.saved_run import ResultsFileError, SavedRun
from pytest_llmeval.suite import interchange
from pytest_llmeval.suite.load import SCHEMA, load_suite
from pytest_llmeval.suite.model import SUITE_SUFFIXES
from pytest_llmeval.suite.validate import suite_files, validate
from pytest_llmeval.support.files import write_atomically
from pytest_llmeval.support.problems import ConfigError
from pytest_llmeval.support.text import shorten

SHOWN = 160


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmeval", description="pytest-llmeval's command line")
    commands = parser.add_subparsers(dest="command", required=True)
    agree = commands.add_parser("agreement", help="measure a judge against human labels")
    agree.add_argument("labels", type=Path, help="YAML file of labelled answers")
    agree.add_argument(
        "--judge-model", help="a model name, as in --llm-models (default: the suite's judge model)"
    )
    agree.add_argument(
        "--suite",
        type=Path,
        help="judge as this suite does (its scoring.judge: "
        "model, prompt or turns, criteria) rather than with the labels file's",
    )
    agree.add_argument(
        "--config",
        type=Path,
        default=Path("pyproject.toml"),
        help="pyproject.toml with [tool.llmeval.models] (default: ./pyproject.toml)",
    )
    add_argument(agree, "record")
    agree.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="recorded answers (default: llmeval-cache beside the config file)",
    )
    add_argument(agree, "concurrency")
    add_argument(agree, "timeout")
    agree.add_argument("--min-kappa", type=float, default=None,
                       help="exit 1 when Cohen's kappa is below this")  # fmt: skip
    agree.set_defaults(run=_agreement)
    upload = commands.add_parser(
        "upload",
        help="send a saved run to LangSmith (LANGSMITH_API_KEY, LANGSMITH_ENDPOINT); what is "
        "there already is not sent again",
    )
    upload.add_argument("results", type=Path, help="a results file, as a run writes it")
    upload.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for it (default 600)"
    )
    upload.set_defaults(run=_upload)
    gate = commands.add_parser("gate", help="apply the gate again to saved results")
    gate.add_argument("results", type=Path, help="a results file (--llm-save, --llm-autosave)")
    _gate_arguments(gate)
    gate.set_defaults(run=_gate)
    report = commands.add_parser(
        "report", help="write the HTML or Markdown report of saved results"
    )
    report.add_argument("results", type=Path, help="a results file (--llm-save, --llm-autosave)")
    report.add_argument("--html", type=Path, help="write the self-contained HTML report here")
    report.add_argument("--markdown", type=Path, help="write the Markdown summary here")
    _gate_arguments(report)
    add_argument(report, "cost_at", default=None, help=" (default: the run's)")
    report.set_defaults(run=_report)
    _validate_command(commands)
    schema = commands.add_parser("schema", help="print the JSON Schema of a suite file")
    schema.set_defaults(run=_schema)
    _interchange_commands(commands)
    _merge_command(commands)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except BrokenPipeError:
        # The reader went first (`llmeval schema | head`): no traceback, and none at exit
        # when Python flushes the standard output it can no longer write to.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _merge_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    merging = commands.add_parser(
        "merge", help="join the results files of a run's shards (--llm-shard) into one"
    )
    merging.add_argument("shards", type=Path, nargs="+", help="every shard's results file")
    merging.add_argument("-o", "--output", type=Path, required=True,
                         help="the merged results file to write")  # fmt: skip
    merging.set_defaults(run=_merge)


def _merge(args: argparse.Namespace) -> int:
    """Exit 2 for a file that cannot be read or written, 1 for shards that are not one run."""
    try:
        shards = [(str(path), SavedRun.load(path)) for path in args.shards]
        merged = merge(shards)
    except ResultsFileError as exc:
        print(f"llmeval: {exc}", file=sys.stderr)
        return 2
    except MergeError as exc:
        print(f"llmeval merge: refused: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    try:
        merged.write(args.output)
    except OSError as exc:
        print(f"llmeval: {args.output}: cannot write it: {exc.strerror or exc}", file=sys.stderr)
        return 2
    total = (merged.provenance.shard or {}).get("total")
    print(f"llmeval merge: {len(merged.records)} results of {total} shards of run "
          f"{merged.provenance.run_id} in {args.output}")  # fmt: skip
    return 0


def _gate_arguments(parser: argparse.ArgumentParser) -> None:
    """The gate's settings, as the run's options; by default the run's own."""
    for name in ("threshold", "confidence", "repeat_gate", "swap_margin"):
        add_argument(parser, name, default=None, help=" (default: the run's)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a results file to compare with")  # fmt: skip
    add_argument(parser, "max_regression")


def _interchange_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`llmeval import` and `llmeval export`."""
    into = commands.add_parser(
        "import",
        help="a suite from OpenAI chat fine-tuning JSONL or OpenAI Evals samples; exits 0 "
        "when every line became a case, 1 when lines were skipped (the file is written "
        "with the others, each skipped line printed as FILE:LINE: reason), 2 when nothing "
        "was written",
    )
    into.add_argument("jsonl", type=Path, help="the JSONL file")
    into.add_argument("-o", "--output", type=Path, required=True,
                      help="the suite file to write (*.llmeval.yaml)")  # fmt: skip
    into.add_argument("--name", help="the suite's name (default: the output file's)")
    into.add_argument(
        "--id-field",
        help="the field of each line holding its case id (default: a short hash of the line)",
    )
    into.add_argument(
        "--response-format",
        choices=("auto", "json", "text"),
        default="auto",
        help="json: answers are JSON objects, a line whose answer is not one is skipped; "
        "text: answers are free text; auto (default): json when most answers are objects",
    )
    into.add_argument("--force", action="store_true", help="overwrite the output file")
    into.set_defaults(run=_import)
    out = commands.add_parser(
        "export",
        help="a suite's cases as OpenAI chat fine-tuning JSONL (the expected answer as the "
        "assistant's); with --split, train and evaluation files and the evaluation suite",
    )
    out.add_argument("suite", type=Path, help="a *.llmeval.yaml file")
    out.add_argument("-o", "--output", type=Path, required=True,
                     help="the JSONL file; with --split, NAME.train.jsonl, NAME.eval.jsonl "
                     "and NAME.eval.llmeval.yaml beside it")  # fmt: skip
    out.add_argument(
        "--split",
        type=float,
        help="the fraction of cases for evaluation, chosen by a hash of the seed and the "
        "case id (adding a case moves no other)",
    )
    out.add_argument("--seed", type=int, default=0, help="the split's seed (default 0)")
    out.add_argument("--id-field", help="also write each case id in this field of its line")
    out.add_argument("--force", action="store_true", help="overwrite the output files")
    out.set_defaults(run=_export)


def _import(args: argparse.Namespace) -> int:
    output: Path = args.output
    if not output.name.endswith(SUITE_SUFFIXES):
        print(f"llmeval: import: {output} must end in .llmeval.yaml to be collected",
              file=sys.stderr)  # fmt: skip
        return 2
    if output.exists() and not args.force:
        print(f"llmeval: import: {output} exists (--force overwrites it)", file=sys.stderr)
        return 2
    name = args.name or next(output.name.removesuffix(s) for s in SUITE_SUFFIXES
                             if output.name.endswith(s))  # fmt: skip
    try:
        imported = interchange.import_jsonl(
            args.jsonl,
            str(args.jsonl),
            name=name,
            id_field=args.id_field,
            response_format=args.response_format,
        )
        write_atomically(output, imported.text)
        load_suite(output)  # what was written loads, or the import has a bug to report
    except ConfigError as exc:
        print(f"llmeval: import: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"llmeval: import: cannot write {output}: {exc}", file=sys.stderr)
        return 2
    answers = "JSON" if imported.json_answers else "free-text"
    print(f"llmeval import: wrote {output}: suite {name!r}, {imported.cases} "
          f"case{'' if imported.cases == 1 else 's'}, "
          f"{answers} answers, from {args.jsonl}")  # fmt: skip
    for note in imported.notes:
        print(f"{note}")
    for skipped in imported.skipped:
        print(f"{skipped}", file=sys.stderr)
    if imported.skipped:
        print(f"llmeval import: {len(imported.skipped)} lines skipped", file=sys.stderr)
        return 1
    return 0


def _export(args: argparse.Namespace) -> int:
    output: Path = args.output
    if args.split is not None and not 0 < args.split < 1:
        print(f"llmeval: export: --split must be between 0 and 1, not {args.split}",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        suite = load_suite(args.suite)
    except ConfigError as exc:
        print(f"llmeval: export: {exc}", file=sys.stderr)
        return 2
    writes: list[tuple[Path, str, str]] = []  # path, text, what it holds
    if args.split is None:
        writes.append((output, interchange.jsonl(suite, suite.cases, args.id_field),
                       f"{len(suite.cases)} cases"))  # fmt: skip
    else:
        train, evaluation = interchange.split(suite.cases, args.split, args.seed)
        if not train or not evaluation:
            print(f"llmeval: export: --split {args.split} --seed {args.seed} leaves "
                  f"{len(train)} train and {len(evaluation)} evaluation cases of "
                  f"{len(suite.cases)}: give another fraction or seed",
                  file=sys.stderr)  # fmt: skip
            return 2
        stem = output.name.removesuffix(".jsonl")
        eval_name = f"{suite.name}-eval"
        try:
            eval_suite = interchange.evaluation_suite(
                args.suite, str(args.suite), eval_name, {c.id for c in evaluation}
            )
        except ConfigError as exc:
            print(f"llmeval: export: {exc}", file=sys.stderr)
            return 2
        writes += [
            (output.with_name(f"{stem}.train.jsonl"),
             interchange.jsonl(suite, train, args.id_field), f"{len(train)} train cases"),
            (output.with_name(f"{stem}.eval.jsonl"),
             interchange.jsonl(suite, evaluation, args.id_field),
             f"{len(evaluation)} evaluation cases"),
            (output.with_name(f"{stem}.eval.llmeval.yaml"), eval_suite,
             f"suite {eval_name!r}, the {len(evaluation)} evaluation cases"),
        ]  # fmt: skip
    existing = [str(path) for path, _, _ in writes if path.exists()]
    if existing and not args.force:
        print(f"llmeval: export: {', '.join(existing)} exists (--force overwrites)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        for path, text, _ in writes:
            write_atomically(path, text)
        if args.split is not None:
            load_suite(writes[-1][0])  # the evaluation suite loads, or this is a bug to show
    except ConfigError as exc:
        print(f"llmeval: export: the evaluation suite does not load: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"llmeval: export: cannot write: {exc}", file=sys.stderr)
        return 2
    for path, _, what in writes:
        print(f"llmeval export: wrote {path}: {what}")
    return 0


def _upload(args: argparse.Namespace) -> int:
    try:
        saved = SavedRun.load(args.results)
    except ResultsFileError as exc:
        print(f"llmeval: {exc}", file=sys.stderr)
        return 2
    if api_key() is None:
        print("llmeval: set LANGSMITH_API_KEY (and LANGSMITH_ENDPOINT for a self-hosted "
              "LangSmith)", file=sys.stderr)  # fmt: skip
        return 2
    uploader = Uploader(
        saved.provenance,
        saved.models,
        dataset_template=saved.settings.get("langsmith_dataset", DEFAULT_DATASET),
        experiment_prefix=saved.settings.get("langsmith_experiment_prefix", ""),
        sent_before=saved.langsmith_sent,
    )
    for record in saved.records:
        uploader.add(record)
    report = uploader.finish(args.timeout)
    try:
        replace(saved, langsmith_sent=tuple(report.sent)).write(args.results)
    except OSError as exc:
        print(f"llmeval: {args.results}: cannot record what was sent: {exc}", file=sys.stderr)
    for line, warning in report.lines(None):
        print(line, file=sys.stderr if warning else sys.stdout)
    return 0 if report.complete else 1


def _decide(args: argparse.Namespace) -> tuple[SavedRun, Decision]:
    """The gate on a saved run, by the run's own rules unless the arguments change them
    (the run with the thresholds applied, and the decision). Raises ResultsFileError, or
    ValueError for arguments that do not go together."""
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise ValueError(f"--threshold must be between 0 and 1, not {args.threshold}")
    if args.max_regression is not None and args.baseline is None:
        raise ValueError("--max-regression needs --baseline")
    saved = SavedRun.load(args.results)
    if args.swap_margin is not None and saved.settings.get("reference_model") is None:
        raise ValueError("--swap-margin needs a run with --llm-reference-model")
    before = SavedRun.load(args.baseline).records if args.baseline is not None else None
    if args.threshold is not None:
        # As in the run: a suite's own threshold stands; the others take the argument's.
        records = tuple(r if r.own_threshold else replace(r, threshold=args.threshold)
                        for r in saved.records)  # fmt: skip
        saved = replace(saved, records=records)
    settings = saved.settings
    decision = decide(
        saved.records,
        settings.get("models", ()),
        confidence=args.confidence or settings.get("confidence", "point"),
        repeat_gate=args.repeat_gate or settings.get("repeat_gate", "mean"),
        baseline=before,
        max_regression=args.max_regression,
        reference=settings.get("reference_model"),
        swap_margin=args.swap_margin
        if args.swap_margin is not None
        else settings.get("swap_margin"),
    )
    return saved, decision


def _gate(args: argparse.Namespace) -> int:
    try:
        _, decision = _decide(args)
    except (ResultsFileError, ValueError) as exc:
        print(f"llmeval: {exc}", file=sys.stderr)
        return 2
    for summary in decision.summaries:
        print(f"{summary.suite} / {summary.model}: accuracy {pct(summary.accuracy)} "
              f"({summary.passes} of {summary.asked})")  # fmt: skip
    for line in change_lines(decision.changes):
        print(line)
    for gate_line in gate_lines(decision):
        print(gate_line.line)
    return 1 if decision.failures else 0


def _report(args: argparse.Namespace) -> int:
    """The reports a run writes, from its results file; exits as `llmeval gate` does."""
    if args.html is None and args.markdown is None:
        print("llmeval: report: give --html PATH, --markdown PATH or both", file=sys.stderr)
        return 2
    try:
        saved, decision = _decide(args)
        cost_at = _cost_at(args.cost_at, saved)
    except (ResultsFileError, ValueError) as exc:
        print(f"llmeval: {exc}", file=sys.stderr)
        return 2
    problems = []
    if args.html is not None:
        problems.append(html.write(args.html, html.render(saved, decision, cost_at)))
    if args.markdown is not None:
        page = markdown.render(decision, saved.models, cost_at)
        problems += markdown.publish(page, args.markdown)
    for problem in filter(None, problems):
        print(f"llmeval: cannot write {problem}", file=sys.stderr)
    if any(problems):
        return 2
    for written in (args.html, args.markdown):
        if written is not None:
            print(f"llmeval report: {written}")
    return 1 if decision.failures else 0


def _cost_at(given: int | None, saved: SavedRun) -> int | None:
    """The requests to project costs to: ``--cost-at``, else the run's --llm-cost-at. Raises
    ValueError for one that is not a positive whole number (a file may be edited)."""
    if given is not None:
        if given < 1:
            raise ValueError(f"--cost-at must be a positive whole number, not {given}")
        return given
    kept = saved.settings.get("cost_at")
    if kept is None:
        return None
    # bool is an int: `true` in an edited file is no number of requests.
    if not isinstance(kept, int) or isinstance(kept, bool) or kept < 1:
        raise ValueError(f"the results file's cost_at {kept!r} is not a positive whole number")
    return kept


def _validate_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser("validate", help="check every suite, calling no model")
    check.add_argument("paths", type=Path, nargs="*",
                       help="suite files or folders (default: the testpaths of pytest's "
                       "configuration, else the current folder)")  # fmt: skip
    check.add_argument(
        "--config",
        type=Path,
        default=None,
        help="pyproject.toml with [tool.llmeval.models] (default: the nearest one above the "
        "paths, as pytest finds its configuration)",
    )
    check.set_defaults(run=_validate)


def _validate(args: argparse.Namespace) -> int:
    try:
        table = load_model_table(args.config or _nearest_pyproject(args.paths))
    except ConfigError as exc:
        print(f"llmeval: {exc}", file=sys.stderr)
        return 2
    found = validate(
        suite_files(args.paths or _testpaths(Path.cwd())),
        lambda name: name in table or is_openai_name(name),
        _shown,
    )
    for problem in found.problems:
        print(problem)
    print(found.summary())
    return 1 if found.problems else 0


def _nearest_pyproject(paths: list[Path]) -> Path | None:
    """The pyproject.toml in the paths' common folder or the nearest above it (the current
    folder's without paths): the one `pytest PATHS` reads its configuration from."""
    start = Path.cwd()
    if paths:
        folders = [str((p if p.is_dir() else p.parent).resolve()) for p in paths]
        start = Path(os.path.commonpath(folders))
    return next((d / "pyproject.toml" for d in (start, *start.parents)
                 if (d / "pyproject.toml").is_file()), None)  # fmt: skip


def _testpaths(root: Path) -> list[Path]:
    """pytest's `testpaths` where its configuration here gives them (pytest.ini first, as
    pytest reads it), else this folder."""
    ini = root / "pytest.ini"
    if ini.is_file():
        parser = configparser.ConfigParser()
        try:
            parser.read(ini, encoding="utf-8")
            named = parser.get("pytest", "testpaths", fallback="").split()
        except (configparser.Error, UnicodeDecodeError):
            named = []  # pytest itself says what is wrong with its configuration
        return [root / p for p in named] or [root]
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return [root]
    named = data.get("tool", {}).get("pytest", {}).get("ini_options", {}).get("testpaths", [])
    paths = [named] if isinstance(named, str) else named
    return [root / p for p in paths if isinstance(p, str)] or [root]


def _shown(path: Path) -> str:
    """A path relative to the current folder where it is under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(SCHEMA, indent=2))
    return 0


def _agreement(args: argparse.Namespace) -> int:
    try:
        labels = load_labels(args.labels)
        if args.suite is not None:
            labels = replace(labels, judge=load_suite(args.suite).scoring.judge)
        name = args.judge_model or labels.judge.model
        if name is None:
            raise ConfigError("no judge model: pass --judge-model (or --suite with one)")
        judge = resolve_models([name], load_model_table(args.config))[0]
    except ConfigError as exc:  # a labels file, a suite, the model table, the arguments
        print(f"llmeval: {exc}", file=sys.stderr)
        return 2
    if judge.missing_key():
        print(f"llmeval: no API key for {judge.name}: set {judge.missing_key()}", file=sys.stderr)
        return 2
    root = args.cache_dir or args.config.resolve().parent / "llmeval-cache"
    engine = Engine(ResponseCache(root, str(root)), mode=args.record,
                    concurrency=args.concurrency, timeout=args.timeout, max_retries=2)  # fmt: skip
    try:
        results = grade_all(engine, judge, labels)
    finally:
        engine.close()
    found = agreement(results)
    print(f"judge {judge.name} against {len(results)} human labels in {args.labels}")
    rows = [
        ("human CORRECT,   judge CORRECT", found.both_correct, ""),
        ("human INCORRECT, judge INCORRECT", found.both_incorrect, ""),
        (
            "human INCORRECT, judge CORRECT",
            found.judge_only_correct,
            "passed a wrong one",
        ),
        (
            "human CORRECT,   judge INCORRECT",
            found.human_only_correct,
            "failed a right one",
        ),
        ("no readable grade", found.ungraded, ""),
    ]
    for what, count, note in rows:
        print(f"  {what:<34}{count:4}" + (f"  ({note})" if note and count else ""))
    rate = "-" if found.rate is None else f"{found.rate:.1%}"
    kappa = "undefined (one class only)" if found.kappa is None else f"{found.kappa:.3f}"
    print(f"agreement {rate} of {found.graded} graded; Cohen's kappa {kappa}")
    for result in results:
        if result.judge != result.label.human:
            said = shorten(result.reasoning, SHOWN)
            print(f"  {result.label.id}: human {result.label.human}, "
                  f"judge {result.judge or 'no grade'}: {said}")  # fmt: skip
    # Labels left ungraded would flatter the kappa of those graded: they count against.
    short = found.ungraded or found.kappa is None or found.kappa < (args.min_kappa or 0)
    if args.min_kappa is not None and short:
        print(f"llmeval: below --min-kappa {args.min_kappa} (or labels left ungraded)",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
