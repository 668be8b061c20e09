"""What the HTML report costs: to draw, to hold in memory, on disk, and in a run.

Targets (each a ratio against a reference measured in this script):

1. draw: html.render of a large run (3 models x 2,000 cases, two thirds missed, a
   third judged) takes at most 4x the time of writing the same run's results file
   (SavedRun.to_json, which every saved run pays);
2. memory: its peak allocation (tracemalloc) is at most 4x to_json's;
3. size: the page is at most 2x the results file;
4. a run: the example suite replayed (120 items) with --llm-html is at most 1.15x the
   wall of the same run without it (median of alternating runs).

    python3 benchmarks/report.py          # as above, about 40 s
    python3 benchmarks/report.py --quick  # 3 x 200 cases, 3 runs each; limits not judged
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_llmeval.report import html  # noqa: E402
from pytest_llmeval.results.gate import decide  # noqa: E402
from pytest_llmeval.results.provenance import Provenance  # noqa: E402
from pytest_llmeval.results.records import Record  # noqa: E402
from pytest_llmeval.results.saved_run import SavedRun  # noqa: E402

FIELDS = ("product", "star_rating", "specific_likes", "specific_dislikes")


def synthetic_run(cases: int, models: int = 3, seed: int = 7) -> SavedRun:
    """A run shaped like the example suite's, at any size: same fields, diffs, answers of
    the same length, a judge's reasoning on a third of the answers."""
    rng = random.Random(seed)
    records = []
    for m in range(models):
        model = f"model-{m}"
        for n in range(cases):
            expected = {"product": f"product {n}", "star_rating": n % 5 + 1,
                        "specific_likes": [f"like {k} of case {n}" for k in range(3)],
                        "specific_dislikes": [f"dislike {k}" for k in range(2)]}  # fmt: skip
            fields = {name: rng.random() < 0.6 for name in FIELDS}
            missed = rng.random() < 2 / 3
            if not missed:
                fields = dict.fromkeys(FIELDS, True)
            parsed = {**expected, "star_rating": 3} if missed else expected
            grades = (
                ({"field": "specific_dislikes", "grade": "INCORRECT",
                  "reasoning": "The answer names a dislike the review never mentions. " * 3},)
                if n % 3 == 0 else ()
            )  # fmt: skip
            records.append(Record(
                suite="reviews" if n % 2 else "reviews-judged", case=f"case-{n:05d}",
                model=model, nodeid=f"reviews.llmeval.yaml::case-{n:05d}[{model}]",
                file="reviews.llmeval.yaml", line=10 + 8 * n,
                outcome="miss" if missed else "pass", threshold=0.9,
                score=sum(fields.values()) / len(fields), fields=fields,
                reason="3 differences" if missed else "",
                diff=(f'star_rating: expected {expected["star_rating"]}, got 3',
                      'specific_likes: missing item "like 2 of case"',
                      'specific_dislikes[0]: expected "dislike 0", got "loud"')
                if missed else (),
                expected=expected, answer=str(parsed), parsed=parsed,
                latency_s=rng.lognormvariate(0.5, 0.4), input_tokens=730,
                output_tokens=35, cost=0.0004, judge_grades=grades,
                inputs={"review": "A review of some length about a product. " * 8},
            ))  # fmt: skip
    provenance = Provenance(run_id="0" * 32, started_at=time.time(), plugin_version="bench")
    settings = {"models": [f"model-{m}" for m in range(models)], "confidence": "point"}
    return SavedRun(provenance, settings, {}, tuple(records), time.time(), 1)


def timed(work: Callable[[], object], repeats: int) -> tuple[float, int]:
    """Best wall of ``repeats`` calls, and the peak traced allocation of one."""
    best = min(_once(work) for _ in range(repeats))
    tracemalloc.start()
    work()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return best, peak


def _once(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def example_walls(runs: int) -> tuple[list[float], list[float]]:
    """Walls of the example suite replayed, with and without the page, alternating so
    that whatever else the machine does falls on both."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLMEVAL_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    walls: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(runs):
            for with_page in (True, False):
                page = f"--llm-html={Path(scratch) / 'r.html'}" if with_page else "-o=llmeval_html="
                start = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", "pytest", "example_suite", "-p", "no:cacheprovider",
                     "-q", page], cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                )  # fmt: skip
                walls[with_page].append(time.perf_counter() - start)
                wrote = "llmeval report:" in done.stdout
                if done.returncode != 1 or wrote != with_page:  # the example's gate fails
                    sys.exit(f"example run went wrong:\n{done.stdout}\n{done.stderr}")
    return walls[True], walls[False]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cases, repeats, runs = (200, 2, 3) if args.quick else (2000, 3, 7)
    saved = synthetic_run(cases)

    def draw_page() -> str:
        # The decision is made from the records as the run makes it, so it is drawn too.
        return html.render(saved, decide(saved.records, saved.settings["models"]))

    page = draw_page()
    results = saved.to_json()
    draw, draw_peak = timed(draw_page, repeats)
    dump, dump_peak = timed(saved.to_json, repeats)
    with_page, without = example_walls(runs)
    wall_ratio = statistics.median(with_page) / statistics.median(without)
    figures = [
        ("draw", draw / dump, 2.0,
         f"render {draw:.2f}s, results file {dump:.2f}s ({len(saved.records):,} records)"),
        ("memory", draw_peak / dump_peak, 2.0,
         f"peak {draw_peak / 2**20:.0f} MB against {dump_peak / 2**20:.0f} MB"),
        ("size", len(page.encode()) / len(results.encode()), 1.6,
         f"page {len(page.encode()) / 2**20:.1f} MB, results file "
         f"{len(results.encode()) / 2**20:.1f} MB"),
        ("a run", wall_ratio, 1.15,
         f"example suite, median of {runs}: {statistics.median(with_page):.2f}s with the "
         f"page, {statistics.median(without):.2f}s without"),
    ]  # fmt: skip
    met = True
    for name, ratio, limit, detail in figures:
        verdict = "skip" if args.quick else "PASS" if ratio <= limit else "FAIL"
        met &= verdict != "FAIL"
        print(f"{verdict:4}  {name:7} {ratio:5.2f}x (limit {limit:g}x)  {detail}")
    print(
        f"{'PASS':4}  every page drawn has all {len(saved.records):,} answers"
        if page.count("<article ") == len(saved.records)
        else "FAIL  answers missing"
    )
    return 0 if met and page.count("<article ") == len(saved.records) else 1


if __name__ == "__main__":
    sys.exit(main())
