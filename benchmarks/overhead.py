"""What the plugin costs beyond the SDK and pytest themselves: CPU per request, replay.

(a) live: CPU per request of a pytest-llmeval run against the bare ``openai`` SDK
    (AsyncOpenAI, ``asyncio.gather`` under a semaphore of 64), both against the same
    server answering at once: target <= 1.3 x.
(b) replay: 40,000 recorded items (one suite, one model) against plain pytest over 40,000
    trivial tests: targets <= 1.3 x the wall and <= 1.5 x the peak RSS.
(c) 100,000 recorded items replayed in one run: wall and peak RSS (reported, no target).

Every figure is a subprocess; CPU is the child's user + system time
(``getrusage(RUSAGE_CHILDREN)``), peak memory its ``VmHWM``. Runs of the two sides of a
ratio alternate and the median is taken, since the machine may be shared.

    python3 benchmarks/overhead.py           # full size, about an hour (recording 140,000)
    python3 benchmarks/overhead.py --quick   # 200 requests, 2,000 and 10,000 items; minutes
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test server lives in the repo's tests package

from benchmarks.engine import (  # noqa: E402
    PEAK_RSS_WRAPPER,
    child_environment,
    write_plain_project,
    write_suite_project,
)
from tests.openai_server import OpenAIServer, Reply, Request  # noqa: E402

CONCURRENCY = 64
LIVE_VS_SDK = 1.3
REPLAY_VS_PLAIN = 1.3
PEAK_VS_PLAIN = 1.5

# The bare SDK, as a person would write it: every request at once under a semaphore.
SDK_SCRIPT = """
import asyncio, sys
import openai

async def main(url, count, concurrency):
    client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=2)
    slots = asyncio.Semaphore(concurrency)

    async def one(n):
        async with slots:
            response = await client.chat.completions.create(
                model="m0",
                messages=[{"role": "system", "content": "Return the JSON."},
                          {"role": "user", "content": str(n)}],
                extra_body={"temperature": 0, "response_format": {"type": "json_object"}},
            )
            return response.choices[0].message.content

    answers = await asyncio.gather(*(one(n) for n in range(count)))
    await client.close()
    assert all(answers), "an empty answer"

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""

COMMON_FLAGS = ["-q", "-p", "no:cacheprovider"]
if importlib.util.find_spec("pytest_randomly") is not None:
    COMMON_FLAGS += ["-p", "no:randomly"]


@dataclass(frozen=True)
class Size:
    requests: int  # (a)
    replay_items: int  # (b)
    large_items: int  # (c)
    repeats: int  # alternating runs of each side of a ratio
    full: bool


FULL = Size(requests=2_000, replay_items=40_000, large_items=100_000, repeats=3, full=True)
QUICK = Size(requests=200, replay_items=2_000, large_items=10_000, repeats=1, full=False)


@dataclass(frozen=True)
class Run:
    label: str
    ok: bool
    cpu_s: float
    wall_s: float
    peak_mb: float
    tail: str


def right_answer(request: Request) -> Reply:
    """The suite sends n as the whole user message and expects {"n": n} back, at once."""
    return Reply(content=json.dumps({"n": int(request.last_user_content)}))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(label: str, directory: Path, args: Sequence[str], passed: int | None) -> Run:
    """One child; ``passed`` is how many items pytest must report passed (None: not pytest)."""
    peak_file = directory.parent / f"{directory.name}.peak-kb"
    peak_file.unlink(missing_ok=True)
    command = [sys.executable, "-c", PEAK_RSS_WRAPPER, str(peak_file), *args]
    print(f"  {label} ...", end="", flush=True)
    cpu, start = children_cpu(), time.perf_counter()
    env = child_environment(directory.parent / "pycache")
    done = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu
    output = done.stdout + done.stderr
    ok = done.returncode == 0
    if passed is not None:
        summary = re.findall(r"(\d+) ([a-z]+)", output.splitlines()[-1] if output else "")
        outcomes = {word: int(n) for n, word in summary if not word.startswith("warning")}
        ok = ok and outcomes == {"passed": passed}
    peak = int(peak_file.read_text()) / 1024 if peak_file.exists() else float("nan")
    tail = "\n".join(output.splitlines()[-15:])
    print(f" {wall:.2f} s wall, {cpu:.2f} s CPU, {peak:.0f} MB{'' if ok else '  <- WRONG'}")
    return Run(label, ok, cpu, wall, peak, tail)


def warm_up(root: Path) -> None:
    """Fill the bytecode cache, so that no measured run pays for compiling (the first
    would otherwise, for whichever side of a ratio ran first): the SDK's modules, and the
    plugins' as pytest rewrites their assertions, which a collection imports."""
    env = child_environment(root / "pycache")
    subprocess.run([sys.executable, "-c", "import openai"], cwd=root, env=env, check=True)
    warm = root / "warm"
    write_plain_project(warm, 1)
    command = [sys.executable, "-m", "pytest", "--collect-only", *COMMON_FLAGS]
    subprocess.run(command, cwd=warm, env=env, check=True, capture_output=True)


def pytest_args(*flags: str) -> list[str]:
    return ["-m", "pytest", *COMMON_FLAGS, *flags]


