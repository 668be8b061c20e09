"""The engine end to end: concurrency, retries, rate limits, record modes, budget, dry run."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REVIEWS, LLMProject, oracle, suite_yaml, write_config
from tests.openai_server import OpenAIServer, Reply, Request

KETTLE = "reviews.llmeval.yaml:10: case 'kettle', model m1"


def numbered_cases(count: int) -> dict[str, tuple[str, dict[str, Any]]]:
    return {f"c{i}": (f"review number {i}", {"n": i}) for i in range(count)}


def number_of(request: Request) -> int:
    return int(request.last_user_content.split()[-1])


def numbered(request: Request) -> dict[str, int]:
    """Answers every numbered case right."""
    return {"n": number_of(request)}


def entry(pytester: pytest.Pytester, case: str, model: str = "m1") -> Path:
    return pytester.path / "llmeval-cache" / "reviews" / f"{case}.{model}.json"


# -- record modes ------------------------------------------------------------------------


def test_new_records_then_replays_without_calling(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    llm_project({"m1": oracle})
    first = pytester.runpytest("-v")
    first.assert_outcomes(passed=3)
    first.stdout.fnmatch_lines([
        "*::desk-chair[[]m1[]] PASSED*",
        "llmeval answers: 0 replayed from llmeval-cache/, 3 called, spent $0.000*",
    ])  # fmt: skip
    assert openai_server.calls() == 3
    recorded = json.loads(entry(pytester, "kettle").read_text())
    assert json.loads(recorded["answer"]) == REVIEWS["kettle"][1]
    assert recorded["input"] == REVIEWS["kettle"][0]
    assert recorded["model"] == "m1"
    assert recorded["endpoint"] == openai_server.url

    again = pytester.runpytest("-v")
    again.assert_outcomes(passed=3)
    again.stdout.fnmatch_lines([
        "*::desk-chair[[]m1[]] PASSED (replayed)*",
        "llmeval answers: 3 replayed from llmeval-cache/, 0 called",
    ])  # fmt: skip
    assert openai_server.calls() == 3  # a recorded answer never reaches the server


def test_all_calls_everything_again(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    llm_project({"m1": oracle})
    pytester.runpytest().assert_outcomes(passed=3)
    # The model changed its mind: re-recording stores the new answers.
    openai_server.on("m1", lambda r: {**oracle(r), "star_rating": 1})
    rerun = pytester.runpytest("--llm-record=all")
    assert rerun.parseoutcomes() == {"missed": 3}
    assert openai_server.calls() == 6
    assert (
        json.loads(json.loads(entry(pytester, "kettle").read_text())["answer"])["star_rating"] == 1
    )


def test_none_replays_and_names_what_is_not_recorded(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    llm_project({"m1": oracle})
    pytester.runpytest().assert_outcomes(passed=3)
    entry(pytester, "kettle").unlink()
    result = pytester.runpytest("--llm-record=none")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines([
        f"{KETTLE}: no answer: no recorded answer (looked for "
        "llmeval-cache/reviews/kettle.m1.json); --llm-record=none replays only: "
        "record it with --llm-record=new",
    ])  # fmt: skip
    assert openai_server.calls() == 3


def test_none_refuses_an_answer_recorded_for_another_prompt(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    llm_project({"m1": oracle})
    pytester.runpytest().assert_outcomes(passed=3)
    changed = suite_yaml().replace("as JSON.", "as a JSON object.")
    pytester.makefile(".llmeval.yaml", reviews=changed)
    result = pytester.runpytest("--llm-record=none")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines([
        f"{KETTLE}: no answer: the answer recorded in llmeval-cache/reviews/kettle.m1.json "
        "is for a different request (the prompt, parameters, endpoint or model id changed)*",
    ])  # fmt: skip
    # In the default mode the changed prompt is simply asked and recorded again.
    pytester.runpytest().assert_outcomes(passed=3)
    assert openai_server.calls() == 6


def test_the_record_mode_and_cache_dir_come_from_the_ini_file(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    llm_project({"m1": oracle}, ini='llmeval_record = "none"\nllmeval_cache_dir = "answers"')
    pytester.runpytest().assert_outcomes(errors=3)
    pytester.runpytest("--llm-record=new").assert_outcomes(passed=3)
    assert (pytester.path / "answers" / "reviews" / "kettle.m1.json").is_file()
    pytester.runpytest().assert_outcomes(passed=3)
    assert openai_server.calls() == 3


def test_an_api_key_is_neither_stored_nor_part_of_the_cache_key(
    pytester: pytest.Pytester, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_server.on_any(oracle)
    pytester.makepyprojecttoml(f"""
