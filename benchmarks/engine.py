"""Benchmarks of the evaluation engine: concurrency, replay, memory and faults.

Every figure is one pytest run in a subprocess against the scriptable OpenAI-compatible test
server, in a temporary directory holding a generated suite and pyproject.toml. The script prints
the runs, then each target with PASS or FAIL, and exits 0 only when every target is met.

    python3 benchmarks/engine.py           # full size, about 4 minutes
    python3 benchmarks/engine.py --quick   # 20 cases per model; only the size-free checks
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test server lives in the repo's tests package

from tests.openai_server import OpenAIServer, Reply, Request  # noqa: E402

DELAY = 0.2  # seconds the server takes per answer (targets 1, 2 and 4)
CONCURRENCY = 32
MAX_RETRIES = 10
FAULT_SEED = 20240611
RATE_LIMITED_SHARE = 0.20  # answered 429 with Retry-After: 0.1
SERVER_ERROR_SHARE = 0.05  # answered 500

WALL_VS_IDEAL = 1.3
SERIAL_VS_CONCURRENT = 20.0
REPLAY_VS_PLAIN = 1.5
PEAK_LIMIT_MB = 300.0
FAULTS_VS_CLEAN = 2.0

# Runs a module (`-m pytest`) or a script in this very process, as `python` would, and at
# exit writes the process's peak resident set (kB) to the file named by its first argument.
# VmHWM is read rather than ru_maxrss: on Linux, ru_maxrss of an exec'd child starts at its
# parent's peak (the kernel carries the old image's high-water mark across exec), so it
# would report this script's own size, server and all. VmHWM belongs to the new process
# image only. Linux only, like /proc.
PEAK_RSS_WRAPPER = """
import atexit, runpy, sys
peak_file = sys.argv.pop(1)
def write_peak():
    with open("/proc/self/status") as status:
        kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(peak_file, "w") as out:
        out.write(kb)
atexit.register(write_peak)
if sys.argv[1] == "-m":
    del sys.argv[1]
    runpy.run_module(sys.argv.pop(1), run_name="__main__", alter_sys=True)
else:
    sys.argv.pop(0)
    runpy.run_path(sys.argv[0], run_name="__main__")
"""

# Flags every run shares; pytest-randomly would reorder items, so it is off when installed.
COMMON_FLAGS = ["-q", "-p", "no:cacheprovider"]
if importlib.util.find_spec("pytest_randomly") is not None:
    COMMON_FLAGS += ["-p", "no:randomly"]


@dataclass(frozen=True)
class Size:
    cases: int  # cases per model in targets 1, 2 and 4
    models: int
    memory_cases: int  # cases of the one-model suite in target 3
    full: bool  # the timing and memory targets are judged only at full size


FULL = Size(cases=200, models=3, memory_cases=10_000, full=True)
QUICK = Size(cases=20, models=3, memory_cases=20, full=False)


@dataclass(frozen=True)
class Run:
    label: str
    expected_passed: int
    exit_status: int
    summary: str  # pytest's final "N passed in Xs" line
    wall_s: float
    peak_mb: float | None  # None when the child died before reporting it
    requests: int  # chat completions the server received during the run
    most_in_flight: int  # the most it was answering at once, over all models
    output_tail: str

    @property
    def correct(self) -> bool:
        """Exit status 0 and every item passed: otherwise the run's figures mean nothing."""
        counts = {word: int(n) for n, word in re.findall(r"(\d+) ([a-z]+)", self.summary)}
        outcomes = {word: n for word, n in counts.items() if not word.startswith("warning")}
        return self.exit_status == 0 and outcomes == {"passed": self.expected_passed}


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    limit: str
    verdict: str  # PASS, FAIL or "skip" (not judged in a quick run)


# -- the server's side ---------------------------------------------------------------------


def right_answer(request: Request) -> str:
    """The suite sends n as the whole user message and expects {"n": n} back."""
    return json.dumps({"n": int(request.last_user_content)})


def answer_after(delay: float) -> Callable[[Request], Reply]:
    return lambda request: Reply(content=right_answer(request), delay=delay)


