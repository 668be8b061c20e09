"""Files written whole or not at all."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """A reader (another xdist worker, a later run, a person) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name no other writer uses (one file at a time per thread); mkstemp's exclusive
    # create costs four times as much here, for uniqueness this already has.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
