"""The engine's live progress line, drawn while an item waits for its answer."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TextIO

import pytest

SAVE, RESTORE_AND_ERASE = "\x1b7", "\x1b8\x1b[K"
MIN_ROOM = 20  # narrower than this, the line says too little to be worth drawing


class ProgressLine:
    """Drawn after pytest's own output on the current line and erased before pytest writes
    again, so the item lines read as usual. Only on a terminal, and not with ``-q``."""

    def __init__(self, config: pytest.Config, status: Callable[[], str]) -> None:
        self._status = status
        self._drawn = False
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        self._writer = None
        self._file: TextIO | None = None
        if (
            reporter is not None
            and reporter.isatty()
            and config.get_verbosity() >= 0
            and os.environ.get("TERM") != "dumb"
        ):
            self._writer = reporter._tw
            # The terminal writer's own stream: it tracks the width of what pytest wrote on
            # this line, and a progress text erased again must not count in it.
            self._file = getattr(self._writer, "_file", None)

    def tick(self) -> None:
        if self._writer is None or self._file is None:
            return
        room = self._writer.fullwidth - self._writer.width_of_current_line - 1
        text = f"  [llmeval {self._status()}]"
        if room < MIN_ROOM:
            return
        self._file.write((RESTORE_AND_ERASE if self._drawn else SAVE) + text[:room])
        self._file.flush()
        self._drawn = True

    def clear(self) -> None:
        if self._drawn and self._file is not None:
            self._file.write(RESTORE_AND_ERASE)
            self._file.flush()
            self._drawn = False
