"""Endpoints that misbehave: a timeout that is a deadline, keys an endpoint echoes kept out
of everything written, JUnit that stays XML, 429s counted however a request ends, and the
fault-injecting test server itself."""

from __future__ import annotations

import json
import pickle
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import openai
import pytest

from pytest_llmeval.engine import client
from pytest_llmeval.engine.cache import ResponseCache
from pytest_llmeval.engine.client import CallError, LLMRequest
from pytest_llmeval.engine.engine import Engine
from pytest_llmeval.engine.share import RunShare
from pytest_llmeval.models import ModelSpec
from pytest_llmeval.report.junit import xml_safe
from pytest_llmeval.suite.model import Message, ResponseFormat
from tests.conftest import oracle, suite_yaml, write_config
from tests.langsmith_service import LangSmithServer
from tests.openai_server import (
    FAULT_KINDS,
    FINAL_FAULTS,
    RATE_LIMITS,
    FaultPlan,
    Faulty,
    OpenAIServer,
    Reply,
    Request,
)

# -- the timeout is a deadline for each attempt ----------------------------------------------

# Whitespace a byte every quarter second, for ten seconds before the answer: every read
# comes well within any timeout here, so only a deadline ends an attempt early.
TRICKLE = Reply(content='{"n": 1}', fault="trickle", trickle_interval=0.25, trickle_bytes=40)


def spec(server: OpenAIServer, **changes: Any) -> ModelSpec:
    return ModelSpec(name="m1", model="m1", base_url=server.url, api_key_env=None, **changes)


def request_for(model: ModelSpec, text: str = "1") -> LLMRequest:
    return LLMRequest(model, (Message("user", text),), ResponseFormat(json_mode=False),
                      group="g", name=f"case{text}", pinned=True)  # fmt: skip


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = Engine(ResponseCache(tmp_path / "cache", "cache"), mode="all", concurrency=4,
                  timeout=60.0, max_retries=1, rate_limit_retries=2)  # fmt: skip
    yield made
    made.close()


def test_a_trickling_endpoint_ends_each_attempt_at_the_models_timeout(
    openai_server: OpenAIServer, engine: Engine
) -> None:
    openai_server.on("m1", TRICKLE)
    model = spec(openai_server, timeout=2.0)  # the run's timeout (60 s) is not the model's
    attempts = 2  # --llm-max-retries=1
    started = time.monotonic()
    with pytest.raises(CallError) as raised:
        engine.answer(engine.start(request_for(model)))
    took = time.monotonic() - started
    # Each attempt ends at its deadline; the engine's one backoff (at most FIRST_BACKOFF_S,
    # 0.5 s) fits in the 1 s.
    assert took <= 2 * attempts + 1, took
    assert openai_server.calls() == attempts
    message = str(raised.value)
    assert message.startswith(f"timed out after 2s at m1 ({openai_server.url}) after 2 attempts, ")
    waited = float(message.rsplit(", ", 1)[1].removesuffix("s in all"))
    # The message rounds to a tenth of a second: within 0.05 s of what was measured here.
    assert 4 <= waited <= took + 0.05, (waited, took)


def test_an_answer_trickled_within_the_deadline_is_an_answer(
    openai_server: OpenAIServer, engine: Engine
) -> None:
    openai_server.on("m1", Reply(content='{"n": 1}', fault="trickle", trickle_interval=0.05,
                                 trickle_bytes=4))  # fmt: skip
    done = engine.answer(engine.start(request_for(spec(openai_server, timeout=2.0))))
    assert json.loads(done.text) == {"n": 1}
    assert done.attempts == 1


