"""One comparison over conditions within a run or across runs, and the regression gate (issue 18,
points 2 and 3), on runs made against the stand-in with two slugs."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import llamakit as lk
from llamakit import scoring
from llamakit.cli import main
from llamakit.scoring.paired import Comparison

DATA = Path(__file__).resolve().parents[2] / "data"
V3, V31 = "llama-v3-8b-instruct", "llama-v3p1-8b-instruct"
SYSTEM = "Answer with the name of the city only, no punctuation."
QUESTION = {"role": "user", "content": "What is the capital of {{ country }}?"}
CITY_ONLY = [{"role": "system", "content": SYSTEM}, QUESTION]
# No rule matches this system message: the scripted backend answers with prose, never the city.
REWORDED = [{"role": "system", "content": "Reply with nothing but the city."}, QUESTION]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A two-model run, a baseline run, a same-prompt run, a regressed run, one on other items."""
    store = lk.Store(tmp_path_factory.mktemp("cmp") / "runs.db")
    with lk.local_server(
        backend="scripted", credits=10, rules=DATA / "models_rules.yaml", latency_ms=1
    ) as srv:
        client = srv.client()

        def run(name: str, prompt: Any, dataset: Any = DATA / "capitals.csv", **kw: Any) -> Any:
            exp = lk.Experiment(
                name, prompts={"city": prompt}, dataset=dataset, scorers=[scoring.contains()], **kw
            )
            return exp.run(client, store=store, progress=False, concurrency=1)

        other = pd.DataFrame({"id": ["x1", "x2"], "country": ["Mars", "Venus"], "expected": "?"})
        yield {
            "models": run("models", CITY_ONLY, models=[V3, V31], repeats=2),
            "baseline": run("gate", CITY_ONLY),
            "same": run("gate-same", CITY_ONLY),
            "cheap": run("gate-cheap", CITY_ONLY, model=V31),
            "worse": run("gate", REWORDED),
            "other": run("elsewhere", CITY_ONLY, dataset=other),
            "store": store,
        }


def test_two_models_in_one_run_compare_with_their_prices(runs: dict[str, Any]) -> None:
    found = runs["models"].compare(V3, V31, "contains", margin=0.25)
    assert (found.a, found.b, found.n_items) == (V3, V31, 24)
    assert found.mean_a == 1.0 and found.mean_b == pytest.approx(22 / 24)
    assert (found.wins, found.losses, found.ties) == (2, 0, 22)
    assert found.ci_low <= found.diff <= found.ci_high
    # Two repeats per item: each side's calls cost twice the slug's price per item, exactly.
    assert found.credits_a == 2 * Decimal("0.00063")
    assert found.credits_b == 2 * Decimal("0.000027")
    assert found.cost_ratio is not None and found.cost_ratio < 0.1
    # "Is B as good as A at a tenth of the price?": within 0.25, yes; within 0.01, not shown.
    assert found.noninferior
    assert not runs["models"].compare(V3, V31, "contains", margin=0.01).noninferior
    assert "credits per item" in str(found) and "non-inferior" in str(found)


def test_condition_specs_name_a_model_a_variant_or_both(runs: dict[str, Any]) -> None:
    run = runs["models"]
    by_dict = run.compare({"model": V3, "variant": "city"}, {"model": V31}, "contains")
    by_name = run.compare(V3, V31, "contains")
    assert by_dict.diff == by_name.diff and by_dict.n_items == 24
    with pytest.raises(lk.ValidationError, match="ran on 2 models"):
        run.compare("city", V31, "contains")
    with pytest.raises(lk.ValidationError, match="unknown model 'nope'"):
        run.compare({"model": "nope"}, V31, "contains")


def test_runs_compare_paired_on_shared_items(runs: dict[str, Any]) -> None:
    found = lk.compare(runs["baseline"], runs["cheap"], "contains", margin=0.25)
    assert isinstance(found, Comparison)
    assert (found.n_items, found.wins, found.losses, found.ties) == (24, 2, 0, 22)
    assert found.credits_a == Decimal("0.00063") and found.credits_b == Decimal("0.000027")
    assert found.noninferior  # 2 of 24 worse is within 0.25
    # Across runs and within one, the same cells give the same figures.
    within = runs["models"].compare(V3, V31, "contains")
    assert (found.mean_a, found.mean_b, found.diff) == (within.mean_a, within.mean_b, within.diff)
    # One side may be a condition of a multi-model run.
    mixed = lk.compare(runs["models"], runs["cheap"], "contains", a={"model": V3})
    assert mixed.diff == found.diff and mixed.a.endswith(V3)


def test_repeats_are_averaged_per_item(runs: dict[str, Any]) -> None:
    results = runs["models"].results
    per_item = results[results["model"] == V31].groupby("item_id")["score_contains"].mean()
    found = lk.compare(runs["models"], runs["baseline"], "contains", a={"model": V31})
    assert found.n_items == 24 and found.mean_a == pytest.approx(per_item.mean())


