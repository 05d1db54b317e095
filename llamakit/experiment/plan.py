"""``Experiment.plan``: items, credits and time for a fixed-size run vs a sequential one, before
paying; and the vectorised simulations of the stop rules that it and ``benchmarks/sequential.py``
share.

Fixed size: the paired two-sided z-test's sample size, ``n = (z_{1-alpha/2} + z_power)^2 var /
effect^2`` with ``var = q - effect^2`` the variance of a per-item difference in {-1, 0, 1} when
the variants disagree on a fraction ``q`` of items. Sequential: ``runs`` simulated runs of the
rule on the experiment's own shape (its item count, batch size from the concurrency, conditions),
with the same confidence sequences and batches as the runner (``experiment.sequential``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..client.credits import ZERO, to_credits
from ..errors import ValidationError
from ..scoring.sequential import DEFAULT_GRID, BettingState
from .stop import Best, Compare, compare

if TYPE_CHECKING:
    from ..store import StoreArg

FloatArray = npt.NDArray[np.float64]
BASE_ACCURACY = 0.6  # of the worse variant(s) in best()'s simulation: errors independent


def simulate_compare(
    d: FloatArray, alpha: float, batch: int, margin: float = 0.0
) -> tuple[FloatArray, FloatArray]:
    """Runs of ``compare`` on per-item differences ``d`` in [-1, 1], shape (runs, items), looked
    at every ``batch`` items: (items used, decision sign: +1 a better, -1 b better, 0 none)."""
    runs, items = d.shape
    state = BettingState(runs, alpha, grid=DEFAULT_GRID)
    used = np.full(runs, float(items))
    sign = np.zeros(runs)
    live = np.ones(runs, dtype=bool)
    for start in range(0, items, batch):
        state.update(np.where(live[:, None], (d[:, start : start + batch] + 1) / 2, np.nan))
        lo, hi = 2 * state.lower - 1, 2 * state.upper - 1
        now = live & ((lo > margin) | (hi < -margin))
        used[now] = min(start + batch, items)
        sign[now] = np.where(lo[now] > margin, 1, -1)
        live &= ~now
        if not live.any():
            break
    return used, sign


def simulate_best(
    scores: FloatArray, alpha: float, batch: int
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Runs of ``best`` on 0/1 or [0, 1] scores of shape (runs, conditions, items): (cells used
    per run, the winner's index or -1 when undecided)."""
    runs, k, items = scores.shape
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    states = {p: BettingState(runs, alpha / len(pairs), grid=DEFAULT_GRID) for p in pairs}
    active = np.ones((runs, k), dtype=bool)
    cells = np.zeros(runs)
    done = np.zeros(runs, dtype=bool)
    for start in range(0, items, batch):
        stop = min(start + batch, items)
        cells += np.where(done, 0, active.sum(axis=1) * (stop - start))
        for i, j in pairs:
            both = active[:, i] & active[:, j] & ~done
            x = (scores[:, i, start:stop] - scores[:, j, start:stop] + 1) / 2
            states[(i, j)].update(np.where(both[:, None], x, np.nan))
        worse = np.zeros_like(active)
        for i, j in pairs:
            lo, hi = 2 * states[(i, j)].lower - 1, 2 * states[(i, j)].upper - 1
            both = active[:, i] & active[:, j]
            worse[:, j] |= both & (lo > 0)
            worse[:, i] |= both & (hi < 0)
        active &= ~(worse & ~done[:, None])
        done |= active.sum(axis=1) == 1
        if done.all():
            break
    winner = np.where(active.sum(axis=1) == 1, active.argmax(axis=1), -1)
    return cells, winner.astype(np.int64)


def paired_differences(
    rng: np.random.Generator, runs: int, items: int, effect: float, disagreement: float
) -> FloatArray:
    """Per-item differences a - b in {-1, 0, 1}: the variants disagree on ``disagreement`` of
    the items, a winning ``(disagreement + effect) / 2`` of them."""
    u = rng.random((runs, items))
    win, lose = (disagreement + effect) / 2, (disagreement - effect) / 2
    return np.where(u < win, 1.0, np.where(u < win + lose, -1.0, 0.0))


