"""Rate limits: Retry-After read in its three forms and honoured, a backoff without it, 429s
on their own allowance, the pace learned from them, and the summary's words about them."""

from __future__ import annotations

import email.utils
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_llmeval.engine.cache import ResponseCache
from pytest_llmeval.engine.client import MAX_RETRY_AFTER_S, CallError, retry_after
from pytest_llmeval.engine.engine import Engine
from pytest_llmeval.engine.limits import AdaptiveLimit
from tests.conftest import LLMProject, suite_yaml
from tests.openai_server import RETRY_AFTER_STYLES, OpenAIServer, Reply, Request
from tests.test_engine import numbered, numbered_cases
from tests.test_faults import request_for, spec

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({"Retry-After": "2"}, 2.0), ({"retry-after": " 0.5 "}, 0.5), ({"retry-after-ms": "250"}, 0.25),
     ({"retry-after-ms": "250", "retry-after": "9"}, 0.25), ({"retry-after": "0"}, 0.0),
     ({"retry-after": "-3"}, 0.0), ({"retry-after": "1e9"}, MAX_RETRY_AFTER_S),
     ({"retry-after": email.utils.formatdate(NOW + 3, usegmt=True)}, 3.0),
     ({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),
     ({"retry-after": "soon"}, None), ({"retry-after": "nan"}, None), ({}, None)],
)  # fmt: skip
def test_retry_after_in_seconds_milliseconds_and_as_an_http_date(
    headers: dict[str, str], seconds: float | None
) -> None:
    lowered = {name.lower(): value for name, value in headers.items()}
    assert retry_after(lowered, now=NOW) == (None if seconds is None else pytest.approx(seconds))


@given(st.dictionaries(st.sampled_from(["retry-after", "retry-after-ms"]), st.text(max_size=40)))
def test_any_retry_after_reads_as_a_bounded_wait_or_none(headers: dict[str, str]) -> None:
    wait = retry_after(headers, now=NOW)
    assert wait is None or 0.0 <= wait <= MAX_RETRY_AFTER_S


@pytest.mark.parametrize("style", RETRY_AFTER_STYLES)
def test_the_servers_token_bucket_answers_its_burst_then_429_in_each_style(
    style: str, openai_server: OpenAIServer
) -> None:
    openai_server.on("m", "fine")
    openai_server.rate_limit(rate=0.5, burst=2, retry_after=style)  # type: ignore[arg-type]
    with openai.OpenAI(base_url=openai_server.url, api_key="x", max_retries=0) as sdk:
        for _ in range(2):
            sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
        with pytest.raises(openai.RateLimitError) as refused:
            sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
    headers = refused.value.response.headers
    wait = retry_after(headers)
    assert openai_server.rate_limited() == 1
    assert openai_server.calls("m") == 3
    if style == "none":
        assert "retry-after" not in headers
        assert wait is None
    elif style == "seconds":
        assert headers["retry-after"] == "2"  # a token in 2 s at 0.5/s, in whole seconds
    elif style == "ms":
        assert 1900 <= int(headers["retry-after-ms"]) <= 2000
    else:
        assert email.utils.parsedate_to_datetime(headers["retry-after"]) is not None
        assert wait is not None
        assert 1.0 <= wait <= 3.0


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = Engine(ResponseCache(tmp_path / "cache", "cache"), mode="all", concurrency=4,
                  timeout=60.0, max_retries=0, rate_limit_retries=3)  # fmt: skip
    yield made
    made.close()


def arrivals(server: OpenAIServer, refusal: Reply) -> list[float]:
    """Script m1 to refuse the first attempt with ``refusal``, then answer; the attempts'
    arrival times."""
    times: list[float] = []
    lock = threading.Lock()

    def script(_request: Request) -> Reply:
        with lock:
            times.append(time.monotonic())
            first = len(times) == 1
        return refusal if first else Reply(content="ok")

    server.on("m1", script)
    return times


@pytest.mark.parametrize(
    ("headers", "at_least"),
    [({"Retry-After": "1"}, 0.95), ({"retry-after-ms": "600"}, 0.55),
     ({"Retry-After": "date"}, 1.0), ({}, 0.5 * 0.75)],
    ids=["seconds", "ms", "http-date", "absent-backoff"],
)  # fmt: skip
def test_a_429_is_retried_after_the_wait_it_asks_for_or_a_backoff(
    openai_server: OpenAIServer, engine: Engine, headers: dict[str, str], at_least: float
) -> None:
    if headers.get("Retry-After") == "date":
        # Two seconds on, in whole seconds: at least one second from now.
        headers = {"Retry-After": email.utils.formatdate(time.time() + 2, usegmt=True)}
    times = arrivals(openai_server, Reply(status=429, headers=headers))
    done = engine.answer(engine.start(request_for(spec(openai_server))))
    assert (done.text, done.attempts, done.rate_limited) == ("ok", 2, 1)
    assert len(times) == 2
    assert times[1] - times[0] >= at_least  # the wait is honoured (a bound below, not a timing)
    retries = [r.headers.get("x-stainless-retry-count") for r in openai_server.requests]
    assert retries == ["0", "1"]


