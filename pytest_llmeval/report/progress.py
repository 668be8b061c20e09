"""The engine's live progress line, drawn while an item waits for its answer."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
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
        self._capture = config.pluginmanager.get_plugin("capturemanager")
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
        self._write((RESTORE_AND_ERASE if self._drawn else SAVE) + text[:room])
        self._drawn = True

    def clear(self) -> None:
        if self._drawn:
            self._write(RESTORE_AND_ERASE)
            self._drawn = False

    def _write(self, text: str) -> None:
        assert self._file is not None
        with self._uncaptured():
            self._file.write(text)
            self._file.flush()

    @contextlib.contextmanager
    def _uncaptured(self) -> Iterator[None]:
        """Items wait in setup, while pytest captures output (terminal included): draw
        outside it, as pytest's live logging does."""
        if self._capture is None:
            yield
        else:
            with self._capture.global_and_fixture_disabled():
                yield
