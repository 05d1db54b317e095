"""What a call costs before the provider says so (or when it never does): the one price list of
the estimate, the plan, the budget's reservation and a run's spend when no balance or header
shows it.

Each model is priced on its own: the mean cost the store observed for that model's calls, else
Segmind's published average for its slug (``published_cost``). The plan and a run's fallback
spend used to price every model at llama-v3-8b-instruct's figure, so a 70b run's plan and spend
came out at a third of its cost while the estimate priced it right. A judge's grading calls are
priced at the model they go to (``judge_slug``), not at the model of the replies they grade.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..client.credits import ZERO, published_cost

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["Prices", "expected_cost_per_call", "judge_slug", "published_cost"]


class Prices:
    """The price of a call to each model, read from ``store`` once per model (USD, exact)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._observed: dict[str, Decimal | None] = {}

    def observed(self, model: str) -> Decimal | None:
        """The mean cost the store observed for ``model``'s calls, or None."""
        if model not in self._observed:
            self._observed[model] = self._store.observed_cost_per_call(model)
        return self._observed[model]

    def of(self, model: str) -> Decimal:
        """What a call to ``model`` is expected to cost: observed, else published."""
        observed = self.observed(model)
        return published_cost(model) if observed is None else observed

    def reserve(self, model: str) -> Decimal:
        """What a budget reserves per call to ``model``: the larger of the observed and the
        published figure, so a budget is never under-reserved."""
        observed = self.observed(model)
        published = published_cost(model)
        return published if observed is None else max(observed, published)

    def all_observed(self, models: Iterable[str]) -> bool:
        return all(self.observed(m) is not None for m in models)

    def mean(self, models: Iterable[str]) -> Decimal:
        """The mean price of one call to each of ``models`` (a run's calls split evenly over its
        models): exact when the division ends within Decimal's 28 significant digits."""
        prices = [self.of(m) for m in models]
        return sum(prices, ZERO) / len(prices)


def expected_cost_per_call(store: Store, model: str) -> Decimal:
    """What a budget reserves per call to ``model`` (``Prices.reserve``)."""
    return Prices(store).reserve(model)


def judge_slug(scorer: Any, client: Any, model: str) -> str:
    """The slug a judge's grading calls go to: its own client's model, else the run client's,
    else ``model`` (the run's first)."""
    judge_client = scorer.client if getattr(scorer, "client", None) is not None else client
    return getattr(judge_client, "model", None) or model
