"""The benchmark scripts keep working (their timings are judged only when run at full size)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT


def quick(script: str) -> str:
    """A benchmark script's --quick run: what it printed, once it exited 0."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_engine_benchmark_runs_and_every_run_in_it_is_right() -> None:
    out = quick("engine.py")
    assert "every run exits 0 with every item passed" in out
    assert "FAIL" not in out
    assert out.count("PASS") == 3, out  # right results, no request when replaying, faults


def test_the_langsmith_benchmark_runs_and_every_upload_in_it_arrives() -> None:
    out = quick("langsmith.py")
    assert "PASS  every item passed in every run" in out
    assert "PASS  every run arrived, once" in out
    assert "FAIL" not in out


def test_the_report_benchmark_runs_and_draws_every_answer() -> None:
    out = quick("report.py")
    assert "PASS  every page drawn has all 600 answers" in out
    assert out.count("skip") == 4, out  # the four ratios, judged at full size only


def test_the_verdicts_benchmark_runs_and_every_bound_holds() -> None:
    out = quick("verdicts.py")
    assert "FAIL" not in out
    # Targets 1 and 3 to 7 (2, the power table, has no bound).
    assert sum(line.startswith("PASS  ") for line in out.splitlines()) == 6, out


def test_the_soak_benchmark_accounts_for_every_item_under_faults() -> None:
    out = quick("soak.py")
    assert "FAIL" not in out
    # Five checks for each of the four runs, three for each mode (one process, xdist).
    assert sum(line.startswith("PASS  ") for line in out.splitlines()) == 26, out


def test_the_signals_benchmark_keeps_what_finished_on_each_signal() -> None:
    out = quick("signals.py")
    assert "FAIL" not in out
    # Two clean references, then exit status and results file for each of two signals.
    assert sum(line.startswith("PASS  ") for line in out.splitlines()) == 6, out
    assert out.count("skip") == 2, out  # the exit times, judged at full size only


def test_the_rate_limit_benchmark_meets_every_limit_without_an_error() -> None:
    out = quick("ratelimit.py")
    assert "FAIL" not in out
    # For each Retry-After style (seconds, date, none): no item errored, 429s counted.
    assert sum(line.startswith("PASS  ") for line in out.splitlines()) == 6, out
    assert out.count("skip  ") == 3, out  # the spans, judged at full size only


def test_the_overhead_benchmark_runs_and_prints_each_ratio() -> None:
    out = quick("overhead.py")
    assert re.search(r"^0 of \d+ runs wrong$", out, re.MULTILINE), out
    # Each ratio printed with its figures (judged at full size only).
    assert re.search(r"\(a\) CPU per request: pytest-llmeval [\d.]+ ms, bare SDK [\d.]+ ms: "
                     r"[\d.]+ x .* skip", out), out  # fmt: skip
    assert re.search(r"\(a\) net of plain pytest .*: [\d.]+ ms against the SDK's: [\d.]+ x", out)
    assert re.search(r"\(b\) replay wall: [\d.]+ s against plain pytest [\d.]+ s: [\d.]+ x", out)
    assert re.search(r"\(b\) replay peak RSS: \d+ MB against plain pytest \d+ MB: [\d.]+ x", out)
    assert re.search(r"\(c\) 10000 items replayed: [\d.]+ s wall, [\d.]+ s CPU, \d+ MB", out)