@dataclass(frozen=True)
class Plan:
    """Fixed-size vs sequential, before paying. Items and cells are counts; credits are USD: each
    cell's call at ``cost_per_call`` plus its ``judge_calls_per_cell`` grading calls (one per
    judge: a new reply is graded by every judge) at ``judge_cost_per_cell`` together (exact
    Decimals, see ``credits``); seconds for all those calls at the client's rate limit (``rpm``)
    or the observed latency.
    ``sequential_power``: the fraction of simulated runs that found the effect within the
    dataset; ``fixed_power``: the fixed-size test's power at ``fixed_items``."""

    rule: str
    items_total: int
    conditions: int
    repeats: int
    effect: float
    power: float
    alpha: float
    fixed_items: int
    fixed_power: float
    sequential_items_mean: float
    sequential_items_p90: float
    sequential_cells_mean: float
    sequential_power: float
    cost_per_call: Decimal
    judge_calls_per_cell: int
    judge_cost_per_cell: Decimal
    seconds_per_call: float
    rpm: float | None
    runs: int

    @property
    def fixed_cells(self) -> int:
        return self.fixed_items * self.conditions * self.repeats

    def credits(self, cells: float) -> Decimal:
        """Projected credits (USD, Decimal) of ``cells`` cells: each cell's call at
        ``cost_per_call`` and its gradings at ``judge_cost_per_cell``. Exact for a whole count;
        a simulated mean (a float) is read at its 15 significant digits."""
        return (to_credits(cells) or Decimal(0)) * (self.cost_per_call + self.judge_cost_per_cell)

    def seconds(self, cells: float) -> float:
        """Projected time of ``cells`` cells: each cell's call and its gradings."""
        return cells * (1 + self.judge_calls_per_cell) * self.seconds_per_call

    def __str__(self) -> str:
        grid = self.items_total * self.conditions * self.repeats

        def line(label: str, items: float, cells: float, note: str) -> str:
            return (
                f"  {label:<18} {items:>8.0f} {cells:>8.0f} {self.credits(cells):>10.4f} "
                f"{self.seconds(cells) / 60:>9.1f}  {note}"
            )

        pace = f"{self.rpm:g} requests/min" if self.rpm else "observed latency"
        n = self.judge_calls_per_cell
        judged = (
            f"; credits and minutes include {n} grading call{'s' * (n > 1)} a cell" if n else ""
        )
        return "\n".join(
            [
                f"plan for {self.rule}: effect {self.effect:g}, alpha {self.alpha:g}, power "
                f"{self.power:g}; {self.items_total} items x {self.conditions} conditions x "
                f"{self.repeats} repeats; time at {pace}{judged}",
                f"  {'':<18} {'items':>8} {'cells':>8} {'credits':>10} {'minutes':>9}",
                line(
                    "fixed size",
                    self.fixed_items,
                    self.fixed_cells,
                    f"power {self.fixed_power:.2f}",
                ),
                line(
                    "sequential (mean)",
                    self.sequential_items_mean,
                    self.sequential_cells_mean,
                    f"power {self.sequential_power:.2f} within the dataset; 90th percentile "
                    f"{self.sequential_items_p90:.0f} items ({self.runs} simulated runs)",
                ),
                line("full grid", self.items_total, grid, ""),
            ]
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def _check_fraction(value: Any, name: str, *, open_low: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValidationError(f"{name} must be a number between 0 and 1, got {value!r}", field=name)
    return float(value)


def plan(
    experiment: Any,
    client: Any = None,
    *,
    effect: float = 0.1,
    power: float = 0.8,
    alpha: float = 0.05,
    stop: Any = None,
    disagreement: float = 0.2,
    concurrency: int = 8,
    runs: int = 200,
    store: StoreArg = None,
    seed: int = 0,
) -> Plan:
    """See ``Experiment.plan``."""
    from .estimate import _seconds
    from .models import model_list
    from .pricing import Prices, judge_slug
    from .sequential import check_rule
    from .sources import resolve_source

    effect = _check_fraction(effect, "effect")
    power = _check_fraction(power, "power")
    disagreement = _check_fraction(disagreement, "disagreement")
    if effect > disagreement:
        raise ValidationError(
            f"effect {effect:g} cannot exceed disagreement {disagreement:g}: variants that "
            "differ by d in accuracy disagree on at least d of the items",
            field="effect",
        )
    if stop is None:
        scorers = [s.name for s in experiment.scorers]
        if len(experiment.variants) < 2 or not scorers:
            raise ValidationError(
                "plan needs an experiment with two variants and a scorer, or stop=",
                field="stop",
            )
        stop = compare(experiment.variants[0], experiment.variants[1], scorers[0], alpha=alpha)
    checked = check_rule(stop, experiment)
    assert checked is not None
    rule, _ = checked
    items = len(experiment.items)
    repeats = experiment.repeats
    k = len(rule.conditions(experiment.variants))
    batch = max(1, math.ceil(concurrency / (k * repeats)))
    rng = np.random.default_rng(seed)
    z = NormalDist()
    var = disagreement - effect**2
    need = (z.inv_cdf(1 - rule.alpha / 2) + z.inv_cdf(power)) ** 2 * var / effect**2
    fixed = min(items, math.ceil(need))
    fixed_power = z.cdf(effect * math.sqrt(fixed / var) - z.inv_cdf(1 - rule.alpha / 2))
    if isinstance(rule, Compare):
        used, sign = simulate_compare(
            paired_differences(rng, runs, items, effect, disagreement),
            rule.alpha,
            batch,
            rule.margin,
        )
        cells = used * k * repeats
        found = float(np.mean(sign == 1))
    else:
        assert isinstance(rule, Best)
        acc = np.full(k, BASE_ACCURACY)
        acc[0] += effect
        scores = (rng.random((runs, k, items)) < acc[None, :, None]).astype(float)
        cells_used, winner = simulate_best(scores, rule.alpha, batch)
        cells = cells_used * repeats
        used = cells_used / k
        found = float(np.mean(winner == 0))
    model = experiment.resolve_model(client)
    from ..store import as_store

    store = as_store(store)
    source = resolve_source(client, store, experiment.name, model)
    prices = Prices(store)
    slugs = model_list(model)
    cost_per_call = prices.mean(slugs)  # each model at its own price
    # A run grades each new reply with every judge, each grading at the model its judge calls.
    judges = [s for s in experiment.scorers if hasattr(s, "grading_messages")]
    judge_cost = sum((prices.of(judge_slug(j, client, slugs[0])) for j in judges), ZERO)
    rpm = getattr(client, "rpm", None)
    per_call = _seconds(store, source, 1000, concurrency) / 1000
    if rpm:
        per_call = max(per_call, 60.0 / rpm)
    return Plan(
        rule=f"{rule.key()['rule']}({', '.join(rule.conditions(experiment.variants))}; "
        f"{rule.metric})",
        items_total=items,
        conditions=k,
        repeats=repeats,
        effect=effect,
        power=power,
        alpha=rule.alpha,
        fixed_items=fixed,
        fixed_power=fixed_power,
        sequential_items_mean=float(np.mean(used)),
        sequential_items_p90=float(np.quantile(used, 0.9)),
        sequential_cells_mean=float(np.mean(cells)),
        sequential_power=found,
        cost_per_call=cost_per_call,
        judge_calls_per_cell=len(judges),
        judge_cost_per_cell=judge_cost,
        seconds_per_call=per_call,
        rpm=rpm,
        runs=runs,
    )
