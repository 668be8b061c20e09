"""Soak test of the engine: thousands of requests against an endpoint that misbehaves.

A generated suite runs through real pytest (a subprocess in a temporary directory, this
checkout's plugin first on PYTHONPATH) against the fault-injecting test server in
``tests/openai_server.py``: a quarter of all attempts meet a fault drawn from a seed
(connection resets, hangs, trickles, bodies cut short, 429s with and without Retry-After,
429 storms, 500s and 503s, JSON cut short, JSON that is no chat completion, no choices).
The plan says, for every item, how its request ends through the engine's retries (429s
on their own allowance); the run must agree item by item. Then the run again with
``--llm-record=new``, which must ask again exactly the items that errored. All of it in
one process, and again under ``-n 2`` (pytest-xdist). Prints the runs, then PASS or FAIL
for each check; exits 0 only when every check passes.

    python3 benchmarks/soak.py           # 2,000 requests (2 models x 1,000 cases)
    python3 benchmarks/soak.py --quick   # 200 requests (2 models x 100 cases)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test server lives in the repo's tests package

from benchmarks.engine import child_environment, last_summary_line, suite_text  # noqa: E402
from tests.openai_server import (  # noqa: E402
    FaultPlan,
    Faulty,
    OpenAIServer,
    Outcome,
    Reply,
    Request,
    request_key,
)

FAULT_RATE = 0.25  # share of attempts that meet a fault
FAULT_SEED = 20250115
MAX_RETRIES = 2  # --llm-max-retries: retries of faults other than 429s
# --llm-rate-limit-retries: retries of 429s, on their own allowance (under the default 10
# so that storms spend it and end in errors). An item's attempts: at most 1 + both.
RATE_LIMIT_RETRIES = 3
TIMEOUT_S = 1.0  # --llm-timeout: each attempt's deadline (hangs and trickles end there)
CONCURRENCY = 32
ANSWER_DELAY_S = 0.01  # the endpoint's time for an answer
WRONG_EVERY = 10  # case n with n % WRONG_EVERY == WRONG_AT is answered wrong: a miss
WRONG_AT = 7
MODELS = ("m0", "m1")

# pytest's summary words for one ("1 error") and for more ("2 errors").
SINGULAR = {"error": "errors", "warning": "warnings"}

COMMON_FLAGS = ["-q", "-p", "no:cacheprovider", "-p", "no:langsmith_plugin"]
if importlib.util.find_spec("pytest_randomly") is not None:
    COMMON_FLAGS += ["-p", "no:randomly"]


@dataclass(frozen=True)
class Item:
    model: str
    case: int

    @property
    def key(self) -> str:
        """Its request's name in the plan (the model and the user message, as the server
        sees them)."""
        return f"{self.model}\0{self.case}"

    @property
    def wrong(self) -> bool:
        return self.case % WRONG_EVERY == WRONG_AT


def answer_for(case: int) -> str:
    """What the endpoint answers case n (when no fault is planned): {"n": n}, or off by one
    for the cases meant to miss."""
    return json.dumps({"n": case + 1 if case % WRONG_EVERY == WRONG_AT else case})


def endpoint(request: Request) -> Reply:
    return Reply(content=answer_for(int(request.last_user_content)), delay=ANSWER_DELAY_S)


@dataclass(frozen=True)
class Run:
    label: str
    exit_status: int
    wall_s: float
    output: str
    counts: dict[str, int]  # pytest's summary: passed, missed, errors, ...
    records: dict[Item, dict[str, Any]]  # from --llm-save
    requests: Counter[str]  # chat completions received, per plan key
    served: Counter[str]  # what the server sent: "answer" or the fault kind

    @property
    def summary(self) -> str:
        return last_summary_line(self.output)


def write_project(directory: Path, cases: int, url: str) -> list[Item]:
    directory.mkdir(parents=True)
    (directory / "soak.llmeval.yaml").write_text(suite_text("soak", cases))
    toml = [f'[tool.pytest.ini_options]\nllmeval_models = "{",".join(MODELS)}"\n']
    for name in MODELS:
        toml.append(f'[tool.llmeval.models.{name}]\nmodel = "{name}"\nbase_url = "{url}"\n'
                    "params = {temperature = 0}\n")  # fmt: skip
    (directory / "pyproject.toml").write_text("\n".join(toml))
    return [Item(model, n) for model in MODELS for n in range(cases)]


def run_pytest(
    label: str, directory: Path, server: OpenAIServer, faulty: Faulty, flags: Sequence[str]
) -> Run:
    server.clear_requests()
    faulty.reset_counts()
    results = directory / f"results-{len(list(directory.glob('results-*.json')))}.json"
    command = [
        sys.executable, "-m", "pytest", *COMMON_FLAGS, f"--llm-concurrency={CONCURRENCY}",
        f"--llm-max-retries={MAX_RETRIES}", f"--llm-rate-limit-retries={RATE_LIMIT_RETRIES}",
        f"--llm-timeout={TIMEOUT_S}",
        "--llm-record=new", f"--llm-save={results.name}", *flags,
    ]  # fmt: skip
    print(f"  {label} ...", end="", flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=directory, env=child_environment(),
                          capture_output=True, text=True, check=False)  # fmt: skip
    wall = time.perf_counter() - start
    output = done.stdout + done.stderr
    said = re.findall(r"(\d+) ([a-z]+)", last_summary_line(output))
    counts = {SINGULAR.get(word, word): int(n) for n, word in said}
    records: dict[Item, dict[str, Any]] = {}
    if results.exists():
        for record in json.loads(results.read_text())["records"]:
            records[Item(record["model"], int(record["case"].removeprefix("c")))] = record
    requests = Counter(request_key(r) for r in server.requests)
    run = Run(label, done.returncode, wall, output, counts, records, requests,
              Counter(faulty.served))  # fmt: skip
    print(f" {wall:.1f} s, {run.summary}")
    return run


@dataclass(frozen=True)
class Check:
    name: str
    measured: str
    met: bool


def expected_outcome(item: Item, outcome: Outcome) -> str:
    if not outcome.answered:
        return "error"
    return "miss" if item.wrong else "pass"


def recordings(directory: Path) -> dict[Item, str]:
    """Every recorded answer in the project's cache, by item."""
    found = {}
    for path in (directory / "llmeval-cache" / "soak").glob("*.json"):
        case, model = path.stem.split(".")[:2]
        found[Item(model, int(case.removeprefix("c")))] = json.loads(path.read_text())["answer"]
    return found


