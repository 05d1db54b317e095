"""The statistics checked against independent computations: pass@k against enumeration of every
k-subset, the item-clustered bootstrap against ``scipy.stats.bootstrap``, the paired sign-flip test
against ``scipy.stats.permutation_test``, each on the same data, within Monte-Carlo error."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from llamakit.scoring import stats

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize(
    "n, c, k", [(5, 0, 1), (5, 2, 1), (5, 2, 3), (6, 5, 2), (7, 3, 7), (4, 4, 2)]
)
def test_pass_at_k_and_pass_hat_k_equal_enumeration_of_k_subsets(n, c, k):
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(samples, k))
    assert stats.pass_at_k(n, c, k) == pytest.approx(np.mean([any(s) for s in subsets]))
    assert stats.pass_hat_k(n, c, k) == pytest.approx(np.mean([all(s) for s in subsets]))


def _frame(per_item: list[list[float]], params: str = "{}", variant: str = "v") -> pd.DataFrame:
    rows = [
        {
            "variant": variant,
            "item_id": f"q{i}",
            "params": params,
            "repeat": r,
            "error": None,
            "score_s": value,
        }
        for i, repeats in enumerate(per_item)
        for r, value in enumerate(repeats)
    ]
    return pd.DataFrame(rows)


def test_summary_pass_at_k_with_k_below_n_is_the_mean_of_chen_estimators():
    rng = np.random.default_rng(1)
    per_item = [list(rng.integers(0, 2, size=6).astype(float)) for _ in range(12)]
    summary = stats.summarize(_frame(per_item), k=2)
    expected = np.mean([stats.pass_at_k(6, int(sum(s)), 2) for s in per_item])
    enumerated = np.mean(
        [np.mean([any(sub) for sub in itertools.combinations(s, 2)]) for s in per_item]
    )
    assert summary.loc["v", "score_s_pass@k"] == pytest.approx(expected)
    assert expected == pytest.approx(enumerated)


def _scipy_ci(sums: np.ndarray, counts: np.ndarray, n_resamples: int) -> tuple[float, float]:
    def ratio(s: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
        return s.sum(axis=axis) / c.sum(axis=axis)

    result = scipy_stats.bootstrap(
        (sums, counts),
        ratio,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        method="percentile",
        confidence_level=stats.CI_LEVEL,
        random_state=np.random.default_rng(12345),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


@pytest.mark.parametrize("unequal", [False, True])
def test_clustered_bootstrap_matches_scipy_bootstrap_over_items(unequal):
    # Items with correlated repeats (an item is easy or hard), and, in one case, unequal repeats.
    rng = np.random.default_rng(7)
    per_item = []
    for _ in range(40):
        p = rng.uniform(0.05, 0.95)
        repeats = int(rng.integers(1, 6)) if unequal else 3
        per_item.append(list((rng.uniform(size=repeats) < p).astype(float)))
    frame = _frame(per_item)
    summary = stats.summarize(frame, n_boot=20_000, seed=3)
    sums = np.array([sum(s) for s in per_item])
    counts = np.array([len(s) for s in per_item], dtype=float)
    low, high = _scipy_ci(sums, counts, 20_000)
    # Monte-Carlo error of a 2.5% quantile with 20,000 resamples of a mean whose spread is ~0.07
    # is ~0.002; 0.01 is five of those.
    assert summary.loc["v", "score_s_ci_low"] == pytest.approx(low, abs=0.01)
    assert summary.loc["v", "score_s_ci_high"] == pytest.approx(high, abs=0.01)
    assert summary.loc["v", "score_s_mean"] == pytest.approx(sums.sum() / counts.sum())


def _paired(diffs_a: list[float], diffs_b: list[float]) -> pd.DataFrame:
    return pd.concat(
        [_frame([[x] for x in diffs_a], variant="a"), _frame([[x] for x in diffs_b], variant="b")],
        ignore_index=True,
    )


def _scipy_p(d: np.ndarray, n_resamples: int) -> float:
    result = scipy_stats.permutation_test(
        (d,),
        np.mean,
        permutation_type="samples",
        alternative="two-sided",
        n_resamples=n_resamples,
        random_state=np.random.default_rng(99),
    )
    return float(result.pvalue)


@pytest.mark.parametrize("n_items, seed", [(6, 0), (10, 1), (14, 2)])
def test_exact_sign_flip_p_value_equals_scipy_exact_permutation_test(n_items, seed):
    rng = np.random.default_rng(seed)
    a = rng.uniform(size=n_items).round(2)
    b = (a - rng.normal(0.15, 0.3, size=n_items)).round(2)
    c = stats.paired_compare(_paired(list(a), list(b)), "a", "b", "s")
    assert c.p_method == "exact"
    # With n_resamples >= 2**n scipy enumerates every sign pattern too: the same number.
    assert c.p_value == pytest.approx(_scipy_p(a - b, 2**n_items), abs=1e-12)


def test_monte_carlo_sign_flip_p_value_agrees_with_scipy_within_error():
    rng = np.random.default_rng(5)
    a = rng.uniform(size=40)
    b = a - rng.normal(0.05, 0.3, size=40)
    c = stats.paired_compare(_paired(list(a), list(b)), "a", "b", "s", n_perm=40_000)
    assert c.p_method == "monte_carlo"
    reference = _scipy_p(a - b, 40_000)
    # Two independent estimates of p, each with SE sqrt(p(1-p)/40000) <= 0.0025.
    assert c.p_value == pytest.approx(reference, abs=0.012)
    assert 0.0 < reference < 1.0


def test_paired_bootstrap_interval_matches_scipy_on_the_differences():
    rng = np.random.default_rng(11)
    a = rng.uniform(size=30)
    b = a - rng.normal(0.1, 0.2, size=30)
    c = stats.paired_compare(_paired(list(a), list(b)), "a", "b", "s", n_boot=20_000)
    d = a - b
    reference = scipy_stats.bootstrap(
        (d,),
        np.mean,
        n_resamples=20_000,
        method="percentile",
        random_state=np.random.default_rng(0),
    ).confidence_interval
    assert c.diff == pytest.approx(d.mean())
    assert c.ci_low == pytest.approx(reference.low, abs=0.01)
    assert c.ci_high == pytest.approx(reference.high, abs=0.01)


def test_pass_at_k_is_per_condition_on_a_grid():
    # One variant, two temperatures: at t=0 an item passes on every repeat or none; at t=0.7 it
    # passes on some. Pooling the settings would read 6 samples per item; they are two conditions.
    cold = json.dumps({"temperature": 0})
    hot = json.dumps({"temperature": 0.7})
    per_cold = [[1, 1, 1], [0, 0, 0], [1, 1, 1], [0, 0, 0]]
    per_hot = [[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0]]
    frame = pd.concat([_frame(per_cold, cold), _frame(per_hot, hot)], ignore_index=True)
    summary = stats.summarize(frame)
    assert summary.index.names == ["variant", "params"]
    assert set(summary.index) == {("v", cold), ("v", hot)}
    assert (summary["k"] == 3).all()
    for params, per in ((cold, per_cold), (hot, per_hot)):
        row = summary.loc[("v", params)]
        assert row["score_s_pass@k"] == pytest.approx(np.mean([any(s) for s in per]))
        assert row["score_s_pass^k"] == pytest.approx(np.mean([all(s) for s in per]))
        agree = np.mean([len(set(s)) == 1 for s in per])
        assert row["score_s_consistency"] == pytest.approx(agree)
    # Grouping by variant alone still counts repeats per condition, never pooled 6 per item.
    by_variant = stats.summarize(frame, by="variant").loc["v"]
    units = per_cold + per_hot
    assert by_variant["k"] == 3
    assert by_variant["score_s_pass^k"] == pytest.approx(np.mean([all(s) for s in units]))
    assert by_variant["score_s_consistency"] == pytest.approx(
        np.mean([len(set(s)) == 1 for s in units])
    )
    assert not math.isclose(
        by_variant["score_s_pass^k"],
        np.mean([all(a + b) for a, b in zip(per_cold, per_hot, strict=True)]),
    )
