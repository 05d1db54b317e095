"""paired_compare(): known values, validation, and the result object."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llamakit.errors import ValidationError
from llamakit.scoring import stats


def test_repeats_are_averaged_and_items_paired(results_factory):
    df = results_factory(
        {
            "A": {1: [1, 1], 2: [1, 0], 3: [0, 0], 4: [1, 1]},
            "B": {1: [0, 0], 2: [0, 1], 3: [0, 0], 5: [0, 0]},  # item 4/5 are not shared
        }
    )
    c = stats.paired_compare(df, "A", "B", "score_exact")
    assert c.n_items == 3
    assert (c.mean_a, c.mean_b) == (pytest.approx(0.5), pytest.approx(1 / 6))
    assert c.diff == pytest.approx(1 / 3)  # per-item differences 1, 0, 0
    assert (c.wins, c.losses, c.ties) == (1, 0, 2)
    # Only one non-zero difference: every sign pattern reaches |sum| = 1, so p = 1.
    assert c.p_value == 1.0
    assert c.p_method == "exact"
    assert c.ci_low <= c.diff <= c.ci_high


def test_a_consistent_win_on_four_items_has_exact_p():
    df = pd.DataFrame(
        {
            "variant": ["A"] * 4 + ["B"] * 4,
            "item_id": list(range(4)) * 2,
            "error": None,
            "score_x": [1.0] * 4 + [0.0] * 4,
        }
    )
    c = stats.paired_compare(df, "A", "B", "x")  # bare scorer name resolves to score_x
    assert c.metric == "score_x"
    assert c.p_value == pytest.approx(2 / 16)  # all + and all - out of 2**4 patterns
    assert (c.diff, c.ci_low, c.ci_high) == (1.0, 1.0, 1.0)
    flipped = stats.paired_compare(df, "B", "A", "x")
    assert flipped.diff == -1.0
    assert flipped.p_value == c.p_value
    assert (flipped.wins, flipped.losses) == (0, 4)


def test_errored_cells_do_not_count(results_factory):
    df = results_factory(
        {"A": {1: [1, 0], 2: [1, 1]}, "B": {1: [0, 0], 2: [0, 0]}},
        errors={("A", 1, 1): "ServerError", ("B", 2, 0): "ServerError", ("B", 2, 1): "X"},
    )
    c = stats.paired_compare(df, "A", "B", "exact")
    assert c.n_items == 1  # item 2 has no successful B cell
    assert c.mean_a == 1.0  # item 1's failed repeat (score 0) ignored


def test_other_numeric_columns_can_be_compared(results_factory):
    df = results_factory({"A": {1: [1], 2: [1]}, "B": {1: [1], 2: [1]}})
    df.loc[df["variant"] == "A", "latency_s"] = 2.0
    c = stats.paired_compare(df, "A", "B", "latency_s")
    assert c.diff == pytest.approx(1.5)


def test_many_items_use_monte_carlo(results_factory):
    rng = np.random.default_rng(0)
    a = {i: [float(rng.random() < 0.7)] for i in range(40)}
    b = {i: [float(rng.random() < 0.3)] for i in range(40)}
    c = stats.paired_compare(results_factory({"A": a, "B": b}), "A", "B", "exact", n_perm=4000)
    assert c.p_method == "monte_carlo"
    assert 1 / 4001 <= c.p_value < 0.05
    assert c.ci_low > 0


@pytest.mark.parametrize(
    "a, b, metric, field, match",
    [
        ("A", "Z", "exact", "b", "unknown variant 'Z'"),
        ("Z", "B", "exact", "a", "unknown variant 'Z'"),
        ("A", "A", "exact", "b", "same condition"),
        ("A", "B", "nope", "metric", "unknown metric 'nope'"),
        ("A", "B", "response", "metric", "not numeric"),
    ],
)
def test_bad_arguments_are_named(results_factory, a, b, metric, field, match):
    df = results_factory({"A": {1: [1]}, "B": {1: [0]}})
    with pytest.raises(ValidationError, match=match) as info:
        stats.paired_compare(df, a, b, metric)
    assert info.value.field == field


def test_no_shared_items_is_an_error(results_factory):
    df = results_factory({"A": {1: [1]}, "B": {2: [0]}})
    with pytest.raises(ValidationError, match="share no item"):
        stats.paired_compare(df, "A", "B", "exact")


def test_frame_and_html(results_factory):
    df = results_factory({"<b>A</b>": {1: [1], 2: [0]}, "B": {1: [0], 2: [0]}})
    c = stats.paired_compare(df, "<b>A</b>", "B", "exact")
    frame = c.to_frame()
    assert frame.shape == (1, 22)  # the fields, noninferior, cost_ratio, unscored shares
    assert frame.iloc[0]["diff"] == c.diff
    assert frame.index[0] == "<b>A</b> - B"
    page = c._repr_html_()
    assert "&lt;b&gt;A&lt;/b&gt;" in page and "<b>A</b>" not in page
    assert "p = " in str(c)
    with pytest.raises(AttributeError):
        c.diff = 0.0  # type: ignore[misc]


def _vetoing_frame():
    # The same four answers judged the same way; in "veto" three low grades were lost (NaN), as
    # when an answer's own text makes the parser refuse the judge's genuine grade.
    return pd.DataFrame(
        {
            "variant": ["honest"] * 4 + ["veto"] * 4,
            "item_id": list(range(4)) * 2,
            "error": None,
            "score_judge": [0.2, 1.0, 0.2, 0.2, np.nan, 1.0, np.nan, np.nan],
        }
    )


def test_unscored_shares_that_differ_are_warned_about_and_reported():
    with pytest.warns(stats.UnscoredShareWarning, match=r"'veto' has 75%") as caught:
        c = stats.paired_compare(_vetoing_frame(), "veto", "honest", "judge")
    assert "summary()'s _unscored column" in str(caught[0].message)
    assert (c.unscored_a, c.unscored_b) == (0.75, 0.0)
    assert c.to_frame()["unscored_a"].iloc[0] == 0.75


def test_equal_unscored_shares_compare_quietly(recwarn):
    df = _vetoing_frame()
    df.loc[0, "score_judge"] = np.nan
    df.loc[2, "score_judge"] = np.nan
    df.loc[3, "score_judge"] = np.nan
    c = stats.paired_compare(df, "veto", "honest", "judge")
    assert not [w for w in recwarn if issubclass(w.category, stats.UnscoredShareWarning)]
    assert c.unscored_a == c.unscored_b == 0.75


def test_summary_counts_unscored_cells_per_condition():
    df = _vetoing_frame()
    df.loc[7, "error"] = "HTTP 500"  # an errored cell is an error, not an unscored cell
    out = stats.summarize(df)
    assert out.loc["honest", "score_judge_unscored"] == 0
    assert out.loc["veto", "score_judge_unscored"] == 2
    assert out.loc["veto", "score_judge_n"] == 1 and out.loc["veto", "errors"] == 1