class FaultyModel:
    """Fails a fixed share of requests with 429 or 500, drawn from a seeded generator.

    The server calls this from many threads at once; the lock keeps the draws one sequence.
    """

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.statuses: Counter[int] = Counter()

    def __call__(self, request: Request) -> Reply:
        with self._lock:
            draw = self._random.random()
            status = 429 if draw < RATE_LIMITED_SHARE else 200
            if RATE_LIMITED_SHARE <= draw < RATE_LIMITED_SHARE + SERVER_ERROR_SHARE:
                status = 500
            self.statuses[status] += 1
        if status == 429:
            return Reply(status=429, headers={"Retry-After": "0.1"})
        if status == 500:
            return Reply(status=500)
        return Reply(content=right_answer(request), delay=DELAY)


# -- projects and runs ---------------------------------------------------------------------


def suite_text(name: str, cases: int) -> str:
    """A suite of ``cases`` cases: case n sends n and expects {"n": n}."""
    lines = [f"suite: {name}", "prompt:", "  system: Return the JSON.", '  user: "{n}"',
             "response_format: json", "cases:"]  # fmt: skip
    for n in range(cases):
        lines += [f"  - id: c{n}", f"    inputs: {{n: {n}}}", f"    expected: {{n: {n}}}"]
    return "\n".join(lines) + "\n"


def write_suite_project(
    directory: Path, cases: int, models: int, server_url: str, concurrency: int = CONCURRENCY
) -> int:
    """A suite of ``cases`` cases run on ``models`` models; returns the number of items."""
    directory.mkdir()
    (directory / "bench.llmeval.yaml").write_text(suite_text("bench", cases))

    names = [f"m{i}" for i in range(models)]
    toml = [f'[tool.pytest.ini_options]\nllmeval_models = "{",".join(names)}"\n']
    for name in names:
        toml.append(
            f"[tool.llmeval.models.{name}]\n"
            f'model = "{name}"\n'
            f'base_url = "{server_url}"\n'
            "params = {temperature = 0}\n"
            "price = {input_per_1k = 0.001, output_per_1k = 0.002}\n"
            f"concurrency = {concurrency}\n"
        )
    (directory / "pyproject.toml").write_text("\n".join(toml))
    return cases * models


