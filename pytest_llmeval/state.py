"""Where the plugin keeps its state: the config's and the items' stashes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_llmeval.evaluation import Evaluation
from pytest_llmeval.results import Record

EVALUATION = pytest.StashKey[Evaluation]()
# The result of one item, put there by the item (or the llm fixture) and moved onto
# its test report, which is how it reaches the xdist controller.
RECORD = pytest.StashKey[Record]()


def evaluation(config: pytest.Config) -> Evaluation:
    return config.stash[EVALUATION]


def relpath(config: pytest.Config, path: Path) -> str:
    """A path as people and node ids see it: relative to the rootdir, with forward slashes."""
    return Path(os.path.relpath(path, config.rootpath)).as_posix()