[tool.pytest.ini_options]
llmeval_models = "hosted"

[tool.llmeval.models.hosted]
model = "hosted-1"
base_url = "{openai_server.url}"
api_key_env = "LLMEVAL_TEST_KEY"
""")
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    monkeypatch.setenv("LLMEVAL_TEST_KEY", "sk-first-secret-0123456789")
    pytester.runpytest().assert_outcomes(passed=3)
    assert openai_server.requests[0].headers["authorization"] == "Bearer sk-first-secret-0123456789"
    stored = "".join(p.read_text() for p in (pytester.path / "llmeval-cache").rglob("*.json"))
    assert "hosted-1" in stored
    assert "sk-first" not in stored
    assert "0123456789" not in stored
    # A rotated key asks nothing again: the answers do not depend on it.
    monkeypatch.setenv("LLMEVAL_TEST_KEY", "sk-second-secret-9876543210")
    pytester.runpytest().assert_outcomes(passed=3)
    assert openai_server.calls() == 3


# -- an unreadable cache -------------------------------------------------------------------

UNREADABLE = {
    "truncated": '{"format": 1, "key": "ab',
    "conflict": '<<<<<<< HEAD\n{"answer": "a"}\n=======\n{"answer": "b"}\n>>>>>>> other\n',
    "not-an-object": "[1, 2, 3]\n",
    "wrong-types": "",  # written below, from a real entry
    "binary": "",  # written below, as bytes
}


@pytest.mark.parametrize("damage", UNREADABLE)
def test_an_unreadable_entry_is_named_and_recorded_again(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject, damage: str
) -> None:
    llm_project({"m1": oracle})
    pytester.runpytest().assert_outcomes(passed=3)
    path = entry(pytester, "kettle")
    if damage == "wrong-types":
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, "output_tokens": "many"}))
    elif damage == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage")
    else:
        path.write_text(UNREADABLE[damage])
    where = f"{KETTLE}: recorded answer llmeval-cache/reviews/kettle.m1.json is unreadable ("

    offline = pytester.runpytest("--llm-record=none")
    offline.assert_outcomes(passed=2, errors=1)
    offline.stdout.fnmatch_lines(
        [f"{KETTLE}: no answer: recorded answer *kettle.m1.json is unreadable (*"]
    )
    assert "Traceback" not in offline.stdout.str()

    healed = pytester.runpytest()
    healed.assert_outcomes(passed=3, warnings=1)
    healed.stdout.fnmatch_lines([f"*CacheWarning: {where}*); recording it again"])
    assert openai_server.calls() == 4
    assert json.loads(json.loads(path.read_text())["answer"]) == REVIEWS["kettle"][1]


def test_a_leftover_temporary_file_is_ignored(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    llm_project({"m1": oracle})
    pytester.runpytest().assert_outcomes(passed=3)
    entry(pytester, "kettle").with_name(".kettle.m1.json.x1y2.tmp").write_text('{"answ')
    pytester.runpytest("--llm-record=none").assert_outcomes(passed=3)


def test_an_interrupted_run_leaves_only_whole_entries(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    llm_project({"m1": slow(0.05)}, ini='llmeval_concurrency = "4"',
                suite=suite_yaml(cases=numbered_cases(200)))  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cache = pytester.path / "llmeval-cache" / "reviews"
    deadline = time.monotonic() + 60
    while len(list(cache.glob("*.json"))) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()  # no chance to clean up: the hardest interruption
    process.wait()
    entries = list(cache.glob("*.json"))
    assert 20 <= len(entries) < 200
    for path in entries:
        json.loads(path.read_text())  # every entry whole
    rerun = pytester.runpytest("-p", "no:cacheprovider")
    rerun.assert_outcomes(passed=200)
    rerun.stdout.fnmatch_lines([f"llmeval answers: {len(entries)} replayed*"])


# -- concurrency ---------------------------------------------------------------------------


def slow(delay: float) -> Any:
    return lambda r: Reply(content=json.dumps(numbered(r)), delay=delay)


def test_requests_run_concurrently_and_items_report_in_order(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    llm_project({"m1": slow(0.5)}, ini='llmeval_concurrency = "12"',
                suite=suite_yaml(cases=numbered_cases(12)))  # fmt: skip
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=12)
    assert openai_server.max_in_flight() == 12
    order = [int(m) for m in re.findall(r"::c(\d+)\[m1\] PASSED", result.stdout.str())]
    assert order == list(range(12))


def test_the_global_and_the_per_model_limits_hold(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    llm_project({"m1": slow(0.2), "m2": slow(0.2)}, ini='llmeval_concurrency = "5"',
                extra={"m1": "concurrency = 2"},
                suite=suite_yaml(cases=numbered_cases(10)))  # fmt: skip
    pytester.runpytest().assert_outcomes(passed=20)
    assert openai_server.max_in_flight("m1") == 2
    assert openai_server.max_in_flight() == 5


def test_the_python_fixture_records_and_sends_a_batch_at_once(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    llm_project({"m1": slow(0.3)}, suite=None)
    pytester.makepyfile(
        test_batch="""
        import json

        def test_batch(llmeval):
            answers = llmeval.complete_many([f"review number {i}" for i in range(6)])
            assert [json.loads(a)["n"] for a in answers] == list(range(6))
            llmeval.score(answers[0], {"n": 0})
        """
    )
    first = pytester.runpytest()
    first.assert_outcomes(passed=1)
    assert openai_server.max_in_flight() == 6
    files = sorted(p.name for p in (pytester.path / "llmeval-cache" / "test_batch").iterdir())
    assert len(files) == 6
    assert all(re.fullmatch(r"test_batch\.m1\.[0-9a-f]{12}\.json", f) for f in files)
    again = pytester.runpytest("-v")
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["*test_batch[[]m1[]] PASSED (replayed)*"])
    assert openai_server.calls() == 6


# -- retries and rate limits ---------------------------------------------------------------


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_429_and_500_are_retried(
    pytester: pytest.Pytester,
    openai_server: OpenAIServer,
    llm_project: LLMProject,
    workers: list[str],
) -> None:
    llm_project({"m1": [
        Reply(status=429, error_message="slow down", headers={"Retry-After": "0.01"}),
        Reply(status=500, headers={"retry-after-ms": "10"}),
        oracle,
    ]})  # fmt: skip
    result = pytester.runpytest_subprocess("-k", "kettle", *workers)
    result.assert_outcomes(passed=1, deselected=0 if workers else 2)
    result.stdout.fnmatch_lines([
        "llmeval answers: 0 replayed from llmeval-cache/, 1 called (1 after retries)*",
        # Under xdist each worker adapts its own concurrency: the summary has the count only.
        "llmeval rate limits: m1 answered 429 1 time; at most 1 in flight"
        + ("" if workers else "; concurrency kept at 16"),
    ])  # fmt: skip
    assert openai_server.calls() == 3
    retries = [r.headers.get("x-stainless-retry-count") for r in openai_server.requests]
    assert retries == ["0", "1", "2"]


def test_a_timeout_is_retried(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    llm_project({"m1": [Reply(delay=3), oracle]}, ini='llmeval_timeout = "0.5"')
    pytester.runpytest("-k", "kettle").assert_outcomes(passed=1, deselected=2)
    assert openai_server.calls() == 2


@pytest.mark.parametrize(
    ("reply", "attempts", "message"),
    [
        (Reply(status=500, error_message="boom", headers={"retry-after-ms": "10"}), 3,
         "HTTP 500 from m1 (http://127.0.0.1:*/v1) after 3 attempts: boom"),
        # 429s spend their own allowance (4 retries here), not --llm-max-retries.
        (Reply(status=429, error_message="Rate limit reached", headers={"Retry-After": "0.01"}),
         5, "HTTP 429 from m1 (http://127.0.0.1:*/v1) after 5 attempts: Rate limit reached"),
        (Reply(delay=3), 3,
         "timed out after 0.3s at m1 (http://127.0.0.1:*/v1) after 3 attempts, *s in all"),
    ],
    ids=["500", "429", "timeout"],
)  # fmt: skip
def test_giving_up_after_the_retries_is_an_error_for_that_item_only(
    pytester: pytest.Pytester,
    openai_server: OpenAIServer,
    llm_project: LLMProject,
    reply: Reply,
    attempts: int,
    message: str,
) -> None:
    llm_project({"m1": lambda r: reply if "kettle" in r.last_user_content.lower() else oracle(r)},
                ini='llmeval_max_retries = "2"\nllmeval_rate_limit_retries = "4"\n'
                    'llmeval_timeout = "0.3"')  # fmt: skip
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines([f"{KETTLE}: no answer: {message}"])
    kettle = [r for r in openai_server.requests if "kettle" in r.last_user_content.lower()]
    assert len(kettle) == attempts
    assert not entry(pytester, "kettle").exists()  # failures are not recorded


def test_a_model_that_keeps_answering_429_gets_fewer_requests_at_once(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    # The endpoint serves two requests at a time and refuses the rest.
    def two_at_a_time(request: Request) -> Reply:
        if openai_server.in_flight("m1") > 2:
            return Reply(status=429, error_message="busy", headers={"Retry-After": "0.05"})
        return Reply(content=json.dumps(numbered(request)), delay=0.1)

    llm_project({"m1": two_at_a_time}, ini='llmeval_concurrency = "16"\nllmeval_max_retries = "50"',
                suite=suite_yaml(cases=numbered_cases(60)))  # fmt: skip
    result = pytester.runpytest()
    result.assert_outcomes(passed=60)
    line = next(x for x in result.stdout.lines if x.startswith("llmeval rate limits: m1"))
    lowest = int(re.search(r"lowered from 16 to (\d+)", line).group(1))  # type: ignore[union-attr]
    assert lowest <= 4, line


# -- budget and dry run --------------------------------------------------------------------


def priced_config(pytester: pytest.Pytester, server: OpenAIServer, ini: str = "") -> None:
    pytester.makepyprojecttoml(f"""
