"""Spend before it happens: token estimates for a request, and the --llm-max-cost budget."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_llmeval.engine.client import LLMRequest

# OpenAI's rule of thumb for English: a token is about four characters.
CHARS_PER_TOKEN = 4
# Each chat message costs a few tokens of framing besides its text.
TOKENS_PER_MESSAGE = 4
# Output when neither max_tokens nor an expected answer says how long it will be.
DEFAULT_OUTPUT_TOKENS = 256


def estimate_tokens(request: LLMRequest) -> tuple[int, int]:
    """(input, output) tokens, before the call: from the text sent and the answer expected."""
    sent = sum(len(m.content) for m in request.messages)
    tokens_in = sent // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE * len(request.messages)
    body = request.body()
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    expected = request.expected_chars // CHARS_PER_TOKEN if request.expected_chars else None
    tokens_out = expected or DEFAULT_OUTPUT_TOKENS
    if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
        tokens_out = min(tokens_out, cap) if expected else cap
    return tokens_in, tokens_out


def estimate_cost(request: LLMRequest) -> float | None:
    price = request.model.price
    return None if price is None else price.cost(*estimate_tokens(request))


@dataclass
class Budget:
    """Dollars this process may spend. A request reserves its estimate before it is sent and
    settles at its real cost; one that would take the total past the limit is not sent."""

    limit: float
    label: str  # the budget as the user set it, for messages
    spent: float = 0.0
    reserved: float = 0.0

    def reserve(self, estimate: float) -> bool:
        if self.spent + self.reserved + estimate > self.limit:
            return False
        self.reserved += estimate
        return True

    def settle(self, estimate: float, cost: float | None) -> None:
        self.reserved -= estimate
        # An answer the endpoint did not count is charged at the estimate.
        self.spent += estimate if cost is None else cost