def checks_of(
    mode: str, items: list[Item], plan: FaultPlan, first: Run, second: Run, directory: Path
) -> list[Check]:
    outcomes = {item: plan.outcome(item.key, MAX_RETRIES, RATE_LIMIT_RETRIES) for item in items}
    expected = {item: expected_outcome(item, outcome) for item, outcome in outcomes.items()}
    errored = {item for item, outcome in expected.items() if outcome == "error"}
    found: list[Check] = []
    for run, asked in ((first, items), (second, sorted(errored, key=lambda i: i.key))):
        tally = {word: run.counts.get(word, 0) for word in ("passed", "missed", "errors")}
        accounted = sum(tally.values())
        found.append(Check(
            f"{run.label}: pass + miss + error = items",
            f"{tally['passed']} + {tally['missed']} + {tally['errors']} = {accounted} "
            f"of {len(items)}; results file {len(run.records)}",
            accounted == len(items) == len(run.records) and run.counts.get("failed", 0) == 0,
        ))  # fmt: skip
        wrong = [i for i in items if run.records.get(i, {}).get("outcome") != expected[i]]
        found.append(Check(f"{run.label}: each item's outcome as the fault plan implies",
                           f"{len(wrong)} differ", not wrong))  # fmt: skip
        allowance = 1 + MAX_RETRIES + RATE_LIMIT_RETRIES
        beyond = sum(max(0, n - allowance) for n in run.requests.values())
        found.append(Check(f"{run.label}: requests beyond the retry allowance",
                           str(beyond), beyond == 0))  # fmt: skip
        planned = Counter({i.key: outcomes[i].attempts for i in asked})
        off = sorted(set(planned) | set(run.requests), key=str)
        off = [k for k in off if planned[k] != run.requests[k]]
        found.append(Check(
            f"{run.label}: requests sent as the plan implies",
            f"{sum(run.requests.values())} sent, {sum(planned.values())} planned; "
            f"{len(off)} items off",
            not off,
        ))  # fmt: skip
        tracebacks = run.output.count("Traceback")
        found.append(Check(f"{run.label}: tracebacks in the output", str(tracebacks),
                           tracebacks == 0))  # fmt: skip
    again = {k for k in second.requests}
    found.append(Check(
        f"{mode}: --llm-record=new asks again exactly the errored items",
        f"{len(again)} asked again, {len(errored)} errored",
        again == {i.key for i in errored},
    ))  # fmt: skip
    replayed = [i for i in items if i not in errored and not second.records[i].get("cached")]
    found.append(Check(f"{mode}: every answered item replayed in the second run",
                       f"{len(replayed)} not replayed", not replayed))  # fmt: skip
    recorded = recordings(directory)
    answered = {i for i in items if i not in errored}
    not_answers = [i for i, text in recorded.items() if text != answer_for(i.case)]
    found.append(Check(
        f"{mode}: no fault recorded as an answer",
        f"{len(recorded)} recordings, {len(not_answers)} not the endpoint's answer, "
        f"{len(set(recorded) ^ answered)} items recorded or not against the plan",
        not not_answers and set(recorded) == answered,
    ))  # fmt: skip
    return found