[tool.pytest.ini_options]
llmeval_models = "m1"
{ini}

[tool.llmeval.models.m1]
base_url = "{server.url}"
price = {{input_per_1k = 0.01, output_per_1k = 0.01}}
""")


def test_the_budget_stops_sending(pytester: pytest.Pytester, openai_server: OpenAIServer) -> None:
    # Every call costs 1000 + 1000 tokens at $0.01 per 1K: $0.02.
    openai_server.on("m1", lambda r: Reply(content=json.dumps(numbered(r)), prompt_tokens=1000,
                                           completion_tokens=1000))  # fmt: skip
    priced_config(pytester, openai_server, 'llmeval_concurrency = "1"')
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml(cases=numbered_cases(8)))
    result = pytester.runpytest("--llm-max-cost=0.1")
    result.assert_outcomes(passed=5, errors=3)
    assert openai_server.calls() == 5
    result.stdout.fnmatch_lines([
        "reviews.llmeval.yaml:*: case 'c5', model m1: no answer: not sent: it would take the "
        "spend past --llm-max-cost=$0.1 (spent $0.1000 so far)",
        "llmeval answers: 0 replayed from llmeval-cache/, 5 called, spent $0.1000",
    ])  # fmt: skip


def test_a_budget_needs_prices(pytester: pytest.Pytester, openai_server: OpenAIServer) -> None:
    pytester.makepyprojecttoml(f"""