def median(runs: Sequence[Run], field: str) -> float:
    return statistics.median(getattr(r, field) for r in runs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; nothing judged")
    size = QUICK if parser.parse_args(argv).quick else FULL
    record = [f"--llm-concurrency={CONCURRENCY}", "--llm-record=all"]
    replay = [f"--llm-concurrency={CONCURRENCY}", "--llm-record=none"]
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="llmeval-overhead-") as tmp, OpenAIServer() as server:
        root = Path(tmp)
        warm_up(root)
        server.on_any(right_answer)
        live, sdk_dir = root / "live", root / "sdk"
        write_suite_project(live, size.requests, 1, server.url, CONCURRENCY)
        sdk_dir.mkdir()
        (sdk_dir / "sdk.py").write_text(SDK_SCRIPT)
        sdk_args = ["sdk.py", server.url, str(size.requests), str(CONCURRENCY)]
        print(f"(a) {size.requests} requests, concurrency {CONCURRENCY}, answered at once")
        few = root / "plain-few"
        write_plain_project(few, size.requests)
        live_runs, sdk_runs, few_runs = [], [], []
        for _ in range(size.repeats):
            sdk_runs.append(run("bare SDK", sdk_dir, sdk_args, None))
            live_runs.append(run("pytest-llmeval", live, pytest_args(*record), size.requests))
            few_runs.append(run("plain pytest", few, pytest_args(), size.requests))
        runs += live_runs + sdk_runs + few_runs

        print(f"(b) {size.replay_items} items replayed against plain pytest")
        many, plain = root / "replay", root / "plain"
        write_suite_project(many, size.replay_items, 1, server.url, CONCURRENCY)
        write_plain_project(plain, size.replay_items)
        runs.append(run("record them", many, pytest_args(*record), size.replay_items))
        replay_runs, plain_runs = [], []
        for _ in range(size.repeats):
            plain_runs.append(run("plain pytest", plain, pytest_args(), size.replay_items))
            replay_runs.append(run("replay", many, pytest_args(*replay), size.replay_items))
        runs += replay_runs + plain_runs

        print(f"(c) {size.large_items} items replayed")
        large = root / "large"
        write_suite_project(large, size.large_items, 1, server.url, CONCURRENCY)
        runs.append(run("record them", large, pytest_args(*record), size.large_items))
        large_run = run("replay", large, pytest_args(*replay), size.large_items)
        runs.append(large_run)

    wrong = [r for r in runs if not r.ok]
    for r in wrong:
        print(f"\n--- {r.label} went wrong; its output ends:\n{r.tail}")
    per_request = {
        side: median(side_runs, "cpu_s") / size.requests * 1000
        for side, side_runs in (("plugin", live_runs), ("sdk", sdk_runs))
    }
    live_ratio = per_request["plugin"] / per_request["sdk"]
    # What pytest itself spends on as many items (start-up, collection, reports), for the
    # part of the plugin's figure that is neither the SDK's nor pytest's.
    pytest_ms = median(few_runs, "cpu_s") / size.requests * 1000
    net_ratio = (per_request["plugin"] - pytest_ms) / per_request["sdk"]
    wall_ratio = median(replay_runs, "wall_s") / median(plain_runs, "wall_s")
    peak_ratio = median(replay_runs, "peak_mb") / median(plain_runs, "peak_mb")

    verdicts: list[str] = []

    def verdict(met: bool) -> str:
        # A figure from a run that went wrong means nothing.
        found = "FAIL" if wrong else ("PASS" if met else "FAIL") if size.full else "skip"
        verdicts.append(found)
        return found

    print("\nfigures (medians)")
    print(
        f"(a) CPU per request: pytest-llmeval {per_request['plugin']:.2f} ms, "
        f"bare SDK {per_request['sdk']:.2f} ms: {live_ratio:.2f} x  "
        f"[limit {LIVE_VS_SDK} x]  {verdict(live_ratio <= LIVE_VS_SDK)}"
    )
    print(
        f"(a) net of plain pytest over {size.requests} trivial tests ({pytest_ms:.2f} ms an "
        f"item): {per_request['plugin'] - pytest_ms:.2f} ms against the SDK's: {net_ratio:.2f} x"
    )
    print(
        f"(b) replay wall: {median(replay_runs, 'wall_s'):.2f} s against plain pytest "
        f"{median(plain_runs, 'wall_s'):.2f} s: {wall_ratio:.2f} x  "
        f"[limit {REPLAY_VS_PLAIN} x]  {verdict(wall_ratio <= REPLAY_VS_PLAIN)}"
    )
    print(
        f"(b) replay peak RSS: {median(replay_runs, 'peak_mb'):.0f} MB against plain pytest "
        f"{median(plain_runs, 'peak_mb'):.0f} MB: {peak_ratio:.2f} x  "
        f"[limit {PEAK_VS_PLAIN} x]  {verdict(peak_ratio <= PEAK_VS_PLAIN)}"
    )
    print(
        f"(c) {size.large_items} items replayed: {large_run.wall_s:.2f} s wall, "
        f"{large_run.cpu_s:.2f} s CPU, {large_run.peak_mb:.0f} MB peak RSS"
    )
    print(f"{len(wrong)} of {len(runs)} runs wrong")
    return 1 if wrong or "FAIL" in verdicts else 0


if __name__ == "__main__":
    sys.exit(main())
