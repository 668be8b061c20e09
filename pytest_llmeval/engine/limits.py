"""How many requests a model may have in flight: a cap that adapts to its 429 answers."""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType

# Decisions look at this many recent responses: one 429 among them is noise, most is a limit.
WINDOW = 10
LOWER_AT = 0.5  # share of 429s in the window that halves the cap
RAISE_AT = 0.2  # share at or below which the cap grows again by one

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class AdaptiveLimit:
    """A model's cap on requests in flight, additive-increase / multiplicative-decrease.

    When at least half of the last ``WINDOW`` responses are 429s the cap halves (a model
    that keeps refusing is not hammered); while at most a fifth are, it grows by one up to
    its maximum again. Scattered 429s leave it alone: the SDK retries those requests.
    OpenAI's ``x-ratelimit-remaining-*: 0`` headers pause new requests until the reset.
    """

    def __init__(self, maximum: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.lowest = maximum
        self.in_flight = 0
        self.paused_until = 0.0
        self._clock = clock
        self._recent: deque[bool] = deque(maxlen=WINDOW)
        self._since_change = 0
        # Requests waiting for a place, first come first served. Each is woken only when
        # there is a place for it: thousands may wait, and waking them all at every
        # release would cost thousands of wake-ups each time.
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> None:
        if not self._waiting and self._has_room():
            self.in_flight += 1
            return
        place = asyncio.get_running_loop().create_future()
        self._waiting.append(place)
        self._wake()  # a pause may be all that holds it: start the timer
        try:
            await place
        except asyncio.CancelledError:
            if place.done() and not place.cancelled():  # given a place, then cancelled
                self.in_flight -= 1
                self._wake()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.in_flight -= 1
        self._wake()

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Take one HTTP response of this model into account (in the event loop)."""
        self.record(status, headers)
        self._wake()

    def _has_room(self) -> bool:
        return self.in_flight < self.limit and self._clock() >= self.paused_until

    def _wake(self) -> None:
        """Give free places to waiting requests, in order; during a pause, come back after."""
        while self._waiting and self._has_room():
            place = self._waiting.popleft()
            if not place.done():  # not cancelled while it waited
                self.in_flight += 1
                place.set_result(None)
        pause = self.paused_until - self._clock()
        if self._waiting and pause > 0 and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(pause, self._resume)

    def _resume(self) -> None:
        self._timer = None
        self._wake()

    def record(self, status: int, headers: Mapping[str, str]) -> None:
        """Update the cap from a response."""
        limited = status == 429
        pause = _reset_pause(headers)
        if pause:
            self.paused_until = max(self.paused_until, self._clock() + pause)
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