[tool.pytest.ini_options]
llmeval_models = "m1"

[tool.llmeval.models.m1]
base_url = "{openai_server.url}"
""")
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest("--llm-max-cost=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-max-cost needs a price for m1: set price = *"])


def test_dry_run_counts_and_estimates_and_calls_nothing(
    pytester: pytest.Pytester, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_server.on("m1", numbered)
    priced_config(pytester, openai_server)
    # Known sizes: a 396-character system prompt, 16-character reviews ("review number 1"
    # is 15), an expected answer of 8 characters ('{"n": 1}').
    suite = suite_yaml(cases=numbered_cases(10)).replace(
        "Extract product, star_rating, specific_likes, specific_dislikes as JSON.", "x" * 396
    )
    pytester.makefile(".llmeval.yaml", reviews=suite)
    pytester.runpytest("-k", "c1 or c2").assert_outcomes(passed=2, deselected=8)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = pytester.runpytest("--llm-dry-run", "--llm-max-cost=0.01")
    assert result.ret == pytest.ExitCode.OK
    assert openai_server.calls() == 2
    # Per request to call: in = 396 // 4 + 15 // 4 + 2 messages x 4 = 99 + 3 + 8 = 110
    # tokens; out = 8 // 4 = 2 tokens; cost = 112 x $0.01 / 1000 = $0.00112. Eight to call.
    result.stdout.fnmatch_lines([
        "*llmeval dry run: nothing was called*",
        "model  requests  recorded  to call  ~tokens in  ~tokens out    ~cost",
        "m1           10         2        8         880           16  $0.0090",
        "~ estimates:*",
        "--llm-max-cost $0.01: the estimate is within it",
    ])  # fmt: skip
    assert "llmeval answers" not in result.stdout.str()
    offline = pytester.runpytest("--llm-dry-run", "--llm-record=none")
    offline.stdout.fnmatch_lines(
        ["--llm-record=none: the 8 requests not recorded would be errors, not calls"]
    )
    assert openai_server.calls() == 2


def test_dry_run_runs_in_one_process(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    write_config(pytester, openai_server, ["m1"])
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest_subprocess("--llm-dry-run", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-dry-run runs in one process; drop -n*"])


# -- xdist ---------------------------------------------------------------------------------


def test_xdist_sends_each_request_once_with_each_worker_concurrent(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    llm_project({"m1": slow(0.3), "m2": slow(0.3)}, ini='llmeval_concurrency = "8"',
                suite=suite_yaml(cases=numbered_cases(20)))  # fmt: skip
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=40)
    sent = Counter((r.model, number_of(r)) for r in openai_server.requests)
    assert sent == Counter({(m, i): 1 for m in ("m1", "m2") for i in range(20)})
    # Two workers with four requests each at once: more than either would send alone.
    assert 4 < openai_server.max_in_flight() <= 8
    recorded = list((pytester.path / "llmeval-cache" / "reviews").glob("*.json"))
    assert len(recorded) == 40


# -- the progress line ---------------------------------------------------------------------


def run_on_a_terminal(directory: Path, *args: str) -> str:
    """Run pytest with its output on a pseudo-terminal; everything it wrote."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=directory,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "120"},
    )
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            process.send_signal(signal.SIGINT)
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        output += chunk
    process.wait()
    os.close(leader)
    return output.decode()


