"""An item's wait for its answer: the progress line meanwhile, warnings about its recording."""

from __future__ import annotations

import warnings
from concurrent.futures import Future
from typing import TypeVar

import pytest

from pytest_llmeval.client import Completion
from pytest_llmeval.engine import Pending
from pytest_llmeval.state import PROGRESS, evaluation

T = TypeVar("T")


class CacheWarning(UserWarning):
    """A recorded answer could not be used as it is (shown in pytest's warnings summary)."""


def wait_for(config: pytest.Config, future: Future[T]) -> T:
    """A job's result (the judge's verdict), with the progress line meanwhile."""
    engine = evaluation(config).engine
    progress = config.stash.get(PROGRESS, None)
    try:
        return engine.result(future, progress.tick if progress is not None else None)
    finally:
        if progress is not None:
            progress.clear()


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
