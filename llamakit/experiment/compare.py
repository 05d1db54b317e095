"""Comparing runs: ``llamakit.compare`` (two runs, or two conditions of them, paired on items)
and ``llamakit.check_no_regression`` (the gate for CI: raise when a run got worse).

Both rest on ``scoring.paired``: repeats averaged per item, the difference with an item
bootstrap interval, a sign-flip p-value, wins/losses/ties and each side's credits per item.
"""

from __future__ import annotations

from typing import Any, Protocol

import pandas as pd

from ..errors import RegressionError, ValidationError
from ..scoring.conditions import CONDITION_COLUMNS, select
from ..scoring.paired import Comparison, check_margin, paired
from ..scoring.resample import CI_LEVEL
from ..scoring.stats import SCORE_PREFIX


class RunLike(Protocol):
    id: str
    name: str
    scorer_names: list[str]

    @property
    def results(self) -> Any: ...


def _describe(run: Any) -> str:
    return f"run {getattr(run, 'name', '?')!r} ({getattr(run, 'id', '?')})"


def _check_run(run: Any, field: str) -> None:
    if not hasattr(run, "results") or not hasattr(run, "id"):
        raise ValidationError(
            f"{field} must be a Run (llamakit.load_run(run_id) or exp.run(...)), got "
            f"{type(run).__name__}",
            field=field,
        )


def _conditions(results: pd.DataFrame) -> list[str]:
    cols = [c for c in CONDITION_COLUMNS if c in results.columns]
    combos = results[cols].drop_duplicates().astype(str)
    return [" ".join(row) for row in combos.itertuples(index=False)]


def _side(run: Any, condition: Any, col: str, field: str) -> tuple[pd.DataFrame, str]:
    """The cells of ``run`` (one condition of it) and their label."""
    results = run.results
    where = _describe(run)
    if col not in results.columns:
        scores = [
            str(c)[len(SCORE_PREFIX) :] for c in results.columns if str(c).startswith(SCORE_PREFIX)
        ]
        raise ValidationError(
            f"{where} has no metric {col[len(SCORE_PREFIX) :] if col.startswith(SCORE_PREFIX) else col!r}"
            f" (its scorers: {scores}); pass metric= a scorer both runs have",
            field="metric",
        )
    if condition is not None:
        rows, label = select(results, condition, field=field)
        return results[rows], f"{run.name}:{label}"
    found = _conditions(results)
    if len(found) > 1:
        raise ValidationError(
            f"{where} holds {len(found)} conditions ({'; '.join(found)}); name the one to "
            f"compare with {field}= (--{field} in `llamakit compare`): a variant, or "
            "{'model': ..., 'variant': ...}",
            field=field,
        )
    return results, str(run.name)


def _metric(run_a: Any, run_b: Any, metric: str | None) -> str:
    if metric is None:
        shared = [n for n in run_a.scorer_names if n in set(run_b.scorer_names)]
        if not shared:
            raise ValidationError(
                f"{_describe(run_a)} and {_describe(run_b)} share no scorer; pass metric= a "
                "results column both have",
                field="metric",
            )
        metric = shared[0]
    if not isinstance(metric, str) or not metric:
        raise ValidationError(f"metric must be a scorer name, got {metric!r}", field="metric")
    columns = set(run_a.results.columns) | set(run_b.results.columns)
    if metric not in columns and f"{SCORE_PREFIX}{metric}" in columns:
        return f"{SCORE_PREFIX}{metric}"
    return metric


