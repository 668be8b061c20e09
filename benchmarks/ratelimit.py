"""Rate limits at the limit: a run against an endpoint that allows R requests a second.

The test server in ``tests/openai_server.py`` answers through a token bucket (R requests
a second, a burst of a few) and refuses the rest with 429: with ``Retry-After`` in whole
seconds, as an HTTP date, or without it. A generated suite of N cases runs through real
pytest (a subprocess in a temporary directory, this checkout's plugin first on
PYTHONPATH) once per style; the bare ``openai`` SDK, with its default retries, sends the
same N requests at its own concurrency beside it, against the same server. The limit is
N / R seconds: no client can be answered faster. A figure is the requests' span at the
server (the first request's arrival to the last answer's) over the limit. Prints the runs,
then PASS or FAIL for each check; exits 0 only when every check passes.

    python3 benchmarks/ratelimit.py           # 600 requests at 20/s: 30 s each, about 3 min
    python3 benchmarks/ratelimit.py --quick   # 100 requests; spans printed, not judged
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test server lives in the repo's tests package

from benchmarks.engine import child_environment, last_summary_line, suite_text  # noqa: E402
from tests.openai_server import OpenAIServer, Reply, Request, RetryAfterStyle  # noqa: E402

RATE = 20.0  # requests a second the endpoint allows
BURST = 5  # requests the bucket lets through at once
ANSWER_DELAY_S = 0.1  # the endpoint's time for an answer
CONCURRENCY = 32  # --llm-concurrency, and the bare SDK's requests in flight
# Span over the limit, at most (full size only).
BOUNDS: dict[RetryAfterStyle, float] = {"seconds": 1.15, "date": 1.15, "none": 1.3}

COMMON_FLAGS = ["-q", "-p", "no:cacheprovider", "-p", "no:langsmith_plugin"]
if importlib.util.find_spec("pytest_randomly") is not None:
    COMMON_FLAGS += ["-p", "no:randomly"]


class Span:
    """When the first request arrived and the last answer left the handler."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.first = self.last = 0.0

    def answer(self, request: Request) -> Reply:
        with self._lock:
            self.first = self.first or time.perf_counter()
        reply = Reply(content=json.dumps({"n": int(request.last_user_content)}))
        time.sleep(ANSWER_DELAY_S)
        with self._lock:
            self.last = time.perf_counter()
        return reply

    @property
    def seconds(self) -> float:
        return self.last - self.first


@dataclass(frozen=True)
class Run:
    label: str
    style: RetryAfterStyle
    span_s: float
    wall_s: float
    answered: int
    errored: int
    refused: int  # 429s the server sent
    summary: str  # what the run said about them


def serve(server: OpenAIServer, style: RetryAfterStyle) -> Span:
    span = Span()
    server.on_any(span.answer)
    server.clear_requests()
    # The bucket is full at first, so the first request to arrive is one answered.
    server.rate_limit(RATE, burst=BURST, retry_after=style)
    return span


def write_project(directory: Path, cases: int, url: str) -> None:
    directory.mkdir(parents=True)
    (directory / "limited.llmeval.yaml").write_text(suite_text("limited", cases))
    (directory / "pyproject.toml").write_text(
        f'[tool.pytest.ini_options]\nllmeval_models = "m"\n\n'
        f'[tool.llmeval.models.m]\nmodel = "m"\nbase_url = "{url}"\n'
    )


def run_pytest(directory: Path, server: OpenAIServer, style: RetryAfterStyle) -> Run:
    span = serve(server, style)
    command = [sys.executable, "-m", "pytest", *COMMON_FLAGS, f"--llm-concurrency={CONCURRENCY}",
               "--llm-record=all"]  # fmt: skip
    label = f"pytest-llmeval, Retry-After {style}"
    print(f"  {label} ...", end="", flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=directory, env=child_environment(),
                          capture_output=True, text=True, check=False)  # fmt: skip
    wall = time.perf_counter() - start
    output = done.stdout + done.stderr
    counts = {word: int(n) for n, word in re.findall(r"(\d+) ([a-z]+)", last_summary_line(output))}
    said = [line for line in output.splitlines() if line.startswith("llmeval rate limits:")]
    run = Run(label, style, span.seconds, wall, counts.get("passed", 0),
              counts.get("error", 0) + counts.get("errors", 0), server.rate_limited(),
              "; ".join(said) or "(no rate-limit line)")  # fmt: skip
    print(f" {wall:.1f} s, {last_summary_line(output)}")
    if done.returncode != 0:
        print("\n".join(output.splitlines()[-15:]))
    return run


def run_sdk(server: OpenAIServer, style: RetryAfterStyle, cases: int) -> Run:
    """The bare SDK, its default retries, CONCURRENCY requests in flight."""
    import openai

    span = serve(server, style)
    label = f"openai SDK (c={CONCURRENCY}), Retry-After {style}"
    print(f"  {label} ...", end="", flush=True)

    async def ask_all() -> list[bool]:
        slots = asyncio.Semaphore(CONCURRENCY)
        async with openai.AsyncOpenAI(base_url=server.url, api_key="x") as sdk:

            async def one(n: int) -> bool:
                async with slots:
                    try:
                        await sdk.chat.completions.create(
                            model="m", messages=[{"role": "user", "content": str(n)}]
                        )
                    except openai.APIError:
                        return False
                    return True

            return await asyncio.gather(*(one(n) for n in range(cases)))

    start = time.perf_counter()
    answered = sum(asyncio.run(ask_all()))
    wall = time.perf_counter() - start
    print(f" {wall:.1f} s, {answered} answered, {cases - answered} errored")
    return Run(label, style, span.seconds, wall, answered, cases - answered,
               server.rate_limited(), "")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 requests instead of 600")
    quick = parser.parse_args(argv).quick
    cases = 100 if quick else 600
    limit = cases / RATE
    print(f"{cases} requests at {RATE:g}/s (a burst of {BURST}), answers in "
          f"{ANSWER_DELAY_S:g} s: the limit is {limit:g} s")  # fmt: skip
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="llmeval-ratelimit-") as tmp, OpenAIServer() as server:
        for style in BOUNDS:
            directory = Path(tmp) / style
            write_project(directory, cases, server.url)
            runs.append(run_pytest(directory, server, style))
        for style in BOUNDS:
            runs.append(run_sdk(server, style, cases))
    print()
    for run in runs:
        print(f"{run.label}: span {run.span_s:.1f} s = {run.span_s / limit:.2f}x the limit "
              f"(wall {run.wall_s:.1f} s); {run.answered} answered, {run.errored} errored, "
              f"{run.refused} 429s sent")  # fmt: skip
        if run.summary:
            print(f"    {run.summary}")
    checks: list[tuple[str, str, bool | None]] = []
    for run in runs[: len(BOUNDS)]:
        ratio = run.span_s / limit
        bound = BOUNDS[run.style]
        checks += [
            (f"{run.label}: no item errored", f"{run.errored} of {cases}",
             run.errored == 0 and run.answered == cases),
            (f"{run.label}: 429s received and counted", f"{run.refused} sent; {run.summary}",
             run.refused > 0 and f"answered 429 {run.refused} time" in run.summary),
            (f"{run.label}: span <= {bound:g}x the limit", f"{ratio:.2f}x",
             None if quick else ratio <= bound),
        ]  # fmt: skip
    print()
    for name, measured, met in checks:
        verdict = "skip" if met is None else "PASS" if met else "FAIL"
        print(f"{verdict}  {name}  {measured}")
    return 0 if all(met is not False for _, _, met in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
