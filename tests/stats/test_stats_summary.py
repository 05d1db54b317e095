"""summarize(): known values on small hand-built results."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from llamakit.errors import ValidationError
from llamakit.scoring import stats


def test_pass_at_k_known_values():
    assert stats.pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2) = 0.7
    assert stats.pass_hat_k(5, 2, 2) == pytest.approx(1 / 10)  # C(2,2)/C(5,2)
    assert stats.pass_at_k(5, 0, 2) == 0.0
    assert stats.pass_at_k(5, 4, 2) == 1.0  # only one failure, so two draws always include a pass
    assert stats.pass_hat_k(5, 5, 3) == 1.0
    assert stats.pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert stats.pass_hat_k(10, 3, 1) == pytest.approx(0.3)


@pytest.mark.parametrize("n, c, k", [(5, 6, 2), (5, 2, 0), (5, 2, 6), (3, -1, 1)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValidationError):
        stats.pass_at_k(n, c, k)
    with pytest.raises(ValidationError):
        stats.pass_hat_k(n, c, k)


def test_binary_scores_with_repeats(results_factory):
    df = results_factory({"A": {1: [1, 1], 2: [1, 0]}, "B": {1: [0, 0], 2: [0, 0]}})
    out = stats.summarize(df)
    assert list(out.index) == ["A", "B"]
    assert out.index.name == "variant"
    a = out.loc["A"]
    assert (a["n"], a["items"], a["k"], a["errors"]) == (4, 2, 2, 0)
    assert a["score_exact_mean"] == pytest.approx(0.75)
    assert a["score_exact_pass@k"] == pytest.approx(1.0)  # both items pass at least once
    assert a["score_exact_pass^k"] == pytest.approx(0.5)  # only item 1 passes every time
    assert a["score_exact_consistency"] == pytest.approx(0.5)
    # Two items with means 1.0 and 0.5: every resample's mean is 0.5, 0.75 or 1.0.
    assert a["score_exact_ci_low"] == pytest.approx(0.5)
    assert a["score_exact_ci_high"] == pytest.approx(1.0)
    b = out.loc["B"]
    assert b["score_exact_mean"] == 0.0
    assert (b["score_exact_ci_low"], b["score_exact_ci_high"]) == (0.0, 0.0)
    assert b["score_exact_pass@k"] == 0.0
    assert b["score_exact_consistency"] == 1.0


def test_errored_cells_are_counted_but_not_scored(results_factory):
    # Item 1's second repeat failed; it carries a (bogus) score 0 that must be ignored.
    df = results_factory(
        {"A": {1: [1, 0], 2: [1, 0]}}, errors={("A", 1, 1): "ServerError"}, latency=0.5
    )
    df.loc[df["error"].notna(), "latency_s"] = 60.0
    a = stats.summarize(df).loc["A"]
    assert (a["n"], a["errors"], a["k"]) == (4, 1, 2)
    assert a["score_exact_n"] == 3
    assert a["score_exact_mean"] == pytest.approx(2 / 3)
    # pass@k/pass^k use only item 2 (item 1 lacks a scored repeat).
    assert a["score_exact_pass@k"] == 1.0
    assert a["score_exact_pass^k"] == 0.0
    # consistency needs 2+ scored repeats: only item 2, which disagrees.
    assert a["score_exact_consistency"] == 0.0
    assert a["latency_p95"] == pytest.approx(0.5)  # the failed cell's 60 s is not a latency
    assert a["prompt_tokens"] == 30
    assert a["credits"] == Decimal("0.003")  # summed exactly, not as floats


def test_scorer_failures_are_missing_not_zero(results_factory):
    df = results_factory({"A": {1: [1, None], 2: [None, None]}})
    a = stats.summarize(df).loc["A"]
    assert a["errors"] == 0
    assert a["score_exact_n"] == 1
    assert a["score_exact_mean"] == 1.0
    assert math.isnan(a["score_exact_consistency"])
    assert math.isnan(a["score_exact_pass@k"])


def test_continuous_scores_have_no_pass_columns(results_factory):
    df = results_factory({"A": {1: [0.2, 0.4], 2: [0.6, 0.6]}}, metric="score_judge")
    out = stats.summarize(df)
    assert "score_judge_pass@k" not in out.columns
    assert out.loc["A", "score_judge_mean"] == pytest.approx(0.45)
    assert out.loc["A", "score_judge_consistency"] == 0.5


def test_latency_percentiles_and_sums():
    df = pd.DataFrame(
        {
            "variant": ["A"] * 5,
            "item_id": range(5),
            "error": [None] * 5,
            "latency_s": [1.0, 2.0, 3.0, 4.0, 5.0],
            "prompt_tokens": [1, 2, 3, 4, None],
            "completion_tokens": [None] * 5,
            "credits": [0.1] * 5,
        }
    )
    a = stats.summarize(df).loc["A"]
    assert a["latency_p50"] == 3.0
    assert a["latency_p95"] == pytest.approx(4.8)
    assert a["prompt_tokens"] == 10
    assert math.isnan(a["completion_tokens"])  # nothing known is not zero
    assert a["credits"] == pytest.approx(0.5)


def test_same_seed_same_interval_and_other_variants_do_not_move_it(results_factory):
    rng = np.random.default_rng(3)
    a_scores = {i: list(rng.integers(0, 2, 3)) for i in range(30)}
    alone = stats.summarize(results_factory({"A": a_scores}), n_boot=500)
    both = stats.summarize(results_factory({"A": a_scores, "B": {0: [1, 1, 1]}}), n_boot=500)
    assert alone.loc["A"].equals(both.loc["A"])
    other_seed = stats.summarize(results_factory({"A": a_scores}), n_boot=500, seed=1)
    assert other_seed.loc["A", "score_exact_ci_low"] != alone.loc["A", "score_exact_ci_low"] or (
        other_seed.loc["A", "score_exact_ci_high"] != alone.loc["A", "score_exact_ci_high"]
    )


def test_group_by_params_gives_a_multiindex(results_factory):
    df = results_factory({"A": {1: [1, 0], 2: [1, 1]}})
    df["params"] = ['{"t": 0}', '{"t": 1}'] * 2
    out = stats.summarize(df, by=["variant", "params"])
    assert out.index.names == ["variant", "params"]
    assert out.loc[("A", '{"t": 0}'), "score_exact_mean"] == 1.0
    assert out.loc[("A", '{"t": 1}'), "score_exact_mean"] == 0.5


def test_empty_results_give_an_empty_table_with_columns(results_factory):
    df = results_factory({"A": {1: [1]}}).iloc[0:0]
    out = stats.summarize(df)
    assert out.empty
    assert {"n", "errors", "score_exact_mean", "credits"} <= set(out.columns)


def test_bad_input_is_named():
    with pytest.raises(ValidationError, match="item_id"):
        stats.summarize(pd.DataFrame({"variant": ["A"]}))
    with pytest.raises(ValidationError, match="DataFrame"):
        stats.summarize([{"variant": "A"}])  # type: ignore[arg-type]


def test_bootstrap_of_a_thousand_items_is_fast(results_factory):
    import time

    rng = np.random.default_rng(0)
    df = results_factory({"A": {i: list(rng.integers(0, 2, 2)) for i in range(1000)}})
    started = time.perf_counter()
    out = stats.summarize(df, n_boot=2000)
    elapsed = time.perf_counter() - started
    assert out.loc["A", "score_exact_ci_low"] < out.loc["A", "score_exact_mean"]
    # Generous bound: vectorised resampling takes ~0.1 s; a Python loop would take tens of seconds.
    assert elapsed < 5.0


def test_credits_count_only_what_this_run_paid_not_cells_served_from_the_cache(results_factory):
    results = results_factory({"a": {"q1": [1, 0], "q2": [1, 1]}})
    results["credits"] = 0.001
    results["cached"] = [True, False, True, True]
    assert stats.summarize(results).loc["a", "credits"] == Decimal("0.001")
    results["cached"] = True
    assert stats.summarize(results).loc["a", "credits"] == 0.0
