"""Where the plugin keeps its state: the config's and the items' stashes."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from pytest_llmeval.client import Completion
from pytest_llmeval.engine import Pending
from pytest_llmeval.evaluation import Evaluation
from pytest_llmeval.report.progress import ProgressLine
from pytest_llmeval.results import Record

EVALUATION = pytest.StashKey[Evaluation]()
# The result of one item, put there by the item (or the llm fixture) and moved onto
# its test report, which is how it reaches the xdist controller.
RECORD = pytest.StashKey[Record]()
PROGRESS = pytest.StashKey[ProgressLine]()
# On the xdist controller: the directory where workers share the run's requests.
SHARE_DIR = pytest.StashKey[Path]()


class CacheWarning(UserWarning):
    """A recorded answer could not be used as it is (shown in pytest's warnings summary)."""


def evaluation(config: pytest.Config) -> Evaluation:
    return config.stash[EVALUATION]


def wait(config: pytest.Config, pending: Pending) -> Completion:
    """The item's answer; meanwhile the progress line (if any) shows the engine's state.
    What went wrong with its recording is a warning on the item."""
    engine = evaluation(config).engine
    where = pending.request.where
    if pending.notice:
        warnings.warn(CacheWarning(f"{where}: {pending.notice}"), stacklevel=1)
    progress = config.stash.get(PROGRESS, None)
    try:
        done = engine.wait(pending, progress.tick if progress is not None else None)
    finally:
        if progress is not None:
            progress.clear()
    problem = engine.unrecorded.get(pending.request.key)
    if problem:
        warnings.warn(CacheWarning(f"{where}: {problem}"), stacklevel=1)
    return done
