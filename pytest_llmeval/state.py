"""Where the plugin keeps its state: the config's and the items' stashes."""

from __future__ import annotations

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
    """The item's answer; meanwhile the progress line (if any) shows the engine's state."""
    progress = config.stash.get(PROGRESS, None)
    if progress is None:
        return evaluation(config).engine.wait(pending)
    try:
        return evaluation(config).engine.wait(pending, progress.tick)
    finally:
        progress.clear()