def test_a_trickle_in_a_run_is_that_items_error_saying_how_long_it_waited(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    openai_server.on("m1", lambda r: TRICKLE if "kettle" in r.last_user_content else oracle(r))
    write_config(pytester, openai_server, ["m1"], 'llmeval_max_retries = "1"',
                 extra={"m1": "timeout = 2\nparams = {temperature = 0}"})  # fmt: skip
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    started = time.monotonic()
    result = pytester.runpytest()
    took = time.monotonic() - started
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines([
        "reviews.llmeval.yaml:10: case 'kettle', model m1: no answer: timed out after 2s at m1 "
        "(http://127.0.0.1:*/v1) after 2 attempts, *s in all",
    ])  # fmt: skip
    assert took < 2 * 2 + 5, took  # two deadlines and a backoff, and the run around them


def test_the_client_for_code_under_test_keeps_the_deadline_too(
    openai_server: OpenAIServer,
) -> None:
    openai_server.on("m1", TRICKLE)
    sdk = client.sync_client(spec(openai_server), timeout=1.0, max_retries=1)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        sdk.chat.completions.create(model="m1", messages=[{"role": "user", "content": "1"}])
    took = time.monotonic() - started
    # A blocking read is not cut short: each attempt may overrun by one byte's wait.
    assert took <= 2 * (1 + 0.25) + 1, took
    openai_server.on("m1", "fine")
    answer = sdk.chat.completions.create(model="m1", messages=[{"role": "user", "content": "1"}])
    assert answer.choices[0].message.content == "fine"
    sdk.close()


# -- a key the endpoint echoes is kept out of everything written ------------------------------

CANARY = "sk-canary-5d1f0e9a7b3c4d2e8f60"
JUDGE_CANARY = "sk-judge-canary-0a9b8c7d6e5f4a3b"

CANARY_SUITE = """\
suite: leaks
prompt:
  system: Answer as JSON.
  user: "{q}"
scoring:
  method: fields
  fields:
    name: exact
    comment: judge
cases:
"""
CANARY_CASES = ["echo", "error", "refusal", "vague-judge", "judge-error", "clean"]


def key_of(request: Request) -> str:
    return request.headers.get("authorization", "").removeprefix("Bearer ")


def leaky_model(request: Request) -> Reply:
    """An endpoint that tells the key it was sent, in every way it can."""
    key, case = key_of(request), request.last_user_content
    if case == "error":
        return Reply(status=401, error_message=f"Incorrect API key provided: {key}.")
    if case == "refusal":
        message = {"role": "assistant", "content": json.dumps({"name": "refusal", "comment": "c"}),
                   "refusal": f"I will not repeat {key}"}  # fmt: skip
        body = {"choices": [{"index": 0, "finish_reason": "stop", "message": message}]}
        return Reply(body=json.dumps(body).encode())
    if case == "echo":
        return Reply(content=json.dumps({"name": f"echo {key}", "comment": f"key={key}"}))
    return Reply(content=json.dumps({"name": case, "comment": f"sent with {key}"}))


def leaky_judge(request: Request) -> Reply:
    """A judge that quotes its key: once with a grade, and (for one case) never with one."""
    key, graded = key_of(request), request.messages[-1].get("content", "")
    if "judge-error" in graded:
        return Reply(status=403, error_message=f"The key {key} may not grade this.")
    if "vague-judge" in graded or len(request.messages) > 2:
        return Reply(content=f"My key is {key} and I cannot say.")
    return Reply(content=f"Checked with {key}.\nGRADE: CORRECT")


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_key_echoed_by_the_endpoint_is_written_nowhere(
    pytester: pytest.Pytester,
    openai_server: OpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    workers: list[str],
) -> None:
    openai_server.on("m1", leaky_model)
    openai_server.on("judge", leaky_judge)
    pytester.makepyprojecttoml(f"""
[tool.pytest.ini_options]
llmeval_models = "m1"
llmeval_judge_model = "judge"
llmeval_threshold = 0.9
llmeval_max_retries = 0

[tool.llmeval.models.m1]
base_url = "{openai_server.url}"
api_key_env = "LEAKY_KEY"
price = {{input_per_1k = 0.001, output_per_1k = 0.002}}

[tool.llmeval.models.judge]
base_url = "{openai_server.url}"
api_key_env = "LEAKY_JUDGE_KEY"
""")
    suite = CANARY_SUITE + "".join(
        f"  - id: {case}\n    inputs: {{q: {case}}}\n"
        f'    expected: {{name: {case}, comment: "a comment"}}\n'
        for case in CANARY_CASES
    )
    pytester.makefile(".llmeval.yaml", leaks=suite)
    monkeypatch.setenv("LEAKY_KEY", CANARY)
    monkeypatch.setenv("LEAKY_JUDGE_KEY", JUDGE_CANARY)
    summary = pytester.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))  # after conftest cleared it
    with LangSmithServer(api_key="lsv2-canary-test-0123456789") as langsmith:
        monkeypatch.setenv("LANGSMITH_ENDPOINT", langsmith.url)
        monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2-canary-test-0123456789")
        result = pytester.runpytest(
            "-v", "-rA", "--llm-save=results.json", "--llm-html=report.html",
            "--llm-markdown=summary.md", "--junitxml=junit.xml", "--llm-langsmith",
            "-p", "no:langsmith_plugin", *workers,
        )  # fmt: skip
        uploads = langsmith.requests
        stored = json.dumps([langsmith.runs, langsmith.feedback, langsmith.examples])
    # The endpoint did receive the keys, and did echo them.
    assert {key_of(r) for r in openai_server.requests} == {CANARY, JUDGE_CANARY}
    outcomes = result.parseoutcomes()
    # The 401, the judge's 403, and the judge that gave no grade.
    assert outcomes.get("errors") == 3, outcomes
    out = result.stdout.str() + result.stderr.str()
    assert "Incorrect API key provided: ***." in out
    assert "it last said: 'My key is *** and I cannot say.'" in out
    assert "HTTP 403 from judge (http://127.0.0.1:" in out
    assert "The key *** may not grade this." in out
    files = [p for p in pytester.path.rglob("*") if p.is_file()]
    written = {p.relative_to(pytester.path).as_posix() for p in files}
    assert {"results.json", "report.html", "summary.md", "junit.xml", "step-summary.md"} <= written
    recordings = [p for p in files if "llmeval-cache" in p.parts]
    assert len(recordings) >= 5 + 4  # five answers, and the judge's answers
    assert uploads, "nothing reached LangSmith"
    for canary in (CANARY, JUDGE_CANARY):
        assert canary not in out
        leaked = [p.relative_to(pytester.path) for p in files if canary.encode() in p.read_bytes()]
        assert not leaked, f"{canary} written to {leaked}"
        assert not [r.path for r in uploads if canary.encode() in r.body]
        assert canary not in stored
    saved = (pytester.path / "results.json").read_text()
    assert "the model refused: I will not repeat ***" in saved
    assert "Checked with ***." in saved  # the judge's reasoning, kept


