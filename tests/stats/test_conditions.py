"""Conditions, not just variants: per-variant sampling params (Python and spec files), summaries
indexed by (variant, params) on a real grid run, and compare() between conditions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import llamakit as lk
from llamakit import scoring
from llamakit.errors import ValidationError
from llamakit.experiment.spec import load_spec
from llamakit.scoring import stats

DATASET = [{"id": f"q{i}", "topic": t} for i, t in enumerate(["tides", "bread", "snow", "ink"])]


def _grid_experiment(**kw: Any) -> lk.Experiment:
    return lk.Experiment(
        "grid",
        prompts={
            "short": "Tell me about {{ topic }}.",
            "long": {
                "messages": [
                    {"role": "system", "content": "Think step by step."},
                    {"role": "user", "content": "Explain {{ topic }}."},
                ],
                "params": {"max_tokens": 256},
            },
        },
        dataset=DATASET,
        params={"temperature": [0.0, 0.7], "max_tokens": 16},
        repeats=3,
        # The scripted backend's prose depends on the request (temperature included): whether it
        # opens with "Short answer" differs between settings, not between repeats of one.
        scorers=[scoring.regex(r"^(Short answer|Good question)", name="opener")],
        **kw,
    )


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    store = lk.Store(tmp_path_factory.mktemp("grid") / "llamakit.db")
    with lk.local_server(backend="scripted", credits=100.0) as server:
        yield _grid_experiment().run(server.client(), progress=False, store=store)


def test_a_variant_carries_its_own_params_merged_over_the_grid(grid_run) -> None:
    frame = grid_run.results
    params = {v: sorted(set(g["params"])) for v, g in frame.groupby("variant")}
    assert [json.loads(p) for p in params["short"]] == [
        {"max_tokens": 16, "temperature": 0.0},
        {"max_tokens": 16, "temperature": 0.7},
    ]
    assert [json.loads(p) for p in params["long"]] == [
        {"max_tokens": 256, "temperature": 0.0},
        {"max_tokens": 256, "temperature": 0.7},
    ]
    # The server saw the variant's own max_tokens: its replies are not cut at 16 tokens.
    long = frame[frame["variant"] == "long"]
    assert (long["finish_reason"] == "stop").all()
    assert (frame[frame["variant"] == "short"]["finish_reason"] == "length").any()


def test_summary_is_per_condition_on_a_real_grid(grid_run) -> None:
    frame = grid_run.results
    summary = grid_run.summary()
    assert summary.index.names == ["variant", "params"]
    assert len(summary) == 4 and (summary["k"] == 3).all() and (summary["items"] == 4).all()
    for (variant, params), row in summary.iterrows():
        cells = frame[(frame["variant"] == variant) & (frame["params"] == params)]
        per_unit = cells.groupby("item_id")["score_opener"].agg(list)
        assert row["score_opener_pass@k"] == pytest.approx(per_unit.map(max).mean())
        assert row["score_opener_pass^k"] == pytest.approx(per_unit.map(min).mean())
        assert row["score_opener_consistency"] == 1.0  # repeats of one request agree
    # Pooled by variant, the two temperatures disagree on some item: that is not inconsistency
    # of one condition, and pass^k still counts repeats of one condition.
    pooled = frame.groupby(["variant", "item_id"])["score_opener"].nunique()
    assert (pooled > 1).any(), "the grid should make the settings differ on some item"
    by_variant = grid_run.summary(by="variant")
    assert (by_variant["score_opener_consistency"] == 1.0).all()
    assert (by_variant["k"] == 3).all()


def test_one_setting_keeps_a_plain_variant_index(tmp_path: Path) -> None:
    with lk.local_server(backend="scripted", credits=10.0) as server:
        run = lk.Experiment(
            "one-setting",
            prompts={"a": "Tell me about {{ topic }}.", "b": "Explain {{ topic }}."},
            dataset=DATASET,
            params={"max_tokens": 8},
            scorers=[scoring.length_between(1, 400)],
        ).run(server.client(), progress=False)
    summary = run.summary()
    assert summary.index.name == "variant" and list(summary.index) == ["a", "b"]


def test_compare_accepts_conditions_and_pairs_on_items(grid_run) -> None:
    cold = ("short", {"temperature": 0.0})
    hot = ("short", {"temperature": 0.7})
    c = grid_run.compare(cold, hot, "opener")
    assert c.n_items == 4 and c.a.startswith("short {") and "0.7" in c.b
    frame = grid_run.results
    means = {
        t: frame[(frame["variant"] == "short") & frame["params"].str.contains(f'"temperature":{t}')]
        .groupby("item_id")["score_opener"]
        .mean()
        for t in ("0.0", "0.7")
    }
    assert c.diff == pytest.approx((means["0.0"] - means["0.7"]).mean())
    # Params name only what tells the settings apart; both spellings of 0 are one temperature.
    assert grid_run.compare(("short", {"temperature": 0}), ("long", {"temperature": 0}), "opener")
    with pytest.raises(ValidationError, match=r"ran with 2 param settings.*pick one") as info:
        grid_run.compare("short", "long", "opener")
    assert info.value.field == "a"
    with pytest.raises(ValidationError, match="match no setting"):
        grid_run.compare(("short", {"temperature": 1.5}), hot, "opener")
    with pytest.raises(ValidationError, match="same condition"):
        grid_run.compare(hot, ("short", {"temperature": 0.7, "max_tokens": 16}), "opener")
    with pytest.raises(ValidationError, match="a condition is a variant name"):
        grid_run.compare(["short"], hot, "opener")


def test_compare_between_conditions_sharing_no_item_names_the_fix() -> None:
    rows = [
        {"variant": v, "item_id": i, "params": "{}", "error": None, "score_s": 1.0}
        for v, items in (("a", ["q1", "q2"]), ("b", ["q3"]))
        for i in items
    ]
    with pytest.raises(ValidationError, match="share no item.*same dataset items") as info:
        stats.paired_compare(pd.DataFrame(rows), "a", "b", "s")
    assert info.value.field == "metric"


def test_spec_files_give_a_variant_its_own_params(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("id,topic\nq1,tides\nq2,snow\n", encoding="utf-8")
    (tmp_path / "spec.yaml").write_text(
        "name: per-variant\n"
        "dataset: rows.csv\n"
        "prompts:\n"
        "  one_word: 'One word about {{ topic }}.'\n"
        "  step_by_step:\n"
        "    messages: 'Think step by step about {{ topic }}.'\n"
        "    params: {max_tokens: 200}\n"
        "params: {max_tokens: 4, temperature: 0}\n",
        encoding="utf-8",
    )
    exp = load_spec(tmp_path / "spec.yaml").experiment()
    assert exp.variant_params == {
        "one_word": [{"max_tokens": 4, "temperature": 0}],
        "step_by_step": [{"max_tokens": 200, "temperature": 0}],
    }
    assert exp.config("m")["variant_params"] == {"step_by_step": {"max_tokens": 200}}


@pytest.mark.parametrize(
    "prompt, match",
    [
        ({"message": "x"}, "takes 'messages'"),
        ({"messages": "x", "params": {"max_tokens": 0}}, "prompts.v.params: max_tokens"),
        ({"messages": "x", "params": [1]}, "must be a dict of sampling params"),
        ({"messages": "x", "params": {"temperature": []}}, "empty list"),
    ],
)
def test_bad_variant_params_are_refused_at_build(prompt, match) -> None:
    with pytest.raises(ValidationError, match=match):
        lk.Experiment("bad", prompts={"v": prompt}, dataset=DATASET)


def test_a_spec_rubric_asking_for_its_own_format_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(
        "name: judged\n"
        "dataset: [{id: q1, topic: tides}]\n"
        "prompts: {a: 'About {{ topic }}.'}\n"
        "scorers:\n"
        "  - {judge: {rubric: 'Is it right? Respond with JSON.'}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValidationError, match=r"spec.yaml: scorers\[0\] \(judge\).*asks for JSON"):
        load_spec(tmp_path / "spec.yaml").experiment()
    (tmp_path / "spec.yaml").write_text(
        "name: judged\n"
        "dataset: [{id: q1, topic: tides}]\n"
        "prompts: {a: 'About {{ topic }}.'}\n"
        "scorers: [{judge: {rubric: 'Is it right?', scale: 0}}]\n",
        encoding="utf-8",
    )
    with pytest.raises(ValidationError, match="scale must be a positive integer") as info:
        load_spec(tmp_path / "spec.yaml").experiment()
    assert info.value.field == "scale"
