"""Plots of real runs read back from the store, and of an empty store."""

from __future__ import annotations

import pytest
from matplotlib.container import BarContainer

import llamakit as lk
from llamakit import plots


def _texts(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts)


def test_cost_per_variant_adds_up_to_the_run_spend(capitals_run) -> None:
    ax = plots.cost_per_variant(capitals_run)
    bars = ax.containers[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["bare", "terse", "tutor"]
    assert sum(b.get_height() for b in bars) == pytest.approx(float(capitals_run.credits_spent))
    assert f"total {capitals_run.credits_spent})" in ax.get_title()  # exact


def test_scores_match_the_summary_table(capitals_run) -> None:
    summary = capitals_run.summary()
    ax = plots.scores(capitals_run, "exact")
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    heights = [b.get_height() for b in bars]
    assert heights == pytest.approx(list(summary["score_exact_mean"]))
    # The terse system prompt is what makes exact matches possible in the scripted rules.
    assert heights[1] > heights[0]
    low, high = bars.errorbar.lines[2][0].get_segments()[1][:, 1]
    assert low == pytest.approx(summary.loc["terse", "score_exact_ci_low"])
    assert high == pytest.approx(summary.loc["terse", "score_exact_ci_high"])


def test_paired_title_carries_the_comparison(capitals_run) -> None:
    comparison = capitals_run.compare("bare", "terse", "exact")
    ax = plots.paired(capitals_run, "bare", "terse", metric="exact")
    assert f"{comparison.diff:+.3f}" in ax.get_title()
    heights = [b.get_height() for b in ax.containers[0]]
    assert len(heights) == comparison.n_items
    # The bars are per-item differences with the same sign and mean as the comparison.
    assert sum(heights) / len(heights) == pytest.approx(comparison.diff)


def test_latency_counts_every_answered_cell(capitals_run) -> None:
    ax = plots.latency(capitals_run)
    assert f"n={len(capitals_run.results)}" in ax.get_title()


def test_credit_spend_over_the_runs_in_a_store(capitals_run, failed_run, run_store) -> None:
    table = lk.runs(store=run_store)
    ax = plots.credit_spend(store=run_store)
    assert sum(p.get_height() for p in ax.patches) == pytest.approx(
        float(table["credits_spent"].sum())
    )
    cumulative = [a for a in ax.figure.axes if a is not ax][0].lines[0]
    assert cumulative.get_ydata()[-1] == pytest.approx(float(table["credits_spent"].sum()))
    assert len(ax.patches) == len(table)  # one bar per run: no judge, so nothing stacked


def test_credit_spend_of_an_empty_store_explains(tmp_path) -> None:
    ax = plots.credit_spend(store=lk.Store(tmp_path / "empty.db"))
    assert "No runs in the store yet" in _texts(ax)
    assert not ax.lines


def test_default_store_is_used_when_none_given(isolated_home) -> None:
    ax = plots.credit_spend()
    assert "No runs in the store yet" in _texts(ax)


@pytest.mark.parametrize("name", ["cost_per_variant", "scores", "latency"])
def test_an_all_error_run_from_the_store_explains(failed_run, name) -> None:
    ax = getattr(plots, name)(failed_run)
    assert "every cell errored" in _texts(ax)
    assert "ServerError \u00d76" in _texts(ax)


def test_paired_on_an_all_error_run_explains(failed_run) -> None:
    ax = plots.paired(failed_run, "a", "b")
    assert "No item has a score for both variants" in _texts(ax)


def test_cost_per_variant_counts_only_what_the_run_paid(rules_server, tmp_path) -> None:
    """A rerun served from the cache paid nothing: its chart says so instead of re-showing the
    first run's spend (the same rule as summary()'s credits)."""
    exp = lk.Experiment("cost-cache", prompts={"p": "What is {{ a }} + 1?"}, dataset=[{"a": 1}])
    store = lk.Store(tmp_path / "s.db")
    first = exp.run(rules_server.client(), store=store, progress=False)
    assert sum(b.get_height() for b in plots.cost_per_variant(first).containers[0]) > 0
    again = lk.Experiment("cost-cache-2", prompts={"p": "What is {{ a }} + 1?"}, dataset=[{"a": 1}])
    rerun = again.run(rules_server.client(), store=store, progress=False)
    assert rerun.results["cached"].all()
    ax = plots.cost_per_variant(rerun)
    assert not ax.containers
    assert "came from the cache" in _texts(ax)