def screen(output: str) -> str:
    """What a terminal shows for this output: lines as drawn with save/restore cursor,
    erase to end of line and carriage returns applied (colours dropped)."""
    lines: list[str] = []
    line, cursor, saved = "", 0, 0
    for token in re.findall(r"\x1b\[[0-9;]*[A-Za-z]|\x1b[78]|\r|\n|[^\x1b\r\n]+", output):
        if token == "\n":
            lines.append(line)
            line, cursor = "", 0
        elif token == "\r":
            cursor = 0
        elif token == "\x1b7":
            saved = cursor
        elif token == "\x1b8":
            cursor = saved
        elif token == "\x1b[K":
            line = line[:cursor]
        elif not token.startswith("\x1b"):
            line = line[:cursor] + token + line[cursor + len(token) :]
            cursor += len(token)
    return "\n".join([*lines, line])


def test_a_terminal_shows_the_engine_progress_and_erases_it(
    pytester: pytest.Pytester, llm_project: LLMProject
) -> None:
    llm_project({"m1": slow(0.4)}, ini='llmeval_concurrency = "1"',
                suite=suite_yaml(cases=numbered_cases(4)))  # fmt: skip
    shown = run_on_a_terminal(pytester.path, "--llm-record=all")
    assert re.search(r"\x1b7  \[llmeval m1 \d/4\]", shown), shown
    # Every drawing is erased again before pytest goes on: the screen shows pytest's line.
    drawn = re.findall(r"\x1b7|\x1b8\x1b\[K", shown)
    assert drawn[0] == "\x1b7"
    assert drawn[-1] == "\x1b8\x1b[K"
    assert re.search(r"^reviews\.llmeval\.yaml \.\.\.\. +\[100%\]$", screen(shown), re.M), shown
    quiet = run_on_a_terminal(pytester.path, "--llm-record=all", "-q")
    assert "\x1b7" not in quiet
    assert "4 passed" in quiet
    not_a_terminal = pytester.runpytest("--llm-record=all")
    assert "\x1b7" not in not_a_terminal.stdout.str()


