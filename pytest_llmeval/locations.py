"""Paths and node ids as the person who ran pytest types them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def relpath(config: pytest.Config, path: Path) -> str:
    """A path as the person who ran pytest can use it: relative to where pytest was started."""
    return Path(os.path.relpath(path, config.invocation_params.dir)).as_posix()


def shown_id(item: pytest.Item) -> str:
    """The item's node id with its path relative to where pytest was started, so it can be
    pasted back onto the command line (pytest's own node ids are relative to the rootdir)."""
    _, _, rest = item.nodeid.partition("::")
    return f"{relpath(item.config, item.path)}::{rest}"