def test_429s_spend_their_own_allowance_not_max_retries(
    openai_server: OpenAIServer, engine: Engine
) -> None:
    # max_retries=0: a 500 ends the request at once; three 429s are within the allowance.
    busy = Reply(status=429, error_message="busy", headers={"Retry-After": "0"})
    openai_server.on("m1", [busy, busy, busy, Reply(content="ok")])
    done = engine.answer(engine.start(request_for(spec(openai_server))))
    assert (done.text, done.attempts, done.rate_limited) == ("ok", 4, 3)
    openai_server.on("m1", busy)
    with pytest.raises(CallError) as raised:
        engine.answer(engine.start(request_for(spec(openai_server), "2")))
    assert (raised.value.attempts, raised.value.rate_limited) == (4, 4)
    assert "HTTP 429 from m1" in str(raised.value)
    assert str(raised.value).endswith("after 4 attempts: busy")
    openai_server.on("m1", Reply(status=500, error_message="boom"))
    with pytest.raises(CallError, match=r"HTTP 500 from m1 \(.*\): boom$"):
        engine.answer(engine.start(request_for(spec(openai_server), "3")))


def test_a_429_for_want_of_credit_is_not_retried(
    openai_server: OpenAIServer, engine: Engine
) -> None:
    body = {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota",
                      "code": "insufficient_quota"}}  # fmt: skip
    openai_server.on("m1", Reply(status=429, body=json.dumps(body).encode()))
    with pytest.raises(CallError, match="exceeded your current quota") as raised:
        engine.answer(engine.start(request_for(spec(openai_server))))
    assert (raised.value.attempts, openai_server.calls()) == (1, 1)


def test_the_pace_is_learned_from_429s_cut_once_per_round_and_grows_back() -> None:
    now = [10.0]
    limit = AdaptiveLimit(8, clock=lambda: now[0])
    assert limit.pace is None  # unpaced until the endpoint refuses
    limit._starts.extend([9.5] * 12)  # twelve starts in the last second
    limit.limited(started=9.5)
    assert limit.pace == pytest.approx(12.0)
    limit.limited(started=9.6)  # sent before the cut: says nothing about the new pace
    assert limit.pace == pytest.approx(12.0)
    now[0] = 11.0
    limit.limited(started=10.5)
    assert limit.pace == pytest.approx(12.0 * 0.9)
    for _ in range(10):
        limit.record(200, {})
    assert limit.pace == pytest.approx(12.0 * 0.9 + 1.0)


def test_a_429_storm_ends_with_every_item_answered_and_the_summary_says_how(
    pytester: pytest.Pytester, openai_server: OpenAIServer, llm_project: LLMProject
) -> None:
    # Every request is refused on its first four attempts (a storm, each 429 with a wait
    # of nothing); --llm-max-retries=0, so only the 429s' own allowance gets them through.
    def stormy(request: Request) -> Reply:
        if int(request.headers.get("x-stainless-retry-count", "0")) < 4:
            return Reply(status=429, error_message="busy", headers={"Retry-After": "0"})
        return Reply(content=json.dumps(numbered(request)))

    llm_project({"m1": stormy}, ini='llmeval_max_retries = "0"\nllmeval_concurrency = "4"',
                suite=suite_yaml(cases=numbered_cases(12)))  # fmt: skip
    result = pytester.runpytest("--llm-save=results.json")
    result.assert_outcomes(passed=12)
    assert openai_server.calls() == 12 * 5
    line = next(x for x in result.stdout.lines if x.startswith("llmeval rate limits: m1"))
    reached = re.fullmatch(r"llmeval rate limits: m1 answered 429 48 times; at most (\d+) in "
                           r"flight; concurrency lowered from 4 to \d+, \d+ at the end", line)  # fmt: skip
    assert reached is not None, line
    records = json.loads((pytester.path / "results.json").read_text())["records"]
    assert max(r["in_flight"] for r in records) == int(reached.group(1))
    assert 1 <= int(reached.group(1)) <= 4
    assert sum(r["rate_limited"] for r in records) == 48

    # When the storm outlasts the allowance, every item is an error that says so.
    result = pytester.runpytest("--llm-record=all", "-o", "llmeval_rate_limit_retries=2")
    result.assert_outcomes(errors=12)
    result.stdout.fnmatch_lines(["*no answer: HTTP 429 from m1 (*) after 3 attempts: busy"])
