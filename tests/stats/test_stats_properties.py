"""Properties of the statistics that must hold for any results (hypothesis)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llamakit.scoring import stats

from .conftest import make_results

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

binary = st.sampled_from([0.0, 1.0])
fraction = st.floats(min_value=0, max_value=1, allow_nan=False)


@st.composite
def item_scores(draw, values=fraction, max_items=25):
    """{item: [score per repeat]} with the same number of repeats for every item."""
    n_items = draw(st.integers(1, max_items))
    repeats = draw(st.integers(1, 4))
    return {i: draw(st.lists(values, min_size=repeats, max_size=repeats)) for i in range(n_items)}


@SETTINGS
@given(scores=item_scores(st.one_of(binary, fraction)), seed=st.integers(0, 2**16))
def test_interval_contains_the_mean(scores, seed):
    row = stats.summarize(make_results({"A": scores}), n_boot=300, seed=seed).loc["A"]
    assert row["score_exact_ci_low"] <= row["score_exact_mean"] <= row["score_exact_ci_high"]
    assert row["score_exact_ci_low"] >= 0 and row["score_exact_ci_high"] <= 1


@SETTINGS
@given(scores=item_scores(binary))
def test_pass_at_k_brackets_the_mean(scores):
    row = stats.summarize(make_results({"A": scores}), n_boot=50).loc["A"]
    mean, at_k, hat_k = (
        row["score_exact_mean"],
        row["score_exact_pass@k"],
        row["score_exact_pass^k"],
    )
    assert hat_k - 1e-12 <= mean <= at_k + 1e-12
    if row["k"] == 1:
        assert at_k == pytest.approx(mean) and hat_k == pytest.approx(mean)


@given(n=st.integers(1, 30), data=st.data())
def test_pass_at_1_is_the_pass_rate(n, data):
    c = data.draw(st.integers(0, n))
    assert stats.pass_at_k(n, c, 1) == pytest.approx(c / n)
    assert stats.pass_hat_k(n, c, 1) == pytest.approx(c / n)


@given(n=st.integers(1, 12), data=st.data())
def test_pass_at_k_matches_enumeration(n, data):
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    outcomes = [1] * c + [0] * (n - c)
    draws = list(itertools.combinations(outcomes, k))
    assert stats.pass_at_k(n, c, k) == pytest.approx(np.mean([any(d) for d in draws]))
    assert stats.pass_hat_k(n, c, k) == pytest.approx(np.mean([all(d) for d in draws]))


@SETTINGS
@given(scores=item_scores(st.one_of(binary, fraction), max_items=40))
def test_identical_variants_differ_by_nothing(scores):
    c = stats.paired_compare(make_results({"A": scores, "B": scores}), "A", "B", "exact")
    assert c.diff == 0.0
    assert c.p_value == 1.0
    assert (c.ci_low, c.ci_high) == (0.0, 0.0)
    assert c.ties == c.n_items == len(scores)


@SETTINGS
@given(scores=item_scores(st.floats(0, 0.5), max_items=30), shift=st.floats(0.01, 0.5))
def test_a_consistent_shift_is_significant(scores, shift):
    shifted = {i: [s + shift for s in values] for i, values in scores.items()}
    n = len(scores)
    c = stats.paired_compare(make_results({"A": shifted, "B": scores}), "A", "B", "exact")
    assert c.diff == pytest.approx(shift)
    assert c.wins == n and c.losses == 0
    # Every difference is positive: only the all-plus and all-minus patterns are as extreme.
    if n <= stats.EXACT_PERMUTATION_MAX_ITEMS:
        assert c.p_value == pytest.approx(2 / 2**n)
    else:  # Monte Carlo: a random pattern is this extreme with probability 2 / 2**n
        assert c.p_value < 0.001
    assert c.ci_low == pytest.approx(shift) or c.ci_low <= c.diff <= c.ci_high


@SETTINGS
@given(scores=item_scores(st.one_of(binary, fraction)), seed=st.integers(0, 100))
def test_row_order_does_not_matter(scores, seed):
    df = make_results({"A": scores, "B": {i: v[::-1] for i, v in scores.items()}})
    shuffled = df.sample(frac=1.0, random_state=seed)
    # Sums in another order may differ in the last bit, hence the tolerance.
    pd.testing.assert_frame_equal(
        stats.summarize(df, n_boot=100), stats.summarize(shuffled, n_boot=100), rtol=1e-9
    )


@SETTINGS
@given(d=st.lists(st.floats(-1, 1), min_size=1, max_size=10))
def test_monte_carlo_p_value_tracks_the_exact_one(d):
    d = np.array(d)
    exact, method = stats.sign_flip_p_value(d)
    assert method == "exact"
    # Monte Carlo on the same differences, forced by padding with exact zeros (they never
    # change a signed sum), agrees within sampling error.
    padded = np.concatenate([d, np.zeros(stats.EXACT_PERMUTATION_MAX_ITEMS + 1)])
    sampled, method = stats.sign_flip_p_value(padded, n_perm=20_000, rng=np.random.default_rng(1))
    assert method == "monte_carlo"
    assert sampled == pytest.approx(exact, abs=0.03)
