"""The README's main command: the example suite replayed from its committed recordings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_example_suite_runs_offline_and_gives_the_recorded_table() -> None:
    # No key and nothing listening on the model's port: every answer must come from the
    # recordings (the suite's ini says --llm-record=none, so a missing one is an error).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLMEVAL_"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "example_suite", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    out = result.stdout
    # The 270M model misses every case, and the gate (0.9) says so with exit status 1.
    assert result.returncode == 1, out + result.stderr
    assert re.search(r"=+ 60 missed in [\d.]+s =+$", out.rstrip()), out
    assert "llmeval answers: 60 replayed from example_suite/llmeval-cache/, 0 called" in out
    assert "llmeval gate FAILED: product-reviews / local-gemma: accuracy 0.0%" in out
    # The table is the live run's, as the README shows it.
    shown = [line for line in README.splitlines() if line.startswith("local-gemma ")]
    replayed = [line for line in out.splitlines() if line.startswith("local-gemma ")]
    assert len(shown) == 1
    assert replayed == shown