def test_a_configured_key_is_out_of_answers_before_its_model_is_asked(
    pytester: pytest.Pytester, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy that holds every key may echo any of them: a judge's key, in an answer that
    comes before the judge is first asked, or a key of a model the run never asks."""
    openai_server.on("m1", lambda request: Reply(
        content=json.dumps({"name": f"{JUDGE_CANARY} {CANARY}", "comment": "c"})))  # fmt: skip
    pytester.makepyprojecttoml(f"""
[tool.pytest.ini_options]
llmeval_models = "m1"

[tool.llmeval.models.m1]
base_url = "{openai_server.url}"

[tool.llmeval.models.judge]
base_url = "{openai_server.url}"
api_key_env = "LEAKY_JUDGE_KEY"

[tool.llmeval.models.unused]
base_url = "{openai_server.url}"
api_key_env = "LEAKY_KEY"
""")
    pytester.makefile(
        ".llmeval.yaml",
        leaks="""\
suite: leaks
prompt: {user: "{q}"}
cases:
  - {id: echo, inputs: {q: echo}, expected: {name: n, comment: c}}
""",
    )
    monkeypatch.setenv("LEAKY_KEY", CANARY)
    monkeypatch.setenv("LEAKY_JUDGE_KEY", JUDGE_CANARY)
    result = pytester.runpytest("-v", "--llm-save=results.json", "-p", "no:xdist")
    assert result.parseoutcomes() == {"missed": 1}
    out = result.stdout.str()
    assert '"*** ***"' in out  # the miss's diff shows the answer, both keys out
    files = [p for p in pytester.path.rglob("*") if p.is_file()]
    for canary in (CANARY, JUDGE_CANARY):
        assert canary not in out
        assert not [p for p in files if canary.encode() in p.read_bytes()]


# -- JUnit stays XML whatever an answer holds --------------------------------------------------

CONTROL = "".join(chr(c) for c in range(32) if chr(c) not in "\t\n\r") + "\x7f\ud800\ufffe"


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_control_characters_in_a_gated_miss_leave_junit_well_formed(
    pytester: pytest.Pytester, openai_server: OpenAIServer, workers: list[str]
) -> None:
    def garbled(request: Request) -> Reply:
        answer = oracle(request)
        if answer["product"] == "kettle":  # JSON, with characters JSON leaves as they are
            answer = {**answer, "product": "kettle\x7f\ufffe", "star_rating": 1}
        if answer["product"] == "desk chair":  # no JSON: shown as it came
            return Reply(content=f"desk chair{CONTROL}\x00\x1b[31m\x07 \ud800")
        return Reply(content=json.dumps(answer, ensure_ascii=False))

    openai_server.on("m1", garbled)
    write_config(pytester, openai_server, ["m1"], ini="llmeval_threshold = 0.9")
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest("--junitxml=junit.xml", *workers)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    root = ET.parse(pytester.path / "junit.xml").getroot()  # well-formed
    found = {c.get("name"): c.find("failure") for c in root.iter("testcase")}
    kettle, chair = found["kettle[m1]"], found["desk-chair[m1]"]
    assert kettle is not None
    assert chair is not None
    assert "star_rating: expected 5, got 1" in (kettle.text or "")
    assert "kettle#x7F\ufffd" in (kettle.text or "").replace("#xFFFE", "\ufffd")
    text = chair.text or ""
    assert "invalid JSON" in text
    for shown in ("#x00", "#x1B", "#x07", "#x7F"):  # shown, not dropped
        assert shown in text
    assert "invalid JSON" in (chair.get("message") or "")


def test_xml_safe_keeps_what_xml_can_hold_and_marks_the_rest() -> None:
    assert xml_safe("tab\tnew\nline\r é ✓ 😀") == "tab\tnew\nline\r é ✓ 😀"
    assert xml_safe("a\x00b\x1bc\x07\x7f\ud800\ufffe") == "a#x00b#x1Bc#x07#x7F#xD800#xFFFE"
    ET.fromstring(f"<a>{xml_safe(CONTROL)}</a>")


# -- 429s are counted however the request ends -------------------------------------------------


def test_a_request_that_fails_for_good_carries_its_attempts_and_429s(
    openai_server: OpenAIServer, engine: Engine, tmp_path: Path
) -> None:
    # 429s spend their own allowance (2 retries), other failures --llm-max-retries (1).
    openai_server.on("m1", Reply(status=429, error_message="busy", headers={"Retry-After": "0"}))
    with pytest.raises(CallError) as raised:
        engine.answer(engine.start(request_for(spec(openai_server))))
    assert (raised.value.attempts, raised.value.rate_limited) == (3, 3)
    openai_server.on("m1", [Reply(status=429, headers={"Retry-After": "0"}),
                            Reply(status=500, headers={"retry-after-ms": "0"})])  # fmt: skip
    with pytest.raises(CallError) as raised:
        engine.answer(engine.start(request_for(spec(openai_server), "2")))
    assert (raised.value.attempts, raised.value.rate_limited) == (3, 1)
    # Another xdist worker reading the outcome sees the same counts.
    share = RunShare(tmp_path)
    share.publish("k", raised.value)
    shared = share.outcome("k")
    assert isinstance(shared, CallError)
    assert (str(shared), shared.attempts, shared.rate_limited) == (str(raised.value), 3, 1)
    again = pickle.loads(pickle.dumps(raised.value))
    assert (str(again), again.attempts, again.rate_limited) == (str(raised.value), 3, 1)


def test_the_summary_counts_the_429s_of_requests_that_failed_for_good(
    pytester: pytest.Pytester, openai_server: OpenAIServer
) -> None:
    refuse = Reply(status=429, error_message="busy", headers={"Retry-After": "0"})
    openai_server.on("m1", lambda r: refuse if "kettle" in r.last_user_content else oracle(r))
    write_config(pytester, openai_server, ["m1"],
                 'llmeval_max_retries = "0"\nllmeval_rate_limit_retries = "2"')  # fmt: skip
    pytester.makefile(".llmeval.yaml", reviews=suite_yaml())
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, errors=1)
    assert openai_server.calls() == 2 + 3  # the 429 allowance, whatever --llm-max-retries
    result.stdout.fnmatch_lines(["llmeval rate limits: m1 answered 429 3 times*"])


# -- the fault-injecting server ---------------------------------------------------------------


def test_a_plan_draws_the_same_faults_every_time_at_its_rate() -> None:
    plan = FaultPlan(rate=0.25, seed=11)
    keys = [f"m\0{n}" for n in range(4000)]
    first = [plan.fault(k, 0) for k in keys]
    assert first == [FaultPlan(rate=0.25, seed=11).fault(k, 0) for k in keys]
    assert first != [FaultPlan(rate=0.25, seed=12).fault(k, 0) for k in keys]
    share = sum(f is not None for f in first) / len(keys)
    assert 0.22 < share < 0.28, share
    assert {f for f in first if f is not None} == set(FAULT_KINDS)
    # A storm, once begun, lasts through every later attempt.
    stormy = next(k for k in keys if plan.fault(k, 0) == "429-storm")
    assert [plan.fault(stormy, n) for n in range(5)] == ["429-storm"] * 5
    assert FaultPlan(rate=0.0).outcome("x", 2).answered
    with pytest.raises(ValueError, match="unknown fault kinds"):
        FaultPlan(rate=0.1, kinds={"gremlins": 1.0})


def ask(engine: Engine, model: ModelSpec, text: str) -> tuple[Any, ...]:
    """What the engine ends with: answered or error, attempts, 429s, the text."""
    try:
        done = engine.answer(engine.start(request_for(model, text)))
    except CallError as exc:
        return ("error", exc.attempts, exc.rate_limited, str(exc))
    return ("answered", done.attempts, done.rate_limited, done.text)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_ends_a_request_as_the_plan_says(
    kind: str, openai_server: OpenAIServer, engine: Engine
) -> None:
    """Through the engine (its retries, the deadline): a fault on every attempt ends as the
    plan's outcome says (a 429 on its own allowance, 2 retries here; any other fault on
    --llm-max-retries, 1); a fault on the first attempt only is retried to an answer,
    unless the engine does not retry it (or it is a storm, which lasts)."""
    plan = FaultPlan(rate=1.0, seed=1, kinds={kind: 1.0}, trickle_interval=0.1)
    faulty = Faulty(plan, lambda r: '{"n": 1}')

    def first_attempt_only(request: Request) -> Reply:
        if request.last_user_content == "always" or kind == "429-storm":
            return faulty(request)
        retry = request.headers.get("x-stainless-retry-count", "0")
        return faulty(request) if retry == "0" else Reply(content='{"n": 1}')

    openai_server.on("m1", first_attempt_only)
    model = spec(openai_server, timeout=1.0)
    started = time.monotonic()
    always = ask(engine, model, "always")
    planned = plan.outcome("m1\0always", max_retries=1, rate_limit_retries=2)
    assert always[:3] == ("error", planned.attempts, planned.rate_limited), always
    assert planned.attempts == (1 if kind in FINAL_FAULTS else 3 if kind in RATE_LIMITS else 2)
    assert planned.rate_limited == (planned.attempts if kind.startswith("429") else 0)
    once = ask(engine, model, "once")
    assert time.monotonic() - started < 10
    if kind in FINAL_FAULTS:
        assert once[:3] == ("error", 1, 0), once
        assert "bad response from m1" in once[3]
    elif kind == "429-storm":
        assert once[:3] == ("error", 3, 3), once
    else:
        assert once == ("answered", 2, int(kind.startswith("429")), '{"n": 1}'), once
    assert faulty.attempts == Counter({"m1\0always": always[1], "m1\0once": 1 if
                                       kind != "429-storm" else 3})  # fmt: skip


@pytest.mark.parametrize("fault", ["hang", "trickle"])
def test_a_hang_and_a_trickle_let_go_when_the_client_goes(
    fault: Literal["hang", "trickle"], openai_server: OpenAIServer
) -> None:
    openai_server.on("m", "warm")
    sdk = client.sync_client(spec(openai_server), timeout=0.5, max_retries=0)
    sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "1"}])
    sdk.close()
    time.sleep(0.2)
    before = threading.active_count()
    openai_server.on("m", Reply(content="x", fault=fault, trickle_interval=0.05))
    sdk = client.sync_client(spec(openai_server), timeout=0.5, max_retries=0)
    with pytest.raises(openai.APITimeoutError):
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "1"}])
    sdk.close()
    deadline = time.monotonic() + 3
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before  # its handler thread ended with the client


def test_an_answer_another_worker_recorded_in_this_run_is_not_a_replay(
    openai_server: OpenAIServer, tmp_path: Path
) -> None:
    """Two xdist workers, one cache: the first sends and records the request; the second
    comes to it after the recording exists, and must see this run's answer (from the share),
    not a replay of an old one."""
    openai_server.on("m1", '{"n": 1}')
    share = RunShare(tmp_path / "share")
    share.directory.mkdir()

    def worker() -> Engine:
        return Engine(ResponseCache(tmp_path / "cache", "cache"), mode="new", concurrency=4,
                      timeout=60.0, max_retries=1, rate_limit_retries=2, share=share,
                      workers=2)  # fmt: skip

    first, second = worker(), worker()
    try:
        sent = first.answer(first.start(request_for(spec(openai_server))))
        assert not sent.cached
        assert list((tmp_path / "cache").rglob("*.json"))  # recorded before the second asks
        shared = second.answer(second.start(request_for(spec(openai_server))))
    finally:
        first.close()
        second.close()
    assert not shared.cached
    assert shared.text == sent.text
    assert openai_server.calls() == 1
