"""Projected money is exact too: prices, estimates, plans, the store's observed cost per call and
the budget's reservation are Decimals (USD), so a projection equals the sum of its unit costs to
the last digit and a budget is held to it exactly."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from exp_helpers import billed, make_experiment

import llamakit as lk
from llamakit import scoring
from llamakit._defaults import (
    LOCAL_COST_PER_CALL,
    PUBLISHED_COST_BY_MODEL,
    PUBLISHED_COST_PER_CALL,
)
from llamakit.experiment.pricing import expected_cost_per_call, published_cost

MODEL = "llama-v3-8b-instruct"
# One unit of the 19th decimal place, and a price that much above the published one. Read as
# floats (15 digits), the two prices are one and the same 0.000631552243441485.
TICK = Decimal("1E-19")
DEARER = PUBLISHED_COST_PER_CALL + TICK
AS_FLOAT = Decimal(f"{float(DEARER):.15g}")


def test_the_prices_are_decimals() -> None:
    assert type(PUBLISHED_COST_PER_CALL) is Decimal and type(LOCAL_COST_PER_CALL) is Decimal
    assert str(PUBLISHED_COST_PER_CALL) == "0.0006315522434414854"
    assert str(LOCAL_COST_PER_CALL) == "0.00063"
    assert published_cost(MODEL) == PUBLISHED_COST_PER_CALL == PUBLISHED_COST_BY_MODEL[MODEL]
    assert published_cost("llama-v3p1-70b-instruct") == Decimal("0.0019101056600713583")
    assert published_cost("some-new-slug") == PUBLISHED_COST_PER_CALL
    assert AS_FLOAT == Decimal(f"{float(PUBLISHED_COST_PER_CALL):.15g}") < PUBLISHED_COST_PER_CALL


def test_an_estimate_is_the_exact_sum_of_its_unit_costs(server: Any, tmp_path: Path) -> None:
    est = make_experiment(items=1, repeats=1).estimate(
        server.client(), store=lk.Store(tmp_path / "s.db")
    )
    assert est.calls == 3 and est.cost_source == "published"
    for value in (est.cost_per_call, est.credits, est.judge_credits):
        assert type(value) is Decimal
    assert est.cost_per_call == PUBLISHED_COST_PER_CALL
    assert est.credits == Decimal("0.0018946567303244562") == 3 * PUBLISHED_COST_PER_CALL
    assert est.judge_credits == 0 and str(est.judge_credits) == "0"
    assert "~0.0019 credits at 0.000632/call (published)" in str(est)
    as_dict = est.to_dict()
    assert as_dict["credits"] == est.credits and type(as_dict["credits"]) is Decimal
    assert json.loads(json.dumps(as_dict, default=str))["credits"] == "0.0018946567303244562"
    assert billed(server) == 0


def test_judge_calls_are_priced_exactly(server: Any, tmp_path: Path) -> None:
    judge = scoring.judge(None, "Is it right?", name="grade")
    est = make_experiment(items=2, repeats=1, scorers=[judge]).estimate(
        server.client(), store=lk.Store(tmp_path / "s.db")
    )
    assert est.judge_calls == 6 and type(est.judge_credits) is Decimal
    assert est.judge_credits == 6 * PUBLISHED_COST_PER_CALL
    assert est.credits == 12 * PUBLISHED_COST_PER_CALL


def _priced_run(
    price: Decimal, store: lk.Store, *, items: int = 2, name: str = "arith", **run: Any
) -> tuple[Any, int]:
    """A run on a stand-in billing ``price`` per call, one call at a time (each call's credits
    exact); the run and the calls the server billed."""
    with lk.local_server(backend="scripted", credits=10, cost_per_call=price) as srv:
        result = make_experiment(items=items, repeats=1, name=name).run(
            srv.client(), store=store, concurrency=1, progress=False, **run
        )
        return result, billed(srv)


def test_observed_cost_per_call_is_the_exact_mean(tmp_path: Path) -> None:
    store = lk.Store(tmp_path / "s.db")
    assert store.observed_cost_per_call(MODEL) is None
    price = Decimal("0.000123456789")
    _priced_run(price, store)
    observed = store.observed_cost_per_call(MODEL)
    assert type(observed) is Decimal and observed == price
    # Figures whose float mean (SQLite's AVG) is 0.30000000000000004. Unpriced and zero-cost
    # calls are not counted: (0.1 + 0.2 + 0.3 + 0.6) / 4.
    keys = [r["cell_key"] for r in store.query("SELECT cell_key FROM responses")]
    figures = ["0.1", "0.2", "0.3", "0", None, "0.6"]
    store.set_response_credits(
        (None, None, k) if f is None else (Decimal(f), "exact", k)
        for f, k in zip(figures, keys, strict=True)
    )
    assert store.observed_cost_per_call(MODEL) == Decimal("0.3")
    assert store.observed_cost_per_call(None) == Decimal("0.3")
    assert store.observed_cost_per_call("llama-v3p1-8b-instruct") is None


def test_the_estimate_uses_the_exact_observed_mean(server: Any, tmp_path: Path) -> None:
    store = lk.Store(tmp_path / "s.db")
    _priced_run(DEARER, store)
    est = make_experiment(items=3, repeats=1).estimate(server.client(), store=store)
    assert est.cost_source == "observed" and est.cells_to_run == 3
    assert est.cost_per_call == DEARER and est.credits == 3 * DEARER


def test_a_budget_reserves_the_dearer_of_observed_and_published_exactly(tmp_path: Path) -> None:
    store = lk.Store(tmp_path / "s.db")
    assert expected_cost_per_call(store, MODEL) == PUBLISHED_COST_PER_CALL
    _priced_run(Decimal("0.0001"), store)  # cheaper than published: published is reserved
    assert expected_cost_per_call(store, MODEL) == PUBLISHED_COST_PER_CALL
    other = lk.Store(tmp_path / "other.db")
    _priced_run(DEARER, other)
    assert expected_cost_per_call(other, MODEL) == DEARER
    assert type(expected_cost_per_call(other, MODEL)) is Decimal


def test_a_budget_a_hair_below_one_call_is_refused_before_paying(tmp_path: Path) -> None:
    # What reserving the published price as a float (15 digits) let through: 4E-19 short of a
    # call, and a call was paid over it.
    short = Decimal(f"{float(PUBLISHED_COST_PER_CALL):.15g}")
    store = lk.Store(tmp_path / "s.db")
    with pytest.raises(lk.ValidationError, match="below the cost of one call"):
        _priced_run(PUBLISHED_COST_PER_CALL, store, budget=short)
    assert store.query("SELECT COUNT(*) AS n FROM responses")[0]["n"] == 0


@pytest.mark.parametrize(
    ("budget", "paid"),
    [(2 * DEARER, 2), (2 * DEARER - TICK, 1), (DEARER, 1), (DEARER - TICK, 0)],
)
def test_a_budget_reserves_the_observed_price_exactly(
    tmp_path: Path, budget: Decimal, paid: int
) -> None:
    # The store saw DEARER per call, so each call reserves that to the last digit: a budget of
    # exactly n calls pays n, one unit of its last digit less pays one fewer, and less than one
    # call is refused before paying (reserving the float's AS_FLOAT, it paid a call over budget).
    store = lk.Store(tmp_path / "s.db")
    _priced_run(DEARER, store, items=1)
    if not paid:
        with pytest.raises(lk.ValidationError, match="below the cost of one call"):
            _priced_run(DEARER, store, items=4, name="next", budget=budget)
        return
    run, billed_calls = _priced_run(DEARER, store, items=4, name="next", budget=budget)
    assert run.status == "budget" and billed_calls == paid
    assert run.credits_spent == paid * DEARER <= budget


def test_a_plan_prices_its_cells_exactly(tmp_path: Path) -> None:
    rows = [{"id": f"q{i}", "expected": "yes"} for i in range(200)]
    exp = lk.Experiment(
        "plan", {"a": "a {{ id }}", "b": "b {{ id }}"}, rows, scorers=[scoring.contains()]
    )
    plan = exp.plan(effect=0.1, runs=20, store=lk.Store(tmp_path / "s.db"))
    assert type(plan.cost_per_call) is Decimal and plan.cost_per_call == PUBLISHED_COST_PER_CALL
    assert plan.credits(plan.fixed_cells) == plan.fixed_cells * PUBLISHED_COST_PER_CALL
    assert plan.credits(400) == Decimal("0.25262089737659416")
    assert type(plan.credits(plan.sequential_cells_mean)) is Decimal
    assert f"{plan.credits(400):>10.4f}" in str(plan)  # the full grid's line
