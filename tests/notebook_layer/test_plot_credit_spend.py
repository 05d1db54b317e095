"""`plots.credit_spend`: one bar per run in run order (model and judge calls stacked), the cumulative
spend and the balance; readable for 1, 2, 10 and 50 runs. Each case is rendered to
test-artifacts/plots/ so a person can look at it."""

from __future__ import annotations

import math
from decimal import Decimal
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import llamakit as lk
from llamakit import plots, scoring

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "plots"


def _runs(n: int, *, judge_share: float = 0.25, balance: float = 1.0) -> pd.DataFrame:
    """A runs() table of ``n`` runs, one every 7 hours, with long and short names."""
    rows = []
    for i in range(n):
        spent = 0.002 + 0.001 * (i % 5)  # uneven, as real runs are
        start = pd.Timestamp("2026-11-01T08:00:00Z") + pd.Timedelta(hours=7 * i)
        name = ["capitals-demo", "sentiment-with-a-rather-long-name", "arith"][i % 3]
        rows.append({
            "run_id": f"r{i}", "name": name, "model": "llama-v3-8b-instruct",
            "source": "llamakit-local/scripted", "status": "finished", "started_at": start,
            "finished_at": start + pd.Timedelta(minutes=3), "cells_total": 10, "cells_done": 10,
            "errors": 0, "credits_spent": spent, "judge_credits": spent * judge_share,
            "balance_before": balance, "balance_after": balance - spent, "spend_source": "balance",
        })  # fmt: skip
        balance -= spent
    return pd.DataFrame(rows)


def _axes_of(ax: Any) -> tuple[Any, Any]:
    twins = [a for a in ax.figure.axes if a is not ax]
    return twins[0], twins[1] if len(twins) > 1 else None


def _render(ax: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ax.figure.savefig(ARTIFACTS / name, dpi=100)


def _assert_readable(ax: Any) -> None:
    """Tick labels drawn do not overlap each other and stay inside the figure; the legend covers
    no bar."""
    figure = ax.figure
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    assert labels
    boxes = [t.get_window_extent(renderer) for t in labels]
    rotation = labels[0].get_rotation()
    if rotation == 0:
        for a, b in combinations(boxes, 2):
            assert not a.overlaps(b), (a, b)
    else:
        # Parallel rotated labels clear each other when the distance between their baselines,
        # measured across them, exceeds the height of the (unrotated) text block.
        for text in labels:
            text.set_rotation(0)
        height = max(t.get_window_extent(renderer).height for t in labels)
        for text in labels:
            text.set_rotation(rotation)
        anchors = sorted(ax.transData.transform((t.get_position()[0], 0))[0] for t in labels)
        gap = (
            min(b - a for a, b in zip(anchors, anchors[1:], strict=False))
            if len(anchors) > 1
            else 1e9
        )
        assert gap * math.sin(math.radians(rotation)) >= height, (gap, height)
    fig_box = figure.bbox
    for box in boxes:
        assert box.x0 >= fig_box.x0 - 1 and box.x1 <= fig_box.x1 + 1 and box.y0 >= fig_box.y0 - 1
    legend = ax.get_legend().get_window_extent(renderer)
    for patch in ax.patches:
        assert not legend.overlaps(patch.get_window_extent(renderer))


@pytest.mark.parametrize("n", [1, 2, 10, 50])
def test_spend_per_run_is_readable_for_any_number_of_runs(n: int) -> None:
    table = _runs(n)
    ax = plots.credit_spend(table)
    _render(ax, f"credit_spend_{n}_runs.png")
    _assert_readable(ax)
    model_bars, judge_bars = ax.containers[0], ax.containers[1]
    assert len(model_bars) == len(judge_bars) == n
    # Stacked: each judge bar sits on its model bar, and the two add up to the run's spend.
    for m, j, spent in zip(model_bars, judge_bars, table["credits_spent"], strict=True):
        assert j.get_y() == pytest.approx(m.get_height())
        assert m.get_height() + j.get_height() == pytest.approx(spent)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels) <= 13
    assert labels[0].startswith("capitals-demo\n2026-11-01 08:00")
    assert labels[-1].endswith(f"{table['started_at'].iloc[-1]:%Y-%m-%d %H:%M}")  # last run named
    cumulative, balance = _axes_of(ax)
    assert list(cumulative.lines[0].get_ydata()) == pytest.approx(
        table["credits_spent"].cumsum().tolist()
    )
    assert list(balance.lines[0].get_ydata()) == pytest.approx(table["balance_after"].tolist())
    assert f"over {n} run(s)" in ax.get_title() and "left" in ax.get_title()


def test_runs_are_drawn_in_the_order_they_started() -> None:
    table = _runs(3).iloc[[2, 0, 1]]  # rows out of order, as a filtered table may be
    ax = plots.credit_spend(table)
    heights = [m.get_height() + j.get_height() for m, j in zip(*ax.containers[:2], strict=True)]
    assert heights == pytest.approx(_runs(3)["credits_spent"].tolist())


def test_a_table_without_judge_credits_or_balance_still_draws(tmp_path) -> None:
    table = _runs(4).drop(columns=["judge_credits"])
    table["balance_after"] = float("nan")  # replays and runs on a server with no balance
    ax = plots.credit_spend(table)
    assert len(ax.containers) == 1  # nothing to stack
    cumulative, balance = _axes_of(ax)
    assert balance is None and "left" not in ax.get_title()
    _assert_readable(ax)


def test_a_running_run_counts_what_it_spent_so_far() -> None:
    table = _runs(2)
    table.loc[1, ["finished_at", "credits_spent", "balance_after"]] = [None, None, None]
    ax = plots.credit_spend(table)
    cumulative, _ = _axes_of(ax)
    assert list(cumulative.lines[0].get_ydata()) == pytest.approx([0.002, 0.002])


def test_an_empty_table_draws_an_explanatory_chart() -> None:
    ax = plots.credit_spend(_runs(0))
    assert "No runs in the store yet" in " ".join(t.get_text() for t in ax.texts)


def test_judge_spend_of_real_runs_is_stacked_on_model_spend(tmp_path) -> None:
    store = lk.Store(tmp_path / "s.db")
    rows = [{"q": f"What is {i} + 1?", "expected": str(i + 1)} for i in range(3)]
    with lk.local_server(backend="scripted", credits=10.0) as srv:
        client = srv.client()
        plain = lk.Experiment(
            "plain", prompts="{{ q }}", dataset=rows, scorers=[scoring.contains()]
        )
        plain.run(client, store=store, progress=False)
        judged = lk.Experiment(
            "judged",
            prompts="Answer: {{ q }}",
            dataset=rows,
            scorers=[scoring.judge(client, "Does the answer say {{ expected }}?")],
        )
        judged.run(client, store=store, progress=False)
        billed = Decimal(srv.stats()["credits_spent"])
    table = lk.runs(store=store)
    by_name = table.set_index("name")
    assert by_name.loc["plain", "judge_credits"] == 0
    # Three answers, billed alike; the scripted judge gives no verdict line, so each grading call
    # is re-asked once: six judge calls, two thirds of the judged run's spend.
    assert by_name.loc["judged", "judge_credits"] == pytest.approx(
        by_name.loc["judged", "credits_spent"] * 2 / 3
    )
    ax = plots.credit_spend(store=store)
    _render(ax, "credit_spend_real_runs_with_judge.png")
    total = sum(p.get_height() for p in ax.patches)
    assert total == pytest.approx(float(billed))
