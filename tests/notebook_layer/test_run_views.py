"""RunView and CompareView driven from code on real runs, asserting on what they show."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest

import llamakit as lk
from llamakit import scoring
from llamakit.widgets import CompareView, RunView


def test_runview_of_a_finished_run(capitals_run) -> None:
    view = RunView(capitals_run)
    assert (view.done, view.processed, view.total) == (48, 48, 48)
    assert view.errors == {}
    assert view.finished and view.status == "finished"
    assert view.credits_spent == pytest.approx(capitals_run.credits_spent)
    assert view.credits_left == pytest.approx(capitals_run.progress.credits_left)
    assert (view.bar.value, view.bar.max, view.bar.bar_style) == (48, 48, "success")
    assert "48/48 cells" in view.counts.value
    assert f"{capitals_run.credits_spent:.5f}" in view.credits_label.value
    assert "none" in view.errors_label.value


def test_runview_shows_errors_by_class(failed_run) -> None:
    view = RunView(failed_run)
    assert view.errors == {"ServerError": 6}
    assert (view.done, view.processed) == (0, 6)
    assert view.bar.bar_style == "danger"
    assert "ServerError \u00d76" in view.errors_label.value
    assert "6/6 cells" in view.counts.value


def test_runview_updates_live_while_the_run_executes(run_store) -> None:
    exp = lk.Experiment(
        "live",
        prompts={"sum": "What is 5 + {{ x }}?"},
        dataset=[{"x": i, "expected": str(5 + i)} for i in range(12)],
        scorers=[scoring.exact()],
    )
    with lk.local_server(backend="scripted", credits=1.0, latency_ms=25) as srv:
        run = exp.start(srv.client(), concurrency=1, store=run_store, progress=False)
        view = RunView(run)
        shown: list[int] = []
        view.bar.observe(lambda change: shown.append(change["new"]), names="value")
        run.wait(timeout=60)
    assert view.finished and view.status == "finished"
    assert (view.done, view.total) == (12, 12)
    assert view.credits_spent == 12 * Decimal("0.00063")
    # The bar moved through intermediate values, one cell at a time, not straight to the end.
    assert shown == sorted(shown) and shown[-1] == 12
    assert len(set(shown)) > 3
    assert view.updates > 3


def test_compareview_shows_every_variant_side_by_side(capitals_run) -> None:
    view = CompareView(capitals_run)
    results = capitals_run.results
    assert view.variants == ["bare", "terse", "tutor"]
    assert view.items == list(dict.fromkeys(results["item_id"]))
    view.show("cap-02")
    assert set(view.shown) == {"bare", "terse", "tutor"}
    row = results[(results.item_id == "cap-02") & (results.variant == "terse")].iloc[0]
    assert view.shown["terse"]["response"] == row["response"]
    assert view.shown["terse"]["scores"] == {
        "contains": row["score_contains"],
        "exact": row["score_exact"],
    }
    assert len(view.cards.children) == 3
    assert all("llamakit-compare-card" in c._dom_classes for c in view.cards.children)
    assert row["response"] in view.cards.children[1].value


def test_compareview_picks_a_repeat(capitals_run) -> None:
    view = CompareView(capitals_run)
    assert view.repeat_picker.layout.display is None  # two repeats: the picker is shown
    view.show("cap-01", repeat=1)
    results = capitals_run.results
    row = results[
        (results.item_id == "cap-01") & (results.variant == "bare") & (results.repeat == 1)
    ]
    assert view.repeat == 1
    assert view.shown["bare"]["response"] == row["response"].iloc[0]


def test_compareview_filters_to_disagreements(results_frame) -> None:
    df = results_frame({"a": [1, 1, 0, 0], "b": [1, 0, 1, 0]})
    view = CompareView(SimpleNamespace(results=df))
    assert view.items == ["q0", "q1", "q2", "q3"]
    assert view.repeat_picker.layout.display == "none"  # one repeat: nothing to pick
    view.only_disagreements = True
    assert view.items == ["q1", "q2"]
    assert view.item == "q1"
    assert "2 items where variants disagree" in view.count_label.value
    view.show("q0")  # an item outside the filter turns it off rather than failing
    assert not view.only_disagreements and view.item == "q0"


def test_compareview_on_a_real_run_disagreements_are_score_differences(capitals_run) -> None:
    results = capitals_run.results
    view = CompareView(capitals_run)
    view.only_disagreements = True
    for item in view.items:
        means = results[results.item_id == item].groupby("variant")["score_exact"].mean()
        means_c = results[results.item_id == item].groupby("variant")["score_contains"].mean()
        assert means.nunique() > 1 or means_c.nunique() > 1
    assert 0 < len(view.items) < len(view.all_items)


def test_compareview_renders_markdown_and_errors(results_frame) -> None:
    df = results_frame({"a": [1], "b": [1]}, errors={("b", 0): "RateLimitError"})
    view = CompareView(df)
    assert "<strong>bold</strong>" in view.cards.children[0].value
    assert view.shown["b"]["error"] == "RateLimitError"
    assert "RateLimitError: RateLimitError happened" in view.cards.children[1].value


def test_compareview_of_an_all_error_run(failed_run) -> None:
    view = CompareView(failed_run)
    assert all(cell["error"] == "ServerError" for cell in view.shown.values())
    assert view.disagreements == []


def test_compareview_of_an_empty_run(results_frame) -> None:
    view = CompareView(results_frame({"a": [1]}).iloc[0:0])
    assert view.items == [] and view.shown == {}
    assert "No items" in view.cards.children[0].value


def test_compareview_picks_a_parameter_set(results_frame) -> None:
    import pandas as pd

    cold, hot = results_frame({"a": [1], "b": [0]}), results_frame({"a": [0], "b": [0]})
    hot["params"] = '{"temperature": 1}'
    hot["response"] = hot["variant"] + " hot"
    view = CompareView(pd.concat([cold, hot], ignore_index=True))
    assert view.params_picker.layout.display is None
    assert view.shown["a"]["response"] == "a answer 0 **bold**"
    view.params_picker.value = '{"temperature": 1}'
    assert view.shown["a"]["response"] == "a hot"


def test_compareview_shows_a_variant_with_own_params_at_the_closest_setting(results_frame) -> None:
    import pandas as pd

    cold, hot = results_frame({"a": [1], "b": [0]}), results_frame({"a": [0], "b": [0]})
    hot["params"] = '{"temperature": 1}'
    hot["response"] = hot["variant"] + " hot"
    # Variant b carries max_tokens of its own, so its settings never equal a's exactly.
    for frame in (cold, hot):
        own = frame["variant"] == "b"
        frame.loc[own, "params"] = frame.loc[own, "params"].str.replace("}", ', "max_tokens": 9}')
    view = CompareView(pd.concat([cold, hot], ignore_index=True))
    assert set(view.shown) == {"a", "b"}
    view.params_picker.value = '{"temperature": 1}'
    assert view.shown["a"]["response"] == "a hot" and view.shown["b"]["response"] == "b hot"


def test_runview_stop_button_stops_a_live_run(run_store) -> None:
    exp = lk.Experiment(
        "stoppable",
        prompts={"sum": "What is 7 + {{ x }}?"},
        dataset=[{"x": i} for i in range(40)],
    )
    with lk.local_server(backend="scripted", credits=1.0, latency_ms=50) as srv:
        run = exp.start(srv.client(), concurrency=1, store=run_store, progress=False)
        view = RunView(run)
        assert view.stop_button.layout.display is None  # offered while the run is going
        view.stop_button.click()
        run.wait(timeout=60)
    assert run.status == "stopped"
    assert view.finished and view.status == "stopped"
    assert view.processed < 40
    assert view.stop_button.layout.display == "none"
    assert view._unsubscribe is None  # no callback left on the run


def test_runview_ignores_a_stale_snapshot(capitals_run) -> None:
    from llamakit.experiment.run import RunProgress

    view = RunView(capitals_run)
    view.update(RunProgress(total=48, done=10))
    assert (view.done, view.finished) == (48, True)
