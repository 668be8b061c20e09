"""How many requests a model may have in flight, and how fast they may start: a cap and a
pace that adapt to its 429 answers."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType

# Decisions look at this many recent responses: one 429 among them is noise, most is a limit.
WINDOW = 10
LOWER_AT = 0.5  # share of 429s in the window that halves the cap
RAISE_AT = 0.2  # share at or below which the cap grows again by one

# The pace (starts a second) is learned from the 429s: the first sets it to the starts of
# the last RATE_WINDOW seconds; each later one cuts it by PACE_CUT, unless the attempt
# started before the last cut (it says nothing about the pace since). Every answer that
# is not a 429 raises it by PACE_GROWTH, so it grows by that share of itself each second
# and finds the endpoint's rate again: a pace a little over the rate costs a few 429s,
# one under it costs time.
RATE_WINDOW = 1.0
PACE_CUT = 0.9
PACE_GROWTH = 0.1
SLOWEST_PACE = 0.05  # starts a second: a pace never falls under one start in 20 s

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class AdaptiveLimit:
    """A model's cap on requests in flight, additive-increase / multiplicative-decrease,
    and its pace: how many may start a second, learned from its 429s.

    When at least half of the last ``WINDOW`` responses are 429s the cap halves (a model
    that keeps refusing is not hammered); while at most a fifth are, it grows by one up to
    its maximum again. Scattered 429s leave the cap alone; each cuts the pace instead
    (``limited``), which a rate limit in requests a second is about. A retry waits at the
    front of the queue: it is older than every request still waiting.
    OpenAI's ``x-ratelimit-remaining-*: 0`` headers pause new requests until the reset.
    """

    def __init__(self, maximum: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.lowest = maximum
        self.in_flight = 0
        self.paused_until = 0.0
        self.most_in_flight = 0
        self.pace: float | None = None  # starts a second; None until the first 429
        self._next_start = 0.0
        self._starts: deque[float] = deque()  # of the last RATE_WINDOW seconds
        self._cut_at = -math.inf
        self.clock = clock
        self._recent: deque[bool] = deque(maxlen=WINDOW)
        self._since_change = 0
        # Requests waiting for a place, first come first served. Each is woken only when
        # there is a place for it: thousands may wait, and waking them all at every
        # release would cost thousands of wake-ups each time.
        self._waiting: deque[asyncio.Future[int]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    async def acquire(self, *, retry: bool = False) -> int:
        """Wait for a place (a retry ahead of every new request); the requests in flight
        with it, itself included."""
        if not self._waiting and self._has_room():
            self._take()
            return self.in_flight
        place = asyncio.get_running_loop().create_future()
        if retry:
            self._waiting.appendleft(place)
        else:
            self._waiting.append(place)
        self._wake()  # a pause or the pace may be all that holds it: start the timer
        try:
            await place
        except asyncio.CancelledError:
            if place.done() and not place.cancelled():  # given a place, then cancelled
                self.release()
            raise
        return int(place.result())

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def limited(self, started: float) -> None:
        """An attempt that started at ``started`` (this limit's clock) was answered 429."""
        now = self.clock()
        if started < self._cut_at:
            return  # sent at the old pace
        self._cut_at = now
        if self.pace is None:
            self._forget_starts(now)
            self.pace = max(SLOWEST_PACE, len(self._starts) / RATE_WINDOW)
        else:
            self.pace = max(SLOWEST_PACE, self.pace * PACE_CUT)
        # The next start waits its new interval from the last one.
        self._next_start = max(self._next_start, now + 1 / self.pace)

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Take one HTTP response of this model into account (in the event loop)."""
        self.record(status, headers)
        self._wake()

    def _has_room(self) -> bool:
        now = self.clock()
        return self.in_flight < self.limit and now >= self.paused_until and now >= self._next_start

    def _take(self) -> None:
        now = self.clock()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self._starts.append(now)
        self._forget_starts(now)
        if self.pace is not None:
            self._next_start = max(now, self._next_start) + 1 / self.pace

    def _forget_starts(self, now: float) -> None:
        while self._starts and self._starts[0] < now - RATE_WINDOW:
            self._starts.popleft()

    def _wake(self) -> None:
        """Give free places to waiting requests, in order; while a pause or the pace holds
        them, come back when it lets the next one go."""
        while self._waiting and self._has_room():
            place = self._waiting.popleft()
            if not place.done():  # not cancelled while it waited
                self._take()
                place.set_result(self.in_flight)
        hold = max(self.paused_until, self._next_start) - self.clock()
        if self._waiting and hold > 0 and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(hold, self._resume)

    def _resume(self) -> None:
        self._timer = None
        self._wake()

    def record(self, status: int, headers: Mapping[str, str]) -> None:
        """Update the cap from a response."""
        limited = status == 429
        if not limited and self.pace is not None:
            self.pace += PACE_GROWTH
        pause = _reset_pause(headers)
        if pause:
            self.paused_until = max(self.paused_until, self.clock() + pause)
        self._recent.append(limited)
        self._since_change += 1
        if self._since_change < WINDOW:
            return
        share = sum(self._recent) / len(self._recent)
        if share >= LOWER_AT and self.limit > 1:
            self.limit = max(1, self.limit // 2)
            self.lowest = min(self.lowest, self.limit)
            self._since_change = 0
            self._recent.clear()
        elif share <= RAISE_AT and self.limit < self.maximum:
            self.limit += 1
            self._since_change = 0


def _reset_pause(headers: Mapping[str, str]) -> float:
    """Seconds to hold new requests when OpenAI's rate-limit headers say none are left."""
    pause = 0.0
    for kind in ("requests", "tokens"):
        if headers.get(f"x-ratelimit-remaining-{kind}", "").strip() == "0":
            pause = max(pause, parse_duration(headers.get(f"x-ratelimit-reset-{kind}", "")))
    return pause


def parse_duration(text: str) -> float:
    """OpenAI's reset durations: "1s", "6m0s", "120ms", "1h2m3.5s"; anything else is 0."""
    text = text.strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return 0.0
    return sum(float(number) * _SECONDS[unit] for number, unit in parts)