def rate_limit_note(run: Run) -> str:
    """The summary's 429 count against what the server sent."""
    said = sum(int(n) for n in re.findall(r"answered 429 (\d+) time", run.output))
    sent = sum(n for kind, n in run.served.items() if kind.startswith("429"))
    in_records = sum(r.get("rate_limited", 0) for r in run.records.values())
    return (f"{run.label}: 429s sent {sent}; the summary counts {said}, the records "
            f"{in_records}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 requests instead of 2,000")
    cases = 100 if parser.parse_args(argv).quick else 1000
    plan = FaultPlan(rate=FAULT_RATE, seed=FAULT_SEED)
    faulty = Faulty(plan, endpoint)
    started = time.perf_counter()
    print(f"{cases} cases x {len(MODELS)} models = {cases * len(MODELS)} requests; "
          f"{FAULT_RATE:.0%} of attempts faulted (seed {FAULT_SEED}), "
          f"--llm-max-retries={MAX_RETRIES}, --llm-rate-limit-retries={RATE_LIMIT_RETRIES}, "
          f"--llm-timeout={TIMEOUT_S:g}")  # fmt: skip
    found: list[Check] = []
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="llmeval-soak-") as tmp, OpenAIServer() as server:
        server.on_any(faulty)
        for mode, flags in (("one process", []), ("xdist -n 2", ["-n", "2"])):
            directory = Path(tmp) / mode.split()[0]
            items = write_project(directory, cases, server.url)
            first = run_pytest(f"{mode}, live", directory, server, faulty, flags)
            second = run_pytest(f"{mode}, again", directory, server, faulty, flags)
            runs += [first, second]
            found += checks_of(mode, items, plan, first, second, directory)
    outcomes = Counter(
        expected_outcome(i, plan.outcome(i.key, MAX_RETRIES, RATE_LIMIT_RETRIES)) for i in items
    )  # fmt: skip
    print(f"\nthe plan: {outcomes['pass']} pass, {outcomes['miss']} miss, "
          f"{outcomes['error']} error")  # fmt: skip
    for run in runs:
        served = ", ".join(f"{kind} {n}" for kind, n in sorted(run.served.items()))
        print(f"{run.label}: served {served}")
    print()
    for run in runs:
        print(f"info  {rate_limit_note(run)}")
    width = max(len(check.name) for check in found)
    print()
    for check in found:
        print(f"{'PASS' if check.met else 'FAIL'}  {check.name:<{width}}  {check.measured}")
    print(f"\n{len(found)} checks, {sum(not c.met for c in found)} failed, "
          f"in {time.perf_counter() - started:.0f} s")  # fmt: skip
    for run in runs:
        if run.output.count("Traceback") or run.counts.get("failed"):
            print(f"\n--- {run.label}: exit status {run.exit_status}, output ends:\n")
            print("\n".join(run.output.splitlines()[-30:]))
    return 0 if all(check.met for check in found) else 1


if __name__ == "__main__":
    sys.exit(main())
