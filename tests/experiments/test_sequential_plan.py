"""``Experiment.plan``: fixed-size vs sequential, from a simulation on the experiment's shape;
it sends no call, and bad values fail with ValidationError."""

from __future__ import annotations

from typing import Any

import pytest
from exp_helpers import billed

import llamakit as lk
from llamakit import scoring


def _experiment(items: int = 400, variants: int = 2) -> lk.Experiment:
    prompts = {f"v{i}": f"v{i}: item {{{{ id }}}}" for i in range(variants)}
    rows = [{"id": f"q{i}", "expected": "yes"} for i in range(items)]
    return lk.Experiment("plan", prompts, rows, scorers=[scoring.contains()])


def test_plan_compares_fixed_and_sequential_without_a_call(server: Any, tmp_path: Any) -> None:
    plan = _experiment().plan(
        server.client(), effect=0.1, power=0.8, runs=40, store=lk.Store(tmp_path / "s.db")
    )
    # the paired z-test's n: (z_.975 + z_.8)^2 * (0.2 - 0.1^2) / 0.1^2 = 149.1 -> 150 items
    assert plan.fixed_items == 150 and plan.fixed_cells == 300
    assert abs(plan.fixed_power - 0.8) < 0.01
    assert 0 < plan.sequential_items_mean < 400 and plan.sequential_power > 0.8
    assert plan.sequential_cells_mean == pytest.approx(2 * plan.sequential_items_mean)
    text = str(plan)
    assert "fixed size" in text and "sequential (mean)" in text and "full grid" in text
    assert billed(server) == 0


def test_a_larger_effect_needs_fewer_items(tmp_path: Any) -> None:
    exp = _experiment()
    store = lk.Store(tmp_path / "s.db")
    small = exp.plan(effect=0.1, runs=40, store=store)
    large = exp.plan(effect=0.2, runs=40, store=store)
    assert large.sequential_items_mean < small.sequential_items_mean
    assert large.fixed_items < small.fixed_items


def test_plan_for_best_counts_every_condition(tmp_path: Any) -> None:
    plan = _experiment(items=200, variants=3).plan(
        stop=lk.stop.best("contains"),
        effect=0.2,
        disagreement=0.5,
        runs=20,
        store=lk.Store(tmp_path / "s.db"),
    )
    assert plan.conditions == 3 and plan.rule.startswith("best(")
    assert plan.sequential_cells_mean <= 3 * 200


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"effect": 0}, "effect"),
        ({"power": 1.2}, "power"),
        ({"effect": 0.3, "disagreement": 0.2}, "cannot exceed"),
        ({"stop": lk.stop.compare("v0", "nope", "contains")}, "not a variant"),
        ({"alpha": 1}, "alpha"),
    ],
)
def test_bad_plan_values_are_refused(kw: dict[str, Any], match: str, tmp_path: Any) -> None:
    with pytest.raises(lk.ValidationError, match=match):
        _experiment(items=20).plan(runs=5, store=lk.Store(tmp_path / "s.db"), **kw)
