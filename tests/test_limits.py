"""The adaptive per-model limit, OpenAI's reset durations, and the budget's arithmetic."""

from __future__ import annotations

import asyncio
import time

import pytest

from pytest_llmeval.engine.budget import Budget, estimate_tokens
from pytest_llmeval.engine.client import LLMRequest
from pytest_llmeval.engine.limits import AdaptiveLimit, parse_duration
from pytest_llmeval.models import ModelSpec
from pytest_llmeval.suite.model import Message, ResponseFormat

OK: dict[str, str] = {}


def feed(limit: AdaptiveLimit, statuses: list[int]) -> None:
    for status in statuses:
        limit.record(status, OK)


def test_a_run_of_429s_halves_the_limit_down_to_one() -> None:
    limit = AdaptiveLimit(8)
    feed(limit, [429] * 9)
    assert limit.limit == 8  # too few responses to judge yet
    feed(limit, [429])
    assert (limit.limit, limit.lowest) == (4, 4)
    feed(limit, [429] * 10)
    assert limit.limit == 2
    feed(limit, [429] * 30)
    assert (limit.limit, limit.lowest) == (1, 1)


def test_successes_raise_it_again_one_step_at_a_time_to_the_maximum() -> None:
    limit = AdaptiveLimit(4)
    feed(limit, [429] * 10)
    assert limit.limit == 2
    feed(limit, [200] * 10)
    assert limit.limit == 3
    feed(limit, [200] * 100)
    assert (limit.limit, limit.lowest) == (4, 2)


def test_scattered_429s_leave_it_alone() -> None:
    # One in five refused (as a busy shared endpoint does): the SDK retries those.
    limit = AdaptiveLimit(32)
    feed(limit, [429, 200, 200, 200, 200] * 40)
    assert limit.limit == 32


def test_half_refused_counts_as_a_limit() -> None:
    limit = AdaptiveLimit(32)
    feed(limit, [429, 200] * 5)
    assert limit.limit == 16


def test_500s_are_not_rate_limits() -> None:
    limit = AdaptiveLimit(8)
    feed(limit, [500] * 30)
    assert limit.limit == 8


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("120ms", 0.12), ("1h2m3.5s", 3723.5), ("0s", 0.0),
     ("", 0.0), ("soon", 0.0), ("5", 0.0), ("1s junk", 0.0)],
)  # fmt: skip
def test_reset_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_no_requests_left_pauses_new_ones_until_the_reset() -> None:
    now = [100.0]
    limit = AdaptiveLimit(4, clock=lambda: now[0])
    limit.record(200, {"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "9s"})
    assert limit.paused_until == 0.0
    limit.record(200, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"})
    assert limit.paused_until == 102.0
    limit.record(200, {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m0s"})
    assert limit.paused_until == 160.0


def test_at_most_the_limit_is_in_flight_and_waiters_start_as_others_end() -> None:
    limit = AdaptiveLimit(3)
    most = 0

    async def one() -> None:
        nonlocal most
        async with limit:
            most = max(most, limit.in_flight)
            await asyncio.sleep(0.01)

    async def run() -> None:
        await asyncio.gather(*(one() for _ in range(12)))

    asyncio.run(run())
    assert most == 3
    assert limit.in_flight == 0


def test_a_pause_holds_new_requests_until_it_ends() -> None:
    limit = AdaptiveLimit(3)
    order: list[str] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()
        limit.paused_until = time.monotonic() + 0.2
        started = loop.time()
        async with limit:
            order.append("entered")
        order.append(f"waited {loop.time() - started >= 0.15}")

    asyncio.run(run())
    assert order == ["entered", "waited True"]


# -- budget --------------------------------------------------------------------------------


def request(system: str, user: str, expected_chars: int = 0, **params: object) -> LLMRequest:
    model = ModelSpec(name="m", model="m", params=params)
    messages = (Message("system", system), Message("user", user))
    return LLMRequest(model, messages, ResponseFormat(), expected_chars=expected_chars)


def test_token_estimates() -> None:
    # 400 + 40 characters = 110 tokens, plus 4 for each of the 2 messages.
    assert estimate_tokens(request("s" * 400, "u" * 40)) == (118, 256)
    # The expected answer's length says how long the answer will be...
    assert estimate_tokens(request("s" * 400, "u" * 40, expected_chars=80)) == (118, 20)
    # ...capped by max_tokens; without an expected answer, max_tokens is the estimate.
    assert estimate_tokens(request("s", "u", expected_chars=800, max_tokens=50))[1] == 50
    assert estimate_tokens(request("s", "u", max_completion_tokens=64))[1] == 64


def test_the_budget_refuses_what_would_pass_it() -> None:
    budget = Budget(limit=1.0, label="$1")
    assert budget.reserve(0.4)
    assert budget.reserve(0.4)
    assert not budget.reserve(0.4)  # 0.8 reserved + 0.4 > 1.0
    budget.settle(0.4, 0.1)  # the first cost less than estimated
    assert budget.reserve(0.4)  # 0.1 spent + 0.8 reserved
    budget.settle(0.4, None)  # an answer without usage is charged at its estimate
    assert budget.spent == pytest.approx(0.5)
