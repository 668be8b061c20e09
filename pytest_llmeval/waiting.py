"""An item's wait for its answer: the progress line meanwhile, warnings about its recording."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

import pytest

from pytest_llmeval.client import Completion
from pytest_llmeval.engine import Pending
from pytest_llmeval.state import PROGRESS, evaluation

T = TypeVar("T")
Tick = Callable[[], None]


class CacheWarning(UserWarning):
    """A recorded answer could not be used as it is (shown in pytest's warnings summary)."""


def wait_for(config: pytest.Config, future: Future[T]) -> T:
    """A job's result (the judge's verdict), with the progress line meanwhile."""
    engine = evaluation(config).engine
    return _with_progress(config, lambda tick: engine.result(future, tick))


def wait(config: pytest.Config, pending: Pending) -> Completion:
    """The item's answer; meanwhile the progress line (if any) shows the engine's state.
    What went wrong with its recording is a warning on the item."""
    engine = evaluation(config).engine
    where = pending.request.where
    if pending.notice:
        warnings.warn(CacheWarning(f"{where}: {pending.notice}"), stacklevel=1)
    done = _with_progress(config, lambda tick: engine.wait(pending, tick))
    problem = engine.unrecorded.get(pending.request.key)
    if problem:
        warnings.warn(CacheWarning(f"{where}: {problem}"), stacklevel=1)
    return done


def _with_progress(config: pytest.Config, waiting: Callable[[Tick | None], T]) -> T:
    """Run a wait that redraws the progress line (when there is one), erased after."""
    progress = config.stash.get(PROGRESS, None)
    if progress is None:
        return waiting(None)
    try:
        return waiting(progress.tick)
    finally:
        progress.clear()
