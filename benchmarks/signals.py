"""How fast a run ends on SIGINT or SIGTERM, and what it keeps.

A generated suite runs through real pytest (a subprocess in a temporary directory, this
checkout's plugin first on PYTHONPATH) against the test server in
``tests/openai_server.py``: the first half of the cases are answered at once, the rest
only after a minute. Once pytest has printed the report of every answered item, the run
gets SIGINT or SIGTERM; the figure is the time from the signal to the process's exit.
Each is set against a reference measured here the same way: the same run answered in
full, from the report of its last item to its exit (what the session's end costs without
a signal: the gate, the results file, JUnit, HTML, Markdown). Each signal several times,
in one process and under ``-n 2``. Every interrupted run must exit as interrupted, with
no traceback, and leave a valid results file holding exactly the answered items (and
JUnit, HTML and Markdown). Prints the runs, then PASS or FAIL for each check; exits 0
only when every check passes.

    python3 benchmarks/signals.py           # each signal 3 times in each mode, about 2 min
    python3 benchmarks/signals.py --quick   # SIGINT in one process, SIGTERM under -n 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test server lives in the repo's tests package

from benchmarks.engine import child_environment  # noqa: E402
from pytest_llmeval.results.saved_run import ResultsFileError, SavedRun  # noqa: E402
from tests.openai_server import OpenAIServer, Reply, Request  # noqa: E402

TARGET_S = 10.0  # the promise: a signalled run exits within this
SLOW_DELAY_S = 60.0  # the unanswered half: far longer than any run here lasts
HANG_BOUND_S = 60.0  # a run still going this long after its signal is killed: a hang
INTERRUPTED = 2  # pytest.ExitCode.INTERRUPTED
OUTPUTS = ["--llm-save=run.json", "--junitxml=junit.xml", "--llm-html=report.html",
           "--llm-markdown=summary.md"]  # fmt: skip
COMMON_FLAGS = ["-v", "-p", "no:cacheprovider", "-p", "no:langsmith_plugin"]
if importlib.util.find_spec("pytest_randomly") is not None:
    COMMON_FLAGS += ["-p", "no:randomly"]
MODES = {"one process": [], "-n 2": ["-n", "2"]}


@dataclass(frozen=True)
class Check:
    name: str
    measured: str
    met: bool | None  # None: not judged (--quick's timings)


@dataclass(frozen=True)
class Run:
    label: str
    exit_status: int
    # From the signal (or, for the clean reference, from its last item's report) to exit.
    tail_s: float
    answered: int  # items whose report was printed before the signal
    output: str
    directory: Path


def write_project(directory: Path, cases: int, url: str) -> None:
    directory.mkdir(parents=True)
    (directory / "pyproject.toml").write_text(
        f'[tool.pytest.ini_options]\nllmeval_models = "m1"\n'
        f'[tool.llmeval.models.m1]\nbase_url = "{url}"\n'
    )
    lines = ["suite: signals", 'prompt: {user: "case {n}"}', "cases:"]
    lines += [f"  - {{id: c{n}, inputs: {{n: {n}}}, expected: {{n: {n}}}}}" for n in range(cases)]
    (directory / "signals.llmeval.yaml").write_text("\n".join(lines) + "\n")


def endpoint(fast: int, slow: bool) -> Callable[[Request], Reply]:
    """Case n answered right: at once for n < fast, else after SLOW_DELAY_S when ``slow``."""

    def reply(request: Request) -> Reply:
        n = int(request.last_user_content.split()[-1])
        late = slow and n >= fast
        return Reply(content=json.dumps({"n": n}), delay=SLOW_DELAY_S if late else 0.0)

    return reply


def run_pytest(
    label: str, directory: Path, flags: list[str], wait_for: int, sig: signal.Signals | None
) -> Run:
    """One pytest run; with ``sig``, sent once ``wait_for`` items have printed PASSED."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", *COMMON_FLAGS, *flags, *OUTPUTS],
        cwd=directory, env=child_environment(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in process.stdout or ():
            lines.append((time.perf_counter(), line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + HANG_BOUND_S
    while time.monotonic() < deadline and process.poll() is None:
        if sum("PASSED" in line for _, line in list(lines)) >= wait_for:
            break
        time.sleep(0.01)
    answered = sum("PASSED" in line for _, line in list(lines))
    started = time.perf_counter()
    if sig is not None:
        process.send_signal(sig)
    try:
        process.wait(timeout=HANG_BOUND_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    ended = time.perf_counter()
    reader.join(timeout=10)
    if sig is None:  # the clean reference: from its last item's report to its exit
        started = max((t for t, line in lines if "PASSED" in line), default=ended)
    output = "".join(line for _, line in lines)
    return Run(label, process.returncode, ended - started, answered, output, directory)


def checks_of(runs: list[Run], fast: int) -> list[Check]:
    found = []
    for run in runs:
        tracebacks = run.output.count("Traceback")
        found.append(Check(
            f"{run.label}: exits as interrupted, no traceback",
            f"exit status {run.exit_status}, {tracebacks} tracebacks",
            run.exit_status == INTERRUPTED and tracebacks == 0,
        ))  # fmt: skip
        found.append(kept(run, fast))
    return found


def kept(run: Run, fast: int) -> Check:
    """The results file is valid and holds every answered item (and no other); the other
    reports are there."""
    name = f"{run.label}: results file holds every finished record"
    try:
        saved = SavedRun.load(run.directory / "run.json")
        ET.parse(run.directory / "junit.xml")
        html = (run.directory / "report.html").read_text()
        markdown = (run.directory / "summary.md").read_text()
    except (OSError, ResultsFileError, ET.ParseError) as exc:
        return Check(name, f"{type(exc).__name__}: {exc}", False)
    cases = sorted((r.case for r in saved.records), key=lambda case: int(case[1:]))
    wanted = [f"c{n}" for n in range(fast)]
    met = (cases == wanted and all(r.outcome == "pass" for r in saved.records)
           and "c0" in html and "## pytest-llmeval" in markdown)  # fmt: skip
    return Check(name, f"{len(cases)} records of {run.answered} answered; reports written", met)


def timing(label: str, tails: list[float], reference: float, quick: bool) -> Check:
    worst = max(tails)
    measured = (f"max {worst:.2f} s, median {statistics.median(tails):.2f} s over {len(tails)}; "
                f"{worst / reference:.1f}x the clean exit's {reference:.2f} s")  # fmt: skip
    return Check(f"{label}: exits within {TARGET_S:g} s of the signal", measured,
                 None if quick else worst <= TARGET_S)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one SIGINT and one SIGTERM run, timings not judged")  # fmt: skip
    quick = parser.parse_args(argv).quick
    cases = 8 if quick else 40
    fast = cases // 2
    repeats = 1 if quick else 3
    plan = ([("one process", signal.SIGINT), ("-n 2", signal.SIGTERM)] if quick else
            [(mode, sig) for mode in MODES for sig in (signal.SIGINT, signal.SIGTERM)])  # fmt: skip
    print(f"{cases} cases, {fast} answered at once, the rest after {SLOW_DELAY_S:g} s; "
          f"the signal once {fast} have reported")  # fmt: skip
    started = time.perf_counter()
    found: list[Check] = []
    runs: list[Run] = []
    timings: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="llmeval-signals-") as tmp, OpenAIServer() as server:
        references = {}
        for mode in dict.fromkeys(mode for mode, _ in plan):
            server.on("m1", endpoint(fast, slow=False))
            directory = Path(tmp) / f"clean {mode}"
            write_project(directory, cases, server.url)
            clean = run_pytest(f"clean, {mode}", directory, MODES[mode], cases, None)
            references[mode] = clean.tail_s
            print(f"{clean.label}: exit status {clean.exit_status}, "
                  f"{clean.tail_s:.2f} s from the last report to the exit")  # fmt: skip
            found.append(
                Check(
                    f"{clean.label}: every item passes",
                    f"exit status {clean.exit_status}",
                    clean.exit_status == 0,
                )
            )
        server.on("m1", endpoint(fast, slow=True))
        for mode, sig in plan:
            tails = []
            for n in range(repeats):
                label = f"{sig.name}, {mode} #{n + 1}"
                directory = Path(tmp) / label.replace("#", "")
                write_project(directory, cases, server.url)
                run = run_pytest(label, directory, MODES[mode], fast, sig)
                print(f"{run.label}: {run.answered} answered, exit status {run.exit_status} "
                      f"{run.tail_s:.2f} s after the signal")  # fmt: skip
                runs.append(run)
                tails.append(run.tail_s)
            timings.append(timing(f"{sig.name}, {mode}", tails, references[mode], quick))
        found += checks_of(runs, fast) + timings  # before the directories go
    width = max(len(check.name) for check in found)
    print()
    for check in found:
        verdict = "skip" if check.met is None else "PASS" if check.met else "FAIL"
        print(f"{verdict}  {check.name:<{width}}  {check.measured}")
    failed = sum(check.met is False for check in found)
    print(f"\n{len(found)} checks, {failed} failed, in {time.perf_counter() - started:.0f} s")
    for run in runs:
        if run.exit_status != INTERRUPTED or "Traceback" in run.output:
            print(f"\n--- {run.label}: exit status {run.exit_status}, output ends:\n")
            print("\n".join(run.output.splitlines()[-30:]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
