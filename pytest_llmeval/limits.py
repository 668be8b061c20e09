"""How many requests a model may have in flight: a cap that adapts to its 429 answers."""

from __future__ import annotations

import asyncio
import contextlib
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
        self.rate_limited = 0  # 429 responses seen
        self.in_flight = 0
        self.paused_until = 0.0
        self._clock = clock
        self._recent: deque[bool] = deque(maxlen=WINDOW)
        self._since_change = 0
        self._changed: asyncio.Condition | None = None

    @property
    def _condition(self) -> asyncio.Condition:
        if self._changed is None:  # created in the event loop that uses it
            self._changed = asyncio.Condition()
        return self._changed

    async def __aenter__(self) -> None:
        async with self._condition:
            while True:
                wait = self.paused_until - self._clock()
                if self.in_flight < self.limit and wait <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._condition.wait(), wait if wait > 0 else None)
            self.in_flight += 1

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        async with self._condition:
            self.in_flight -= 1
            self._condition.notify_all()

    async def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Take one HTTP response of this model into account."""
        if self.record(status, headers):
            async with self._condition:
                self._condition.notify_all()

    def record(self, status: int, headers: Mapping[str, str]) -> bool:
        """Update the cap from a response; True when waiting requests may now start."""
        limited = status == 429
        self.rate_limited += limited
        pause = _reset_pause(headers)
        if pause:
            self.paused_until = max(self.paused_until, self._clock() + pause)
        self._recent.append(limited)
        self._since_change += 1
        if self._since_change < WINDOW:
            return False
        share = sum(self._recent) / len(self._recent)
        if share >= LOWER_AT and self.limit > 1:
            self.limit = max(1, self.limit // 2)
            self.lowest = min(self.lowest, self.limit)
            self._since_change = 0
            self._recent.clear()
            return False
        if share <= RAISE_AT and self.limit < self.maximum:
            self.limit += 1
            self._since_change = 0
            return True
        return False


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
