"""The results files of a run's shards (``--llm-shard=K/N``) joined into the one results
file the whole run would have written, or refused with every reason: shards of another
run, other settings, models, plugin or suite versions, a shard missing or given twice, a
case in two shards. A merged file is judged, reported and uploaded as any other."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pytest_llmeval.results.saved_run import SavedRun

SHOWN = 10  # cases in two shards listed before "and N more"


class MergeError(Exception):
    """The shards do not make one run; ``problems`` says why, each naming the files."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def merge(shards: Sequence[tuple[str, SavedRun]]) -> SavedRun:
    """One run from its shards, each given with its name as shown (a path, as typed)."""
    if not shards:
        raise MergeError(["no results files to merge"])
    problems = _not_shards(shards)
    if problems:
        raise MergeError(problems)
    problems += _not_one_run(shards)
    problems += _not_every_shard(shards)
    problems += _cases_twice(shards)
    if problems:
        raise MergeError(problems)
    runs = [run for _, run in shards]
    first = runs[0].provenance
    total = _shard(runs[0])["total"]
    models = runs[0].settings.get("models", [])
    records = [record for run in runs for record in run.records]

    def collection_order(record: Any) -> tuple[Any, ...]:
        # As one unsharded run collects them: file, case, model, repeat.
        rank = models.index(record.model) if record.model in models else len(models)
        return record.file, record.line, record.case, rank, record.model, record.repeat

    finished = [run.finished_at for run in runs if run.finished_at is not None]
    statuses = [run.exit_status for run in runs if run.exit_status is not None]
    return SavedRun(
        provenance=replace(
            first,
            started_at=min(run.provenance.started_at for run in runs),
            shard={"total": total},
        ),
        settings=runs[0].settings,
        # Each shard describes the judges it used; the union is the run's.
        models={name: spec for run in runs for name, spec in run.models.items()},
        records=tuple(sorted(records, key=collection_order)),
        finished_at=max(finished) if finished else None,
        # The worst of the shards' (errors, interruptions); the gate is the merged run's.
        exit_status=max(statuses) if statuses else None,
        langsmith_sent=tuple(sorted({i for run in runs for i in run.langsmith_sent})),
    )


def _shard(run: SavedRun) -> dict[str, int]:
    return run.provenance.shard or {}


def _not_shards(shards: Sequence[tuple[str, SavedRun]]) -> list[str]:
    problems = []
    for name, run in shards:
        shard = _shard(run)
        index, total = shard.get("index"), shard.get("total")
        valid = isinstance(index, int) and isinstance(total, int) and 1 <= index <= total
        if not valid:
            what = "an already merged run" if "total" in shard else "a run without --llm-shard"
            problems.append(f"{name}: not a shard ({what})")
    return problems


def _differ(shards: Sequence[tuple[str, SavedRun]], what: str, value: Any) -> list[str]:
    """One problem when ``value`` of the runs is not the same for all: which files have
    which."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name, run in shards:
        groups[repr(value(run))].append(name)
    if len(groups) == 1:
        return []
    parts = "; ".join(f"{', '.join(names)}: {shown}" for shown, names in groups.items())
    return [f"different {what}: {parts}"]


def _not_one_run(shards: Sequence[tuple[str, SavedRun]]) -> list[str]:
    problems = _differ(shards, "runs (run ids)", lambda r: r.provenance.run_id)
    problems += _differ(shards, "plugin versions", lambda r: r.provenance.plugin_version)
    problems += _differ(shards, "commits", lambda r: r.provenance.commit)
    problems += _differ(shards, "shard counts", lambda r: _shard(r)["total"])
    keys = sorted({key for _, run in shards for key in run.settings})
    for key in keys:
        problems += _differ(shards, f"settings ({key})", lambda r, k=key: r.settings.get(k))
    for model in shards[0][1].settings.get("models", []):
        problems += _differ(shards, f"models ({model})", lambda r, m=model: r.models.get(m))
    suites = sorted({r.suite for _, run in shards for r in run.records if r.suite_version})
    for suite in suites:
        # Among the shards that ran some of its cases: a part may have none of a suite's.
        having = [(n, r) for n, r in shards if any(x.suite == suite for x in r.records)]
        problems += _differ(
            having,
            f"versions of suite {suite!r} (its cases, prompt or scoring changed)",
            lambda r, s=suite: sorted(
                {x.suite_version for x in r.records if x.suite == s and x.suite_version}
            ),
        )
    return problems


def _not_every_shard(shards: Sequence[tuple[str, SavedRun]]) -> list[str]:
    totals = {_shard(run)["total"] for _, run in shards}
    if len(totals) != 1:
        return []  # said already: different shard counts
    (total,) = totals
    given: dict[int, list[str]] = defaultdict(list)
    for name, run in shards:
        given[_shard(run)["index"]].append(name)
    problems = [
        f"shard {index}/{total} given twice: {', '.join(names)}"
        for index, names in sorted(given.items())
        if len(names) > 1
    ]
    missing = [str(index) for index in range(1, total + 1) if index not in given]
    if missing:
        problems.append(f"shard {', '.join(missing)} of {total} missing (given: "
                        f"{', '.join(name for name, _ in shards)})")  # fmt: skip
    return problems


def _cases_twice(shards: Sequence[tuple[str, SavedRun]]) -> list[str]:
    """A case (any of its models and repeats) in more than one file, or twice in one."""
    where: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name, run in shards:
        asked = Counter((r.suite, r.case, r.model, r.repeat) for r in run.records)
        doubled = {(suite, case) for (suite, case, _, _), n in asked.items() if n > 1}
        for case in {(r.suite, r.case) for r in run.records}:
            where[case].append(name)
        for case in doubled:
            where[case].append(name)
    twice = [(case, names) for case, names in where.items() if len(names) > 1]
    problems = [
        f"case {case!r} of suite {suite!r} is in more than one shard: {', '.join(names)}"
        for (suite, case), names in twice[:SHOWN]
    ]
    if len(twice) > SHOWN:
        problems.append(f"and {len(twice) - SHOWN} more cases in more than one shard")
    return problems
