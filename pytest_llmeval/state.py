"""Where the plugin keeps its state: the config's and the items' stashes."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def evaluation(config: pytest.Config) -> Evaluation:
    return config.stash[EVALUATION]
