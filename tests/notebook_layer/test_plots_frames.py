"""Plots drawn from tables in the PLAN.md shape: what each draws, and the empty/all-error charts."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from llamakit import plots


def _texts(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts)


def test_cost_per_variant_sums_billed_credits_per_variant(results_frame) -> None:
    df = results_frame({"a": [1, 0, 1], "b": [1, 1, 1]}, errors={("b", 2): "ServerError"})
    ax = plots.cost_per_variant(df)
    heights = {
        t.get_text(): p.get_height() for t, p in zip(ax.get_xticklabels(), ax.patches, strict=True)
    }
    assert heights["a"] == pytest.approx(3 * 0.00063)
    assert heights["b"] == pytest.approx(2 * 0.00063)  # the errored cell cost nothing


def test_functions_accept_a_run_object_as_well_as_its_results(results_frame) -> None:
    run = SimpleNamespace(results=results_frame({"a": [1, 0], "b": [0, 0]}))
    for draw in (plots.cost_per_variant, plots.scores, plots.latency):
        ax = draw(run)
        assert ax.patches or ax.lines, draw.__name__
    assert plots.paired(run, "a", "b").patches


def test_scores_draws_mean_per_variant_with_interval(results_frame) -> None:
    df = results_frame({"a": [1, 1, 1, 0], "b": [0, 0, 1, 0]})
    ax = plots.scores(df, metric="exact")
    means = [p.get_height() for p in ax.patches]
    assert means == pytest.approx([0.75, 0.25])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert "score_exact" in ax.get_title()


def test_scores_rejects_an_unknown_metric_by_name(results_frame) -> None:
    with pytest.raises(KeyError, match="score_nope"):
        plots.scores(results_frame({"a": [1]}), metric="nope")


def test_paired_draws_per_item_difference_sorted(results_frame) -> None:
    df = results_frame({"a": [1, 1, 0, 0], "b": [1, 0, 1, 1]})
    ax = plots.paired(df, "a", "b", metric="score_exact")
    diffs = [p.get_height() for p in ax.containers[0]]
    assert diffs == sorted(diffs)
    assert diffs == [-1.0, -1.0, 0.0, 1.0]  # a - b, the sign stats.paired_compare uses
    assert "a vs b" in ax.get_title()


def test_paired_names_a_missing_variant(results_frame) -> None:
    ax = plots.paired(results_frame({"a": [1]}), "a", "zzz")
    assert "'zzz'" in _texts(ax)


def test_latency_boxplot_per_variant_excludes_errors(results_frame) -> None:
    df = results_frame({"a": [1, 0, 1], "b": [1, 1, 1]}, errors={("a", 0): "ServerError"})
    ax = plots.latency(df)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert "n=5" in ax.get_title()


@pytest.mark.parametrize("name", ["cost_per_variant", "scores", "latency"])
def test_all_error_run_draws_an_explanatory_chart(results_frame, name) -> None:
    df = results_frame(
        {"a": [1, 1]}, errors={("a", 0): "AuthenticationError", ("a", 1): "AuthenticationError"}
    )
    ax = getattr(plots, name)(df)
    assert "AuthenticationError" in _texts(ax)
    assert not ax.patches and not ax.lines


def test_all_error_run_paired_chart_explains(results_frame) -> None:
    df = results_frame({"a": [1], "b": [1]}, errors={("a", 0): "X", ("b", 0): "X"})
    ax = plots.paired(df, "a", "b")
    assert "No item has a score for both variants" in _texts(ax)


@pytest.mark.parametrize("name", ["cost_per_variant", "scores", "latency"])
def test_empty_results_draw_an_explanatory_chart(results_frame, name) -> None:
    empty = results_frame({"a": [1]}).iloc[0:0]
    ax = getattr(plots, name)(empty)
    assert "no results yet" in _texts(ax)


def test_run_without_scorers_says_so(results_frame) -> None:
    df = results_frame({"a": [1]}).drop(columns=["score_exact"])
    assert "no scorers" in _texts(plots.scores(df))


def test_credit_spend_steps_through_cumulative_spend_with_balance(runs_frame) -> None:
    ax = plots.credit_spend(runs_frame([0.01, 0.02, 0.005]))
    line = ax.lines[0]
    # From zero at the first run's start, one step up as each run finishes.
    assert list(line.get_ydata()) == pytest.approx([0.0, 0.01, 0.03, 0.035])
    assert line.get_drawstyle() == "steps-post"
    twins = [a for a in ax.figure.axes if a is not ax]
    assert list(twins[0].lines[0].get_ydata()) == pytest.approx([1.0, 0.99, 0.97, 0.965])
    assert "0.035 credits" in ax.get_title()  # the exact sum, not a rounded float


def test_credit_spend_counts_a_running_run_at_its_start(runs_frame) -> None:
    df = runs_frame([0.01, 0.02])
    df.loc[1, "finished_at"] = None
    df.loc[1, "credits_spent"] = math.nan
    ax = plots.credit_spend(df)
    assert list(ax.lines[0].get_ydata()) == pytest.approx([0.0, 0.01, 0.01])


def test_credit_spend_empty_table_draws_an_explanatory_chart(runs_frame) -> None:
    ax = plots.credit_spend(runs_frame([]))
    assert "No runs in the store yet" in _texts(ax)


def test_plots_draw_on_a_given_axes_and_never_show(results_frame, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("show() called"))
    fig, axes = plt.subplots(1, 4)
    df = results_frame({"a": [1, 0], "b": [0, 1]})
    assert plots.cost_per_variant(df, ax=axes[0]) is axes[0]
    assert plots.scores(df, ax=axes[1]) is axes[1]
    assert plots.paired(df, "a", "b", ax=axes[2]) is axes[2]
    assert plots.latency(df, ax=axes[3]) is axes[3]
    assert len(plt.get_fignums()) == 1


def test_credit_spend_starts_at_the_earliest_run_start(runs_frame) -> None:
    import matplotlib.dates as mdates
    import pandas as pd

    df = runs_frame([0.01, 0.02])
    df.loc[1, "started_at"] = pd.Timestamp("2025-12-31T23:00:00Z")  # started first, ended last
    ax = plots.credit_spend(df)
    first_x = mdates.num2date(ax.lines[0].get_xdata(orig=False)[0])
    assert first_x == pd.Timestamp("2025-12-31T23:00:00Z")
