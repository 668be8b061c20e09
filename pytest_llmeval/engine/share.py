"""xdist workers sharing one run's requests: each is claimed by one worker, which publishes
its outcome for the others.

Every worker collects every item but runs only those xdist hands it, a few at a time, so
none knows in advance which answers it will need. Each worker therefore works through all
requests; the first to claim one (an exclusive file create) sends it, and a worker that
needs an answer another claimed reads the outcome file the claimant writes.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pytest_llmeval.engine.client import CallError, Completion
from pytest_llmeval.support.files import write_atomically


class RunShare:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def stop(self) -> None:
        """Tell every worker the run is over (the controller was interrupted): xdist asks
        them to stop only between items, and an item waiting for an answer would hold its
        worker until execnet interrupts it, five seconds later."""
        (self.directory / "stop").touch()

    def stopped(self) -> bool:
        return (self.directory / "stop").exists()

    def claim(self, key: str) -> bool:
        """True for exactly one process per key and run."""
        # Linked into place whole, with the claimant's pid in it: a claim is never empty.
        mine = self.directory / f"{key}.{os.getpid()}.{threading.get_ident()}"
        mine.write_text(str(os.getpid()))
        try:
            os.link(mine, self.directory / f"{key}.claim")
        except FileExistsError:
            return False
        finally:
            mine.unlink()
        return True

    def claimed(self, key: str) -> bool:
        """Whether a process of this run has claimed the key (and so will publish it)."""
        return (self.directory / f"{key}.claim").exists()

    def publish(self, key: str, outcome: Completion | CallError) -> None:
        payload: dict[str, Any] = (
            {
                "error": str(outcome),
                "attempts": outcome.attempts,
                "rate_limited": outcome.rate_limited,
                "in_flight": outcome.in_flight,
            }
            if isinstance(outcome, CallError)
            else {"completion": asdict(outcome)}
        )
        write_atomically(self.directory / f"{key}.done", json.dumps(payload))

    def outcome(self, key: str) -> Completion | CallError | None:
        """The published outcome, or None while there is none yet."""
        try:
            payload = json.loads((self.directory / f"{key}.done").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        if "error" in payload:
            return CallError(payload["error"], attempts=payload.get("attempts", 0),
                             rate_limited=payload.get("rate_limited", 0),
                             in_flight=payload.get("in_flight", 0))  # fmt: skip
        return Completion(**payload["completion"])

    def claimant_alive(self, key: str) -> bool:
        """False when the process that claimed the key has gone without publishing."""
        try:
            pid = int((self.directory / f"{key}.claim").read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True  # not ours to signal: alive
        return True
