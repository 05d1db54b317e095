"""What a call costs. Pluggable: flat per successful call (the default) or per token."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol


def to_decimal(value: float | int | str | Decimal) -> Decimal:
    """Exact decimal for a user-given amount: 0.00063 stays 0.00063 (not its binary neighbour)."""
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value))


class CostModel(Protocol):
    def estimate(self, prompt_tokens: int, max_tokens: int) -> Decimal:
        """The most the call can cost; held against the balance while the call runs."""
        ...

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        """What the finished call is billed (never more than `estimate`)."""
        ...


class FlatCost:
    def __init__(self, per_call: float | Decimal) -> None:
        self.per_call = to_decimal(per_call)

    def estimate(self, prompt_tokens: int, max_tokens: int) -> Decimal:
        return self.per_call

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return self.per_call

    def __repr__(self) -> str:
        return f"FlatCost({self.per_call})"


class PerTokenCost:
    def __init__(self, prompt: float | Decimal, completion: float | Decimal) -> None:
        self.prompt = to_decimal(prompt)
        self.completion = to_decimal(completion)

    def estimate(self, prompt_tokens: int, max_tokens: int) -> Decimal:
        return self.cost(prompt_tokens, max_tokens)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return self.prompt * prompt_tokens + self.completion * completion_tokens

    def __repr__(self) -> str:
        return f"PerTokenCost(prompt={self.prompt}, completion={self.completion})"


def make_cost_model(
    cost_per_call: float | Decimal,
    cost_per_token: float | Decimal | tuple[float | Decimal, float | Decimal] | None,
) -> CostModel:
    if cost_per_token is None:
        return FlatCost(cost_per_call)
    if isinstance(cost_per_token, (tuple, list)):
        prompt, completion = cost_per_token
        return PerTokenCost(prompt, completion)
    return PerTokenCost(cost_per_token, cost_per_token)