def compare(
    run_a: RunLike,
    run_b: RunLike,
    metric: str | None = None,
    *,
    a: Any = None,
    b: Any = None,
    on: str = "item",
    margin: float = 0.0,
    ci_level: float = CI_LEVEL,
    n_boot: int = 2000,
    n_perm: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """Compare ``run_a`` with ``run_b`` on ``metric`` (a scorer name or results column; default:
    the first scorer both have), paired on the dataset items they share.

    ``a``/``b`` pick one condition of a run that holds several (a variant name, ``(variant,
    {param: value})`` or ``{"model": slug, "variant": ..., "params": {...}}``); a run with one
    condition needs none. The same run may be passed twice with two conditions. ``margin`` is
    the non-inferiority margin in the metric's units: ``result.noninferior`` says whether b is
    at most that much worse than a (at ``ci_level``). The result (``scoring.paired.Comparison``)
    also gives ``credits_a``/``credits_b``, the credits (USD) each side's calls cost per item,
    and ``cost_ratio``. Only ``on="item"`` pairing exists.

    Raises ValidationError naming the run and the fix for: a metric one run lacks, a run with
    several conditions and no ``a``/``b``, runs that share no item with a value, a bad margin.
    """
    _check_run(run_a, "run_a")
    _check_run(run_b, "run_b")
    if on != "item":
        raise ValidationError(
            f"on={on!r}: runs are paired on dataset items only (on='item')", field="on"
        )
    margin = check_margin(margin)
    col = _metric(run_a, run_b, metric)
    frame_a, name_a = _side(run_a, a, col, "a")
    frame_b, name_b = _side(run_b, b, col, "b")
    if run_a.id == run_b.id and name_a == name_b:
        raise ValidationError(
            f"both sides are the same cells of {_describe(run_a)}; pass a= and b= two "
            "conditions of it, or two runs",
            field="b",
        )
    if name_a == name_b:  # two runs of one experiment: tell them apart by id
        name_a, name_b = f"{name_a}@{run_a.id}", f"{name_b}@{run_b.id}"
    found = paired(
        frame_a,
        frame_b,
        name_a,
        name_b,
        col,
        margin=margin,
        ci_level=ci_level,
        n_boot=n_boot,
        n_perm=n_perm,
        seed=seed,
    )
    if found is None:
        raise ValidationError(
            f"{_describe(run_a)} and {_describe(run_b)} share no item with a value of {col!r}; "
            "compare runs over the same dataset items (item ids), and check both were scored",
            field="run_b",
        )
    return found


def check_no_regression(
    baseline: RunLike,
    current: RunLike,
    metric: str | None = None,
    margin: float = 0.0,
    *,
    alpha: float = 0.05,
    higher_is_better: bool = True,
    a: Any = None,
    b: Any = None,
) -> Comparison:
    """Raise ``RegressionError`` when ``current`` is worse than ``baseline`` on ``metric`` by
    more than ``margin``, with confidence ``1 - alpha``; else return the comparison.

    "Worse beyond the margin" means the one-sided ``1 - alpha`` bootstrap bound of the paired
    drop (baseline minus current per item, repeats averaged; current minus baseline for a
    metric where lower is better, ``higher_is_better=False``) lies above ``margin``: a drop the
    data cannot tell from noise passes. For an nbval notebook or a pytest test. ``a``/``b``
    pick conditions as in ``compare``. Raises ValidationError for bad input, as ``compare``.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 0.5:
        raise ValidationError(f"alpha must be between 0 and 0.5, got {alpha!r}", field="alpha")
    # The two-sided interval at 1 - 2*alpha has the one-sided 1 - alpha bound at each end.
    found = compare(baseline, current, metric, a=a, b=b, margin=margin, ci_level=1 - 2 * alpha)
    bound = found.ci_low if higher_is_better else -found.ci_high
    if bound > found.margin:
        lost, won = (found.wins, found.losses) if higher_is_better else (found.losses, found.wins)
        message = _explain(found, baseline, current, bound, alpha, lost, won)
        raise RegressionError(message, found)
    return found


def _explain(
    found: Comparison,
    baseline: Any,
    current: Any,
    bound: float,
    alpha: float,
    lost: int,
    won: int,
) -> str:
    worse = "lower" if found.diff > 0 else "higher"
    return (
        f"Regression on {found.metric}: {_describe(current)} is worse than the baseline "
        f"{_describe(baseline)} beyond the allowed margin of {found.margin:g}. Over the "
        f"{found.n_items} items both runs scored (repeats averaged per item) the current mean "
        f"is {found.mean_b:.4g} against {found.mean_a:.4g}, {abs(found.diff):.4g} {worse}; "
        f"with {1 - alpha:.0%} confidence the drop is at least {bound:.4g} (one-sided item "
        f"bootstrap bound), and a paired sign-flip test gives p = {found.p_value:.3g}. The "
        f"current run lost {lost} items, won {won} and tied {found.ties}. "
        "Inspect the lost items in both runs' results; if this drop is acceptable, raise "
        "margin= (in the metric's units) or update the baseline."
    )