def test_two_runs_of_one_experiment_are_told_apart(runs: dict[str, Any]) -> None:
    found = lk.compare(runs["baseline"], runs["worse"], "contains")
    assert runs["baseline"].id in found.a and runs["worse"].id in found.b


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "match"),
    [
        ("baseline", "other", {}, r"run 'gate' \(.*\) and run 'elsewhere' .* share no item"),
        ("baseline", "same", {"metric": "nope"}, r"run 'gate' \(.*\) has no metric 'nope'"),
        ("models", "baseline", {}, r"run 'models' .* holds 2 conditions .* a="),
        ("baseline", "baseline", {}, "same cells"),
        ("baseline", "same", {"on": "row"}, "on='item'"),
        ("baseline", "same", {"margin": -0.1}, "margin must be >= 0"),
    ],
)
def test_bad_comparisons_fail_in_one_line(
    runs: dict[str, Any], a: str, b: str, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(lk.ValidationError, match=match) as info:
        lk.compare(runs[a], runs[b], kwargs.pop("metric", "contains"), **kwargs)
    assert "\n" not in str(info.value)


def test_a_metric_only_one_run_has_names_that_run(runs: dict[str, Any], tmp_path: Path) -> None:
    results = runs["same"].results.drop(columns=["score_contains"])

    class Bare:
        id, name, scorer_names = "r-bare", "bare", []

    bare = Bare()
    bare.results = results  # type: ignore[attr-defined]
    with pytest.raises(lk.ValidationError, match=r"run 'bare' \(r-bare\) has no metric"):
        lk.compare(runs["baseline"], bare, "contains")
    with pytest.raises(lk.ValidationError, match="share no scorer"):
        lk.compare(runs["baseline"], bare)
    with pytest.raises(lk.ValidationError, match="must be a Run"):
        lk.compare(runs["baseline"], "not a run")  # type: ignore[arg-type]


def test_the_gate_passes_an_equal_or_cheaper_within_margin_run(runs: dict[str, Any]) -> None:
    same = lk.check_no_regression(runs["baseline"], runs["same"], "contains")
    assert same.diff == 0
    # Two of 24 items worse: not a regression the data can show at margin 0.1.
    lk.check_no_regression(runs["baseline"], runs["cheap"], "contains", margin=0.1)


def test_the_gate_raises_with_one_paragraph(runs: dict[str, Any]) -> None:
    with pytest.raises(lk.RegressionError) as info:
        lk.check_no_regression(runs["baseline"], runs["worse"], "contains", margin=0.05)
    text = str(info.value)
    assert "\n" not in text
    for part in ("score_contains", runs["worse"].id, runs["baseline"].id, "margin of 0.05", "95%"):
        assert part in text
    assert "lost 24 items" in text
    assert info.value.comparison.mean_b == 0.0  # type: ignore[attr-defined]
    assert isinstance(info.value, AssertionError)  # pytest reports it as a failed check
    # The chosen confidence is used: a stricter alpha still sees a total collapse.
    with pytest.raises(lk.RegressionError, match="99%"):
        lk.check_no_regression(runs["baseline"], runs["worse"], "contains", alpha=0.01)


def test_the_gate_for_a_metric_where_lower_is_better(runs: dict[str, Any]) -> None:
    # Reversed: the regressed run as baseline, so "current" scores higher, i.e. worse when
    # lower is better.
    with pytest.raises(lk.RegressionError):
        lk.check_no_regression(runs["worse"], runs["baseline"], "contains", higher_is_better=False)
    lk.check_no_regression(runs["baseline"], runs["worse"], "contains", higher_is_better=False)


@pytest.mark.parametrize("alpha", [0, 0.5, -1, True, "0.05"])
def test_the_gate_refuses_a_bad_alpha(runs: dict[str, Any], alpha: Any) -> None:
    with pytest.raises(lk.ValidationError, match="alpha"):
        lk.check_no_regression(runs["baseline"], runs["same"], "contains", alpha=alpha)


def test_cli_compare_prints_the_same(runs: dict[str, Any], capsys: Any) -> None:
    store = str(runs["store"].path)
    a, b = runs["baseline"], runs["cheap"]
    assert main(["compare", a.id, b.id, "--metric", "contains", "--store", store]) == 0
    assert capsys.readouterr().out.strip() == str(lk.compare(a, b, "contains"))
    m = runs["models"]
    args = ["compare", m.id, m.id, "--metric", "contains", "--a", V3, "--b", f"model={V31}"]
    assert main([*args, "--margin", "0.25", "--store", store]) == 0
    assert "non-inferior within margin 0.25" in capsys.readouterr().out


def test_cli_gate_exit_codes(runs: dict[str, Any], capsys: Any) -> None:
    store = str(runs["store"].path)
    base, worse = runs["baseline"].id, runs["worse"].id
    gate = ["compare", base, worse, "--metric", "contains", "--store", store, "--gate"]
    assert main(gate) == 1
    err = capsys.readouterr().err
    assert err.startswith("llamakit compare: error: RegressionError: Regression on score_contains")
    assert err.count("\n") == 1
    assert main(["compare", base, runs["same"].id, "--store", store, "--gate"]) == 0
    assert "no regression" in capsys.readouterr().out
    assert main(["compare", base, "no-such-run", "--store", store]) == 1
    assert "no run 'no-such-run'" in capsys.readouterr().err
    assert main(["compare", base, base, "--store", store, "--a", "model=", "--b", "x"]) == 2
