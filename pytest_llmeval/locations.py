"""Paths and node ids as the person who ran pytest types them."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest


def relpath(config: pytest.Config, path: Path) -> str:
    """A path as the person who ran pytest can use it: relative to where pytest was started."""
    return _relative(path, config.invocation_params.dir)


# Each item asks for its file's path several times, and a run's items share few files.
@functools.lru_cache(maxsize=4096)
def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def shown_id(item: pytest.Item) -> str:
    """The item's node id with its path relative to where pytest was started, so it can be
    pasted back onto the command line (pytest's own node ids are relative to the rootdir)."""
    _, _, rest = item.nodeid.partition("::")
    return f"{relpath(item.config, item.path)}::{rest}"
