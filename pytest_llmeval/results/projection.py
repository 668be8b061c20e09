"""A model's cost at a production volume (``--llm-cost-at``): its mean tokens per answered
request in this run, at its price, times the requests. A swap is decided at the volume it
will run at, not at the few cents a suite costs."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_llmeval.models import Price
from pytest_llmeval.results.records import Summary


@dataclass(frozen=True)
class Projection:
    """One suite and model's projected cost, with what it rests on."""

    model: str
    requests: int  # the volume projected to
    answered: int  # answers that came (every repeat one request); errors excluded
    # Per answered request whose tokens were counted; None when no answer's were.
    mean_input: float | None
    mean_output: float | None
    price: Price | None

    @property
    def cost(self) -> float | None:
        """requests x (mean in x price in + mean out x price out); None without a price or
        a measured answer, so an unpriced model never shows as free."""
        if self.price is None or self.mean_input is None or self.mean_output is None:
            return None
        return self.requests * self.price.cost(self.mean_input, self.mean_output)


def project(summary: Summary, price: Price | None, requests: int) -> Projection:
    """``summary``'s model at ``requests`` requests. An errored answer is left out: what
    its tokens were, if any, is not what an answer costs."""
    answered = [r for r in summary.records if r.outcome != "error"]
    # A server that reports no usage leaves a request's tokens unknown, not zero.
    counted = [r for r in answered if r.input_tokens is not None and r.output_tokens is not None]
    if not counted:
        return Projection(summary.model, requests, len(answered), None, None, price)
    mean_input = sum(r.input_tokens or 0 for r in counted) / len(counted)
    mean_output = sum(r.output_tokens or 0 for r in counted) / len(counted)
    return Projection(summary.model, requests, len(answered), mean_input, mean_output, price)