def write_plain_project(directory: Path, tests: int) -> int:
    """``tests`` trivial parametrized tests: what pytest itself costs for that many items."""
    directory.mkdir()
    (directory / "test_plain.py").write_text(
        "import pytest\n\n\n"
        f'@pytest.mark.parametrize("i", range({tests}))\n'
        "def test_x(i):\n"
        "    assert i >= 0\n"
    )
    (directory / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    return tests


def child_environment(pycache: Path | None = None) -> dict[str, str]:
    """This environment, minus the caller's PYTEST_* settings, running this checkout's plugin.

    The repo root goes first on PYTHONPATH so the plugin measured is the working tree's,
    whatever copy the installed entry point would otherwise import. With ``pycache``,
    bytecode is cached there (not beside the sources), as in a usual setup: without it
    every run compiles every module, and pytest rewrites the assertions of every plugin's
    modules, a cost both sides of a ratio would pay and neither owns.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def last_summary_line(output: str) -> str:
    for line in reversed(output.splitlines()):
        if re.search(r" in \d+(\.\d+)?s\b", line):
            return line.strip("= ")
    return "(no summary line)"


def run_pytest(
    label: str,
    directory: Path,
    expected_passed: int,
    server: OpenAIServer,
    flags: Sequence[str] = (),
) -> Run:
    peak_file = directory.parent / f"{directory.name}.peak-kb"
    peak_file.unlink(missing_ok=True)
    command = [sys.executable, "-c", PEAK_RSS_WRAPPER, str(peak_file), "-m", "pytest",
               *COMMON_FLAGS, *flags]  # fmt: skip
    server.clear_requests()
    print(f"  {label} ...", end="", flush=True)
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=directory, env=child_environment(), capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    output = done.stdout + done.stderr
    run = Run(
        label=label,
        expected_passed=expected_passed,
        exit_status=done.returncode,
        summary=last_summary_line(done.stdout),
        wall_s=wall,
        peak_mb=int(peak_file.read_text()) / 1024 if peak_file.exists() else None,
        requests=server.calls(),
        most_in_flight=server.max_in_flight(),
        output_tail="\n".join(output.splitlines()[-15:]),
    )
    print(f" {wall:.2f} s, {run.summary}")
    return run


def llm_flags(concurrency: int, record: str, max_retries: int | None = None) -> list[str]:
    flags = [f"--llm-concurrency={concurrency}", f"--llm-record={record}"]
    if max_retries is not None:
        flags.append(f"--llm-max-retries={max_retries}")
    return flags


# -- the scenarios -------------------------------------------------------------------------


def run_all(size: Size, root: Path, server: OpenAIServer) -> tuple[dict[str, Run], FaultyModel]:
    """Every run, in an order where each replay follows the recording it reads."""
    runs: dict[str, Run] = {}

    matrix = root / "matrix"
    items = write_suite_project(matrix, size.cases, size.models, server.url)
    server.on_any(answer_after(DELAY))
    runs["c32"] = run_pytest("record, c=32", matrix, items, server, llm_flags(CONCURRENCY, "all"))
    runs["c1"] = run_pytest("record, c=1", matrix, items, server, llm_flags(1, "all"))
    runs["replay"] = run_pytest("replay", matrix, items, server, llm_flags(CONCURRENCY, "none"))
    plain = root / "plain"
    runs["plain"] = run_pytest("plain pytest", plain, write_plain_project(plain, items), server)

    faults = root / "faults"
    items = write_suite_project(faults, size.cases, size.models, server.url)
    faulty = FaultyModel(FAULT_SEED)
    server.on_any(faulty)
    runs["faults"] = run_pytest(
        "faults, c=32", faults, items, server, llm_flags(CONCURRENCY, "all", MAX_RETRIES)
    )

    memory = root / "memory"
    items = write_suite_project(memory, size.memory_cases, 1, server.url)
    server.on_any(answer_after(0.0))
    runs["mem-record"] = run_pytest(
        "memory: record", memory, items, server, llm_flags(CONCURRENCY, "all")
    )
    runs["mem-replay"] = run_pytest(
        "memory: replay", memory, items, server, llm_flags(CONCURRENCY, "none")
    )
    plain = root / "memory-plain"
    runs["mem-plain"] = run_pytest(
        "memory: plain pytest", plain, write_plain_project(plain, items), server
    )
    return runs, faulty


def judge(met: bool, runs: Sequence[Run], size: Size, needs_full_size: bool = True) -> str:
    if not all(run.correct for run in runs):
        return "FAIL"  # a figure from a run that went wrong means nothing
    if needs_full_size and not size.full:
        return "skip"
    return "PASS" if met else "FAIL"


def targets(size: Size, runs: dict[str, Run]) -> list[Target]:
    c32, c1, replay, plain = runs["c32"], runs["c1"], runs["replay"], runs["plain"]
    faults, mem_replay = runs["faults"], runs["mem-replay"]
    ideal = c32.expected_passed * DELAY / CONCURRENCY
    # What a run takes beyond plain pytest over as many items (interpreter start-up, plugin
    # imports, collection, reporting, exit: about 2 s here, whatever the engine does) is
    # the time its requests took; the ideal and the ratios are about that part.
    c32_net, c1_net, faults_net = (run.wall_s - plain.wall_s for run in (c32, c1, faults))
    serial_ratio = c1_net / c32_net
    replay_ratio = replay.wall_s / plain.wall_s
    faults_ratio = faults_net / c32_net
    peak = mem_replay.peak_mb
    plain_peak = runs["mem-plain"].peak_mb
    wrong = [run.label for run in runs.values() if not run.correct]
    return [
        Target(
            "every run exits 0 with every item passed",
            f"{len(wrong)} of {len(runs)} wrong",
            "",
            "FAIL" if wrong else "PASS",
        ),
        Target(
            f"1  c=32 net wall <= {WALL_VS_IDEAL} x ideal ({ideal:.2f} s)",
            f"{c32_net:.2f} s",
            f"{WALL_VS_IDEAL * ideal:.2f} s",
            judge(c32_net <= WALL_VS_IDEAL * ideal, [c32, plain], size),
        ),
        Target(
            f"1  c=1 net wall >= {SERIAL_VS_CONCURRENT:g} x c=32 net wall",
            f"{serial_ratio:.1f} x",
            f">= {SERIAL_VS_CONCURRENT:g} x",
            judge(serial_ratio >= SERIAL_VS_CONCURRENT, [c1, c32, plain], size),
        ),
        Target(
            f"2  replay wall <= {REPLAY_VS_PLAIN} x plain pytest",
            f"{replay_ratio:.2f} x",
            f"<= {REPLAY_VS_PLAIN} x",
            judge(replay_ratio <= REPLAY_VS_PLAIN, [replay, plain], size),
        ),
        Target(
            "2  replay sends no request",
            f"{replay.requests} requests",
            "0",
            judge(replay.requests == 0, [replay], size, needs_full_size=False),
        ),
        Target(
            f"3  replay of {mem_replay.expected_passed} items: peak RSS < {PEAK_LIMIT_MB:g} MB",
            f"{megabytes(peak)} (plain {megabytes(plain_peak)})",
            f"< {PEAK_LIMIT_MB:g} MB",
            judge(peak is not None and peak < PEAK_LIMIT_MB, [mem_replay], size),
        ),
        Target(
            "4  faults: every item passes",
            faults.summary,
            f"{faults.expected_passed} passed",
            judge(True, [faults], size, needs_full_size=False),
        ),
        Target(
            f"4  faults net wall <= {FAULTS_VS_CLEAN:g} x fault-free c=32 net wall",
            f"{faults_ratio:.2f} x",
            f"<= {FAULTS_VS_CLEAN:g} x",
            judge(faults_ratio <= FAULTS_VS_CLEAN, [faults, c32, plain], size),
        ),
    ]


def megabytes(value: float | None) -> str:
    return "? MB" if value is None else f"{value:.0f} MB"


# -- the report ----------------------------------------------------------------------------


def print_runs(runs: dict[str, Run]) -> None:
    header = f"{'run':<22}{'items':>7}{'wall s':>9}{'peak MB':>9}{'requests':>10}{'in flight':>11}"
    print(f"\n{header}  summary")
    for run in runs.values():
        peak = "?" if run.peak_mb is None else f"{run.peak_mb:.0f}"
        wrong = "" if run.correct else "  <- WRONG"
        print(
            f"{run.label:<22}{run.expected_passed:>7}{run.wall_s:>9.2f}{peak:>9}"
            f"{run.requests:>10}{run.most_in_flight:>11}  {run.summary}{wrong}"
        )
    for run in runs.values():
        if not run.correct:
            print(f"\n--- {run.label}: exit status {run.exit_status}, output ends:\n")
            print(run.output_tail)


def print_figures(runs: dict[str, Run], faulty: FaultyModel) -> None:
    c32, plain = runs["c32"], runs["plain"]
    ideal = c32.expected_passed * DELAY / CONCURRENCY
    # Plain pytest over as many items is the floor any run pays (interpreter start, plugin
    # imports, collection, exit); what c=32 takes beyond it is the requests and the engine.
    net = c32.wall_s - plain.wall_s
    print(
        f"\nc=32: ideal {ideal:.2f} s; whole run {c32.wall_s:.2f} s ({c32.wall_s / ideal:.2f} x"
        f" ideal); plain pytest for as many items {plain.wall_s:.2f} s; net {net:.2f} s"
    )
    statuses = ", ".join(f"{n} x {status}" for status, n in sorted(faulty.statuses.items()))
    print(f"fault run, answers served: {statuses}")


def print_targets(found: list[Target]) -> None:
    print(f"\n{'target':<52}{'measured':>22}{'limit':>12}  verdict")
    for target in found:
        print(f"{target.name:<52}{target.measured:>22}{target.limit:>12}  {target.verdict}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="20 cases per model everywhere; timing and memory targets are not judged",
    )
    size = QUICK if parser.parse_args(argv).quick else FULL
    print(f"{size.cases} cases x {size.models} models; memory: {size.memory_cases} cases x 1 model")
    with tempfile.TemporaryDirectory(prefix="llmeval-bench-") as tmp, OpenAIServer() as server:
        runs, faulty = run_all(size, Path(tmp), server)
    print_runs(runs)
    print_figures(runs, faulty)
    found = targets(size, runs)
    print_targets(found)
    return 1 if any(target.verdict == "FAIL" for target in found) else 0


if __name__ == "__main__":
    sys.exit(main())
