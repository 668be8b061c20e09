"""What sending results to LangSmith costs a run, and what LangSmith being away costs.

The engine benchmark's suite (200 cases x 3 models, answers recorded once, then
replayed), run with and without ``--llm-langsmith`` against the LangSmith-compatible
test server in ``tests/langsmith_service.py``, and with that server failing and hanging.
Each figure is one pytest run in a subprocess; ratios are against the run without
LangSmith in the same script.

    python3 benchmarks/langsmith.py           # 200 cases x 3 models
    python3 benchmarks/langsmith.py --quick   # 20 cases x 3 models; times not judged
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.engine import Run, answer_after, run_pytest, write_suite_project
from tests.langsmith_service import LangSmithServer, closed_port_url
from tests.openai_server import OpenAIServer

KEY = "lsv2-bench-key"
DELAY_S = 0.1  # the model's time per answer in the live runs
CONCURRENCY = 32
TIMEOUT_S = 5.0  # --llm-langsmith-timeout
# Targets. Live: the upload rides along while answers come, so it adds little. Replayed:
# the run itself is nearly free, so the upload is most of it; reported, loosely bounded.
# Away: LangSmith down, failing or hanging costs at most the bounded wait.
LIVE_UPLOAD_VS_NONE = 1.15
REPLAY_UPLOAD_VS_NONE = 3.0
AWAY_OVER_NONE_S = TIMEOUT_S + 1.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 cases per model")
    args = parser.parse_args(argv)
    cases, models = (20, 3) if args.quick else (200, 3)
    items = cases * models
    runs: dict[str, Run] = {}
    arrived: dict[str, tuple[int, int]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        OpenAIServer() as openai_server,
        LangSmithServer(api_key=KEY) as langsmith,
    ):
        for n in range(models):
            openai_server.on(f"m{n}", answer_after(DELAY_S))
        project = Path(tmp) / "suite"
        write_suite_project(project, cases, models, openai_server.url)
        os.environ.update(LANGSMITH_API_KEY=KEY, LANGSMITH_ENDPOINT=langsmith.url)
        common = ["--llm-langsmith-timeout", str(TIMEOUT_S), f"--llm-concurrency={CONCURRENCY}"]
        live, replay = [*common, "--llm-record=all"], [*common, "--llm-record=none"]
        print(f"{cases} cases x {models} models = {items} items")

        def measure(name: str, label: str, flags: list[str]) -> None:
            before = len(langsmith.run_posts), len(langsmith.feedback_posts)
            runs[name] = run_pytest(label, project, items, openai_server, flags)
            arrived[name] = (len(langsmith.run_posts) - before[0],
                             len(langsmith.feedback_posts) - before[1])  # fmt: skip

        measure("live", f"live answers ({DELAY_S} s each, c={CONCURRENCY})", live)
        measure("live+ls", "live answers, uploading to LangSmith", [*live, "--llm-langsmith"])
        measure("replay", "replayed answers", replay)
        measure("replay+ls", "replayed answers, uploading", [*replay, "--llm-langsmith"])
        langsmith.fault(500)
        measure("500", "replayed, LangSmith answering 500", [*replay, "--llm-langsmith"])
        langsmith.clear_faults()
        langsmith.fault(None, hang=True)
        measure("hang", "replayed, LangSmith hanging", [*replay, "--llm-langsmith"])
        os.environ["LANGSMITH_ENDPOINT"] = closed_port_url()
        measure("down", "replayed, LangSmith down", [*replay, "--llm-langsmith"])

    live_ratio = runs["live+ls"].wall_s / runs["live"].wall_s
    replay_ratio = runs["replay+ls"].wall_s / runs["replay"].wall_s
    print()
    for name in ("live+ls", "replay+ls"):
        print(f"{runs[name].label}: {arrived[name][0]} runs and {arrived[name][1]} feedback "
              f"scores arrived")  # fmt: skip
    print(f"live: upload vs none {live_ratio:.2f}x; replayed: {replay_ratio:.2f}x")
    costs = {fault: runs[fault].wall_s - runs["replay"].wall_s for fault in ("500", "hang", "down")}
    for fault, cost in costs.items():
        print(f"LangSmith {fault}: {cost:+.2f} s over the replayed run without LangSmith")
    checks = {
        "every item passed in every run": all(run.correct for run in runs.values()),
        "every run arrived, once": all(arrived[n][0] == items for n in ("live+ls", "replay+ls")),
    }
    timed = {
        f"live: upload <= {LIVE_UPLOAD_VS_NONE}x none": live_ratio <= LIVE_UPLOAD_VS_NONE,
        f"replayed: upload <= {REPLAY_UPLOAD_VS_NONE}x none": replay_ratio <= REPLAY_UPLOAD_VS_NONE,
        **{f"LangSmith {fault} costs <= {AWAY_OVER_NONE_S:g} s": cost <= AWAY_OVER_NONE_S
           for fault, cost in costs.items()},
    }  # fmt: skip
    for name, met in checks.items():
        print(f"{'PASS' if met else 'FAIL'}  {name}")
    for name, met in timed.items():  # a quick run is too small to judge times by
        print(f"{'skip' if args.quick else 'PASS' if met else 'FAIL'}  {name}")
    return 0 if all(checks.values()) and (args.quick or all(timed.values())) else 1


if __name__ == "__main__":
    sys.exit(main())