# -- what must not happen ------------------------------------------------------------------


def test_an_answer_that_cannot_be_recorded_is_still_used_and_said(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    llm_project({"m1": oracle})
    (pytester.path / "llmeval-cache").mkdir()
    (pytester.path / "llmeval-cache" / "reviews").write_text("a file where a folder should be")
    result = pytester.runpytest()
    # Each item: its recording cannot be read, and its answer cannot be recorded.
    result.assert_outcomes(passed=3, warnings=6)
    result.stdout.fnmatch_lines([
        f"*CacheWarning: {KETTLE}: recorded answer llmeval-cache/reviews/kettle.m1.json is "
        "unreadable (Not a directory); recording it again",
        f"*CacheWarning: {KETTLE}: could not record the answer in "
        "llmeval-cache/reviews/kettle.m1.json: File exists",
    ])  # fmt: skip
    assert openai_server.calls() == 3


def test_nothing_is_sent_when_collection_fails(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    llm_project({"m1": oracle})
    pytester.makepyfile(test_broken="def test_x(:\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert openai_server.calls() == 0


def test_python_test_recordings_do_not_depend_on_where_pytest_starts(
    pytester: pytest.Pytester,
    openai_server: OpenAIServer,
    llm_project: LLMProject,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    llm_project({"m1": numbered}, suite=None)
    pytester.mkpydir("checks").joinpath("test_chain.py").write_text(
        "def test_chain(llmeval):\n"
        "    llmeval.score(llmeval.complete('review number 7'), {'n': 7})\n"
    )
    pytester.runpytest().assert_outcomes(passed=1)
    assert len(list((pytester.path / "llmeval-cache" / "checks" / "test_chain").iterdir())) == 1
    monkeypatch.chdir(pytester.path / "checks")
    pytester.runpytest("--llm-record=none", "test_chain.py").assert_outcomes(passed=1)
    assert openai_server.calls() == 1
