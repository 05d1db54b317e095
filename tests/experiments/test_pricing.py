"""One price list (``llamakit.experiment.pricing``) behind the estimate, the plan, the budget's
reservation and a run's spend when no balance or header shows it: each model at its own price,
a judge's grading calls at the model its judge calls. The plan and the fallback spend used to
price every model at llama-v3-8b-instruct's figure (a 70b run: plan 0.00063 per call for
0.00191, spend 0.0126 for 0.0380 billed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import llamakit as lk
from llamakit import scoring
from llamakit._defaults import LOCAL_COST_BY_MODEL, LOCAL_COST_PER_CALL, PUBLISHED_COST_BY_MODEL

V3, V70 = "llama-v3-8b-instruct", "llama-v3p1-70b-instruct"
ITEMS = 6


@pytest.fixture
def srv() -> Iterator[Any]:
    with lk.local_server(backend="scripted", credits=10, latency_ms=1) as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> lk.Store:
    return lk.Store(tmp_path / "runs.db")


def experiment(models: list[str], *, name: str = "priced", scorers: Any = None) -> lk.Experiment:
    return lk.Experiment(
        name,
        prompts={"say": "Say {{ a }}", "add": "Add one to {{ a }}"},
        dataset=[{"id": f"q{i}", "a": str(i)} for i in range(ITEMS)],
        models=models,
        scorers=[scoring.contains("a")] if scorers is None else scorers,
    )


class NoBalance:
    """A chat callable that reports no balance: no credits(), no x-remaining-credits."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.model = inner, inner.model

    def chat(self, messages: Any, **params: Any) -> Any:
        reply = self.inner.chat(messages, **params)
        return dataclasses.replace(reply, credits_remaining=None)


def _published_mean(models: list[str]) -> Decimal:
    return sum((PUBLISHED_COST_BY_MODEL[m] for m in models), Decimal(0)) / len(models)


@pytest.mark.parametrize("models", [[V70], [V3, V70]])
def test_plan_and_estimate_price_each_model_alike(
    models: list[str], srv: Any, store: lk.Store
) -> None:
    exp = experiment(models)
    est = exp.estimate(srv.client(), store=store)
    plan = exp.plan(srv.client(), store=store, runs=20)
    assert plan.cost_per_call == est.cost_per_call == _published_mean(models)
    # The whole grid at the plan's price is the estimate's credits, to the last digit.
    assert plan.credits(est.calls) == est.credits


@pytest.mark.parametrize("models", [[V70], [V3, V70]])
def test_a_spend_no_balance_shows_is_priced_per_model(
    models: list[str], srv: Any, store: lk.Store
) -> None:
    exp = experiment(models)
    est = exp.estimate(srv.client(), store=store)
    run = exp.run(NoBalance(srv.client()), store=store, progress=False)
    assert run.status == "finished" and run.spend_source == "estimate"
    assert run.credits_spent == est.credits  # each paid call at its model's published price
    assert lk.runs(store).set_index("run_id").loc[run.id, "credits_spent"] == est.credits


def test_observed_prices_are_used_per_model_by_plan_and_estimate(srv: Any, store: lk.Store) -> None:
    # Serial: each call's header delta is its exact price (overlapping calls are apportioned).
    first = experiment([V3, V70], name="first")
    first.run(srv.client(), store=store, progress=False, concurrency=1)
    assert store.observed_cost_per_call(V70) == LOCAL_COST_BY_MODEL[V70]
    exp = lk.Experiment(
        "second",
        prompts={"ask": "Tell {{ a }}", "tell": "Echo {{ a }}"},
        dataset=[{"id": f"q{i}", "a": str(i)} for i in range(ITEMS)],
        models=[V3, V70],
        scorers=[scoring.contains("a")],
    )
    est = exp.estimate(srv.client(), store=store)
    plan = exp.plan(srv.client(), store=store, runs=20)
    observed = (LOCAL_COST_PER_CALL + LOCAL_COST_BY_MODEL[V70]) / 2
    assert est.cost_source == "observed"
    assert plan.cost_per_call == est.cost_per_call == observed


def test_a_judge_on_another_model_is_priced_at_its_model(srv: Any, store: lk.Store) -> None:
    grader = srv.client(model=V70)
    judge = scoring.judge(grader, "Does it mention {{ a }}?", name="grade", reask=False)
    exp = experiment([V3], scorers=[judge])
    est = exp.estimate(srv.client(), store=store)
    cells = 2 * ITEMS
    assert est.judge_calls == cells
    assert est.judge_credits == cells * PUBLISHED_COST_BY_MODEL[V70]
    assert est.credits == cells * (PUBLISHED_COST_BY_MODEL[V3] + PUBLISHED_COST_BY_MODEL[V70])
    # The budget reserves a call at the dearest model the run calls, its judge's included: a
    # budget that fits one 8b call but not one 70b grading is refused before anything is sent.
    before = srv.stats()["requests"]
    with pytest.raises(lk.ValidationError, match="below the cost of one call"):
        exp.run(srv.client(), store=store, progress=False, budget=Decimal("0.001"))
    assert srv.stats()["requests"] == before


def test_the_plan_prices_each_cells_gradings_as_the_estimate_does(
    srv: Any, store: lk.Store
) -> None:
    # The plan priced a cell's call alone: a judged grid on a 70b grader came out at a quarter
    # of what the estimate (and the run) pay.
    grader = scoring.judge(srv.client(model=V70), "Does it mention {{ a }}?", name="big")
    exp = experiment([V3], scorers=[grader, scoring.judge(None, "Is it short?", name="short")])
    est = exp.estimate(srv.client(), store=store)
    plan = exp.plan(srv.client(), store=store, runs=20)
    cells = 2 * ITEMS
    assert est.judge_calls == 2 * cells and est.calls == 3 * cells
    assert plan.credits(cells) == est.credits  # the whole grid, gradings included, exactly
    assert plan.judge_calls_per_cell == 2
    assert plan.judge_cost_per_cell == PUBLISHED_COST_BY_MODEL[V70] + PUBLISHED_COST_BY_MODEL[V3]
    assert plan.seconds(cells) == 3 * cells * plan.seconds_per_call
    assert "include 2 grading calls a cell" in str(plan)
